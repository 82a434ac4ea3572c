// POSIX implementation of platform/socket.h.
#include "socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

namespace isapi_host {

const socket_t kInvalidSocket = -1;

namespace {

void ToNetAddress(const sockaddr_storage& ss, NetAddress* out) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    const sockaddr_in* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
    out->port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const sockaddr_in6* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
      inet_ntop(AF_INET, reinterpret_cast<const unsigned char*>(&a->sin6_addr) + 12, buf, sizeof buf);
    } else {
      inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
    }
    out->port = ntohs(a->sin6_port);
  }
  out->addr = buf;
}

bool SetNonBlocking(int fd) {
  int fl = fcntl(fd, F_GETFL, 0);
  return fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
}

int WaitFor(int fd, short what, int timeout_ms) {
  pollfd p;
  p.fd = fd;
  p.events = what;
  p.revents = 0;
  for (;;) {
    int r = poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) return 0;
    return 1;  // readable/writable, or HUP/ERR which the next I/O call reports
  }
}

}  // namespace

bool NetStartup(std::string*) { return true; }

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
    *err = "cannot resolve bind address '" + addr + "': " + gai_strerror(gai);
    return kInvalidSocket;
  }
  int fd = -1;
  std::string last;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last = strerror(errno);
      continue;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0 && SetNonBlocking(fd)) break;
    last = strerror(errno);
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) {
    *err = "cannot listen on " + addr + ":" + std::to_string(port) + ": " + last;
    return kInvalidSocket;
  }
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) ToNetAddress(ss, bound);
  return fd;
}

socket_t NetAccept(socket_t listener, NetAddress* peer, NetAddress* local) {
  for (;;) {
    sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd = accept4(listener, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return kInvalidSocket;  // EAGAIN, or EMFILE and friends: try again on the next event
    }
    ToNetAddress(ss, peer);
    len = sizeof ss;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) ToNetAddress(ss, local);
    return fd;
  }
}

void NetConfigureConnection(socket_t s) {
  SetNonBlocking(s);
  int one = 1;
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int64_t NetRecv(socket_t s, void* buf, size_t len) {
  for (;;) {
    ssize_t n = recv(s, buf, len, 0);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return kIoWouldBlock;
    return kIoError;
  }
}

int64_t NetSend(socket_t s, const void* buf, size_t len) {
  for (;;) {
    ssize_t n = send(s, buf, len, MSG_NOSIGNAL);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return kIoWouldBlock;
    return kIoError;
  }
}

int NetWaitReadable(socket_t s, int timeout_ms) { return WaitFor(s, POLLIN, timeout_ms); }
int NetWaitWritable(socket_t s, int timeout_ms) { return WaitFor(s, POLLOUT, timeout_ms); }

bool NetPeerConnected(socket_t s) {
  pollfd p;
  p.fd = s;
  p.events = POLLIN | POLLRDHUP;
  p.revents = 0;
  int r = poll(&p, 1, 0);
  if (r <= 0) return r == 0;
  if (p.revents & (POLLERR | POLLHUP | POLLNVAL | POLLRDHUP)) return false;
  char c;
  ssize_t n = recv(s, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return false;
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return false;
  return true;
}

void NetShutdownWrite(socket_t s) { shutdown(s, SHUT_WR); }
void NetShutdownBoth(socket_t s) { shutdown(s, SHUT_RDWR); }
void NetSetAbortiveClose(socket_t s) {
  struct linger l;
  l.l_onoff = 1;
  l.l_linger = 0;
  setsockopt(s, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}
void NetClose(socket_t s) { close(s); }
std::string NetLastErrorText() { return strerror(errno); }

}  // namespace isapi_host
