// Portable socket interface for isapi-host. One implementation file per OS:
// socket_posix.cc (Linux, macOS) and, later, socket_win.cc (Winsock).
// Connection sockets are non-blocking; the "blocking" helpers wait with a timeout.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace isapi_host {

#ifdef _WIN32
using socket_t = uintptr_t;
#else
using socket_t = int;
#endif
extern const socket_t kInvalidSocket;

struct NetAddress {
  std::string addr;  // numeric address, IPv6 without brackets
  int port = 0;
};

// Results of NetRecv / NetSend besides a byte count.
constexpr int64_t kIoWouldBlock = -1;
constexpr int64_t kIoError = -2;

bool NetStartup(std::string* err);
// Binds and listens (non-blocking listener). *bound receives the real address and port.
socket_t NetListen(const std::string& addr, int port, NetAddress* bound, std::string* err);
// Accepts one pending connection, or returns kInvalidSocket when none is pending.
socket_t NetAccept(socket_t listener, NetAddress* peer, NetAddress* local);
// Non-blocking mode and TCP_NODELAY for an accepted connection.
void NetConfigureConnection(socket_t s);
// > 0 bytes, 0 end of stream, kIoWouldBlock, kIoError.
int64_t NetRecv(socket_t s, void* buf, size_t len);
// > 0 bytes, kIoWouldBlock, kIoError. Never raises SIGPIPE.
int64_t NetSend(socket_t s, const void* buf, size_t len);
// 1 ready, 0 timeout, -1 error. timeout_ms < 0 waits forever.
int NetWaitReadable(socket_t s, int timeout_ms);
int NetWaitWritable(socket_t s, int timeout_ms);
// False when the peer has closed or reset the connection (does not consume data).
bool NetPeerConnected(socket_t s);
void NetShutdownWrite(socket_t s);
void NetShutdownBoth(socket_t s);
// SO_LINGER {on, 0}: the next close resets the connection (HSE_REQ_ABORTIVE_CLOSE).
void NetSetAbortiveClose(socket_t s);
void NetClose(socket_t s);
// Text of the last socket error (errno / WSAGetLastError).
std::string NetLastErrorText();

}  // namespace isapi_host
