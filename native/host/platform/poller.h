// Readiness notification for idle connections (the event loop). One implementation per OS:
// poller_epoll.cc on Linux; a WSAPoll (or IOCP) version for Windows goes in its own file.
// Every registration is one-shot: after an event is delivered the socket stays disarmed until
// Rearm() is called, so exactly one thread owns a connection at a time.
#pragma once
#include <memory>
#include <string>

#include "socket.h"

namespace isapi_host {

struct PollEvent {
  void* tag;  // nullptr for a Wakeup()
};

class Poller {
 public:
  static std::unique_ptr<Poller> Create(std::string* err);
  virtual ~Poller() = default;
  virtual bool Add(socket_t s, void* tag) = 0;    // registered and armed for one readable event
  virtual bool Rearm(socket_t s, void* tag) = 0;  // thread-safe
  virtual void Remove(socket_t s) = 0;            // thread-safe
  // Waits up to timeout_ms; returns the number of events stored (0 on timeout).
  virtual int Wait(PollEvent* events, int max_events, int timeout_ms) = 0;
  // Makes every concurrent Wait() return, now and from then on (used to stop the server).
  virtual void Wakeup() = 0;
  // True if several threads may Wait() at once, each event going to one of them (epoll with
  // one-shot registrations). The server then serves a connection on the thread that saw it.
  virtual bool ConcurrentWaits() const { return false; }
};

}  // namespace isapi_host
