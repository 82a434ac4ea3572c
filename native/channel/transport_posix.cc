// POSIX transport: an AF_UNIX socketpair. The worker's end is inherited as fd 3, so there is
// no filesystem name to guess and nothing another user could connect to.
#include "transport.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace isapi::channel {

constexpr int kWorkerFd = 3;

NativeHandle Endpoint::invalid() { return -1; }

Endpoint& Endpoint::operator=(Endpoint&& o) noexcept {
  if (this != &o) {
    close();
    h_ = o.h_;
    o.h_ = invalid();
  }
  return *this;
}

bool Endpoint::write_all(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::send(h_, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        // The descriptor is non-blocking when the worker's event loop watches it (libuv's
        // uv_poll_init sets O_NONBLOCK on it): wait for room, as a blocking send would.
        pollfd pfd{h_, POLLOUT, 0};
        if (::poll(&pfd, 1, -1) < 0 && errno != EINTR) return false;
        continue;
      }
      return false;
    }
    p += w;
    n -= size_t(w);
  }
  return true;
}

long Endpoint::try_write(const void* data, size_t n) {
  for (;;) {
    ssize_t w = ::send(h_, data, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w >= 0) return long(w);
    if (errno == EINTR) continue;
    return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
  }
}

long Endpoint::read_some(void* buf, size_t n) {
  for (;;) {
    ssize_t r = ::recv(h_, buf, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {  // non-blocking: see write_all
      pollfd pfd{h_, POLLIN, 0};
      if (::poll(&pfd, 1, -1) < 0 && errno != EINTR) return -1;
      continue;
    }
    return long(r);
  }
}

void Endpoint::shutdown() {
  if (valid()) ::shutdown(h_, SHUT_RDWR);
}

void Endpoint::close() {
  if (valid()) {
    ::close(h_);
    h_ = invalid();
  }
}

void close_native(NativeHandle h) {
  if (h >= 0) ::close(h);
}

bool create_channel(Endpoint& parent, NativeHandle& childHandle, std::string& childAddress, std::string& error) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    error = std::string("socketpair failed: ") + std::strerror(errno);
    return false;
  }
  // Big buffers let a whole small response travel in one write on either side.
  int size = 1 << 20;
  for (int fd : sv) {
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  }
  parent = Endpoint(sv[0]);
  childHandle = sv[1];
  childAddress = "fd:" + std::to_string(kWorkerFd);
  return true;
}

bool open_worker_end(const std::string& address, Endpoint& out, std::string& error) {
  if (address.rfind("fd:", 0) != 0) {
    error = "ISAPI_CHANNEL must be fd:<n> on this platform, got '" + address + "'";
    return false;
  }
  int fd = std::atoi(address.c_str() + 3);
  if (fd < 0 || ::fcntl(fd, F_GETFD) < 0) {
    error = "the channel descriptor " + address + " is not open (was this worker started by the bridge?)";
    return false;
  }
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);  // don't leak it into processes the user's code spawns
  out = Endpoint(fd);
  return true;
}

std::string random_token() {
  unsigned char b[16] = {0};
  int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t r = ::read(fd, b, sizeof b);
    (void)r;
    ::close(fd);
  }
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (unsigned char c : b) {
    s += hex[c >> 4];
    s += hex[c & 15];
  }
  return s;
}

}  // namespace isapi::channel
