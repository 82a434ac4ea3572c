// Windows (Winsock) implementation of platform/socket.h.
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>

#include <cstring>

#include "socket.h"

namespace isapi_host {

const socket_t kInvalidSocket = static_cast<socket_t>(INVALID_SOCKET);

namespace {

void ToNetAddress(const sockaddr_storage& ss, NetAddress* out) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    const sockaddr_in* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, const_cast<in_addr*>(&a->sin_addr), buf, sizeof buf);
    out->port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const sockaddr_in6* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, const_cast<in6_addr*>(&a->sin6_addr), buf, sizeof buf);
    out->port = ntohs(a->sin6_port);
  }
  out->addr = buf;
}

bool SetNonBlocking(SOCKET s) {
  u_long one = 1;
  return ioctlsocket(s, FIONBIO, &one) == 0;
}

int WaitFor(SOCKET s, short what, int timeout_ms) {
  WSAPOLLFD p;
  p.fd = s;
  p.events = what;
  p.revents = 0;
  int r = WSAPoll(&p, 1, timeout_ms);
  if (r < 0) return -1;
  return r == 0 ? 0 : 1;
}

std::string ErrorText(int code) {
  char buf[512] = {0};
  DWORD n = FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, nullptr,
                           static_cast<DWORD>(code), 0, buf, sizeof buf, nullptr);
  while (n > 0 && (buf[n - 1] == '\r' || buf[n - 1] == '\n' || buf[n - 1] == '.')) buf[--n] = 0;
  return std::string(buf) + " (" + std::to_string(code) + ")";
}

}  // namespace

bool NetStartup(std::string* err) {
  WSADATA data;
  int r = WSAStartup(MAKEWORD(2, 2), &data);
  if (r != 0) {
    *err = "WSAStartup failed: " + ErrorText(r);
    return false;
  }
  return true;
}

socket_t NetListen(const std::string& addr, int port, NetAddress* bound, std::string* err) {
  addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string service = std::to_string(port);
  int gai = getaddrinfo(addr.c_str(), service.c_str(), &hints, &res);
  if (gai != 0) {
    *err = "cannot resolve bind address '" + addr + "': " + ErrorText(gai);
    return kInvalidSocket;
  }
  SOCKET s = INVALID_SOCKET;
  std::string last;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    s = WSASocketW(ai->ai_family, ai->ai_socktype, ai->ai_protocol, nullptr, 0, WSA_FLAG_NO_HANDLE_INHERIT);
    if (s == INVALID_SOCKET) {
      last = ErrorText(WSAGetLastError());
      continue;
    }
    BOOL one = TRUE;  // not SO_REUSEADDR: on Windows that lets another process steal the port
    setsockopt(s, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, reinterpret_cast<const char*>(&one), sizeof one);
    if (bind(s, ai->ai_addr, static_cast<int>(ai->ai_addrlen)) == 0 && listen(s, SOMAXCONN) == 0 && SetNonBlocking(s))
      break;
    last = ErrorText(WSAGetLastError());
    closesocket(s);
    s = INVALID_SOCKET;
  }
  freeaddrinfo(res);
  if (s == INVALID_SOCKET) {
    *err = "cannot listen on " + addr + ":" + std::to_string(port) + ": " + last;
    return kInvalidSocket;
  }
  sockaddr_storage ss;
  int len = sizeof ss;
  if (getsockname(s, reinterpret_cast<sockaddr*>(&ss), &len) == 0) ToNetAddress(ss, bound);
  return static_cast<socket_t>(s);
}

socket_t NetAccept(socket_t listener, NetAddress* peer, NetAddress* local) {
  for (;;) {
    sockaddr_storage ss;
    int len = sizeof ss;
    SOCKET s = accept(static_cast<SOCKET>(listener), reinterpret_cast<sockaddr*>(&ss), &len);
    if (s == INVALID_SOCKET) {
      if (WSAGetLastError() == WSAECONNRESET) continue;
      return kInvalidSocket;
    }
    ToNetAddress(ss, peer);
    len = sizeof ss;
    if (getsockname(s, reinterpret_cast<sockaddr*>(&ss), &len) == 0) ToNetAddress(ss, local);
    return static_cast<socket_t>(s);
  }
}

void NetConfigureConnection(socket_t s) {
  SetNonBlocking(static_cast<SOCKET>(s));
  BOOL one = TRUE;
  setsockopt(static_cast<SOCKET>(s), IPPROTO_TCP, TCP_NODELAY, reinterpret_cast<const char*>(&one), sizeof one);
}

int64_t NetRecv(socket_t s, void* buf, size_t len) {
  int cap = len > 0x40000000 ? 0x40000000 : static_cast<int>(len);
  int n = recv(static_cast<SOCKET>(s), static_cast<char*>(buf), cap, 0);
  if (n >= 0) return n;
  return WSAGetLastError() == WSAEWOULDBLOCK ? kIoWouldBlock : kIoError;
}

int64_t NetSend(socket_t s, const void* buf, size_t len) {
  int cap = len > 0x40000000 ? 0x40000000 : static_cast<int>(len);
  int n = send(static_cast<SOCKET>(s), static_cast<const char*>(buf), cap, 0);
  if (n >= 0) return n;
  return WSAGetLastError() == WSAEWOULDBLOCK ? kIoWouldBlock : kIoError;
}

int NetWaitReadable(socket_t s, int timeout_ms) { return WaitFor(static_cast<SOCKET>(s), POLLRDNORM, timeout_ms); }
int NetWaitWritable(socket_t s, int timeout_ms) { return WaitFor(static_cast<SOCKET>(s), POLLWRNORM, timeout_ms); }

bool NetPeerConnected(socket_t s) {
  WSAPOLLFD p;
  p.fd = static_cast<SOCKET>(s);
  p.events = POLLRDNORM;
  p.revents = 0;
  int r = WSAPoll(&p, 1, 0);
  if (r <= 0) return r == 0;
  if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) return false;
  char c;
  int n = recv(static_cast<SOCKET>(s), &c, 1, MSG_PEEK);
  if (n == 0) return false;
  if (n < 0 && WSAGetLastError() != WSAEWOULDBLOCK) return false;
  return true;
}

void NetShutdownWrite(socket_t s) { shutdown(static_cast<SOCKET>(s), SD_SEND); }
void NetShutdownBoth(socket_t s) { shutdown(static_cast<SOCKET>(s), SD_BOTH); }
void NetSetAbortiveClose(socket_t s) {
  struct linger l;
  l.l_onoff = 1;
  l.l_linger = 0;
  setsockopt(static_cast<SOCKET>(s), SOL_SOCKET, SO_LINGER, reinterpret_cast<const char*>(&l), sizeof l);
}
void NetClose(socket_t s) { closesocket(static_cast<SOCKET>(s)); }
std::string NetLastErrorText() { return ErrorText(WSAGetLastError()); }

}  // namespace isapi_host
