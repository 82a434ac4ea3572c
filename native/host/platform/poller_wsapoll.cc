// Windows implementation of platform/poller.h with WSAPoll. One-shot semantics are emulated:
// a socket is watched only while it is in `armed_`, and delivering an event removes it.
// Rearm/Add wake a running Wait() (through a loopback UDP socket) so it rebuilds its set.
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>

#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "poller.h"

namespace isapi_host {

namespace {

class WsaPollPoller : public Poller {
 public:
  explicit WsaPollPoller(SOCKET wake) : wake_(wake) {}
  ~WsaPollPoller() override { closesocket(wake_); }
  bool Add(socket_t s, void* tag) override { return Rearm(s, tag); }
  bool Rearm(socket_t s, void* tag) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      armed_[static_cast<SOCKET>(s)] = tag;
    }
    Wakeup();
    return true;
  }
  void Remove(socket_t s) override {
    std::lock_guard<std::mutex> lock(mu_);
    armed_.erase(static_cast<SOCKET>(s));
  }
  int Wait(PollEvent* events, int max_events, int timeout_ms) override {
    std::vector<WSAPOLLFD> fds;
    {
      std::lock_guard<std::mutex> lock(mu_);
      fds.reserve(armed_.size() + 1);
      WSAPOLLFD w;
      w.fd = wake_;
      w.events = POLLRDNORM;
      w.revents = 0;
      fds.push_back(w);
      for (const auto& kv : armed_) {
        WSAPOLLFD p;
        p.fd = kv.first;
        p.events = POLLRDNORM;
        p.revents = 0;
        fds.push_back(p);
      }
    }
    int r = WSAPoll(fds.data(), static_cast<ULONG>(fds.size()), timeout_ms);
    if (r <= 0) return 0;
    int n = 0;
    if (fds[0].revents) {
      char buf[64];
      while (recv(wake_, buf, sizeof buf, 0) > 0) {
      }
      if (n < max_events) events[n++].tag = nullptr;
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 1; i < fds.size() && n < max_events; i++) {
      if (!fds[i].revents) continue;
      auto it = armed_.find(fds[i].fd);
      if (it == armed_.end()) continue;  // removed (or closed) meanwhile
      events[n++].tag = it->second;
      armed_.erase(it);  // one-shot
    }
    return n;
  }
  void Wakeup() override {
    char c = 1;
    send(wake_, &c, 1, 0);
  }

 private:
  std::mutex mu_;
  std::unordered_map<SOCKET, void*> armed_;
  SOCKET wake_;
};

}  // namespace

std::unique_ptr<Poller> Poller::Create(std::string* err) {
  // A UDP socket connected to itself: sending to it makes it readable.
  SOCKET s = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
  sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int len = sizeof a;
  u_long one = 1;
  if (s == INVALID_SOCKET || bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0 ||
      connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ioctlsocket(s, FIONBIO, &one) != 0) {
    *err = "cannot create the event loop's wakeup socket (WSA error " + std::to_string(WSAGetLastError()) + ")";
    if (s != INVALID_SOCKET) closesocket(s);
    return nullptr;
  }
  return std::unique_ptr<Poller>(new WsaPollPoller(s));
}

}  // namespace isapi_host
