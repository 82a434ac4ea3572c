// The connections the event loop owns (idle keep-alive, reading a head, lingering), for
// timeouts and for closing them all at shutdown.
//
// Every request takes its connection out of this set and puts it back, from whichever loop or
// pool thread serves it. One mutex for all of them was the host's hottest lock (issue 17:
// ~3.6 futex calls per request at 64 connections), so the set is split into shards by
// connection id; the shard's lock is held while the caller re-arms the connection, so a
// connection is never re-armed after Close() took it.
#pragma once

#include <cstdint>
#include <mutex>
#include <unordered_set>
#include <vector>

namespace isapi_host {

class Connection;

class IdleSet {
 public:
  // Adds c and runs rearm under its shard's lock; false (c not added) once Close() ran.
  template <class Rearm>
  bool Insert(Connection* c, Rearm&& rearm) {
    Shard& s = ShardOf(c);
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.closed) return false;
    s.set.insert(c);
    rearm();
    return true;
  }
  void Erase(Connection* c);
  // Removes and returns the connections whose deadline_ms is at or before now.
  std::vector<Connection*> TakeExpired(int64_t now);
  // Refuses every later Insert and returns what the set held.
  std::vector<Connection*> Close();

 private:
  static constexpr size_t kShards = 32;
  struct Shard {
    std::mutex mu;
    std::unordered_set<Connection*> set;
    bool closed = false;
  };
  Shard& ShardOf(const Connection* c) { return shards_[ConnectionId(c) % kShards]; }
  static uint32_t ConnectionId(const Connection* c);
  Shard shards_[kShards];
};

}  // namespace isapi_host
