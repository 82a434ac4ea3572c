// Linux implementation of platform/poller.h (epoll, one-shot registrations, eventfd wakeup).
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "poller.h"

namespace isapi_host {

namespace {

class EpollPoller : public Poller {
 public:
  EpollPoller(int ep, int wake) : ep_(ep), wake_(wake) {}
  ~EpollPoller() override {
    close(ep_);
    close(wake_);
  }
  bool Add(socket_t s, void* tag) override { return Ctl(EPOLL_CTL_ADD, s, tag); }
  bool Rearm(socket_t s, void* tag) override { return Ctl(EPOLL_CTL_MOD, s, tag); }
  void Remove(socket_t s) override { epoll_ctl(ep_, EPOLL_CTL_DEL, s, nullptr); }
  int Wait(PollEvent* events, int max_events, int timeout_ms) override {
    epoll_event evs[256];
    if (max_events > 256) max_events = 256;
    int n = epoll_wait(ep_, evs, max_events, timeout_ms);
    if (n < 0) return 0;  // EINTR
    // The wakeup eventfd is level-triggered and never drained: once Wakeup() ran, every
    // waiter keeps returning, which is what stopping needs.
    for (int i = 0; i < n; i++) events[i].tag = evs[i].data.ptr;
    return n;
  }
  bool ConcurrentWaits() const override { return true; }
  void Wakeup() override {
    uint64_t one = 1;
    ssize_t r = write(wake_, &one, sizeof one);
    (void)r;
  }

 private:
  bool Ctl(int op, socket_t s, void* tag) {
    epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
    ev.data.ptr = tag;
    return epoll_ctl(ep_, op, s, &ev) == 0;
  }
  int ep_;
  int wake_;
};

}  // namespace

std::unique_ptr<Poller> Poller::Create(std::string* err) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) {
    *err = std::string("epoll_create1: ") + strerror(errno);
    return nullptr;
  }
  int wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) {
    *err = std::string("eventfd: ") + strerror(errno);
    close(ep);
    return nullptr;
  }
  epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN;  // level-triggered, never disarmed
  ev.data.ptr = nullptr;
  epoll_ctl(ep, EPOLL_CTL_ADD, wake, &ev);
  return std::unique_ptr<Poller>(new EpollPoller(ep, wake));
}

}  // namespace isapi_host
