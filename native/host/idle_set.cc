// IdleSet (idle_set.h): the loop's connections, sharded by connection id.
#include "idle_set.h"

#include "connection.h"

namespace isapi_host {

uint32_t IdleSet::ConnectionId(const Connection* c) { return c->id; }

void IdleSet::Erase(Connection* c) {
  Shard& s = ShardOf(c);
  std::lock_guard<std::mutex> lock(s.mu);
  s.set.erase(c);
}

std::vector<Connection*> IdleSet::TakeExpired(int64_t now) {
  std::vector<Connection*> expired;
  for (Shard& s : shards_) {
    std::lock_guard<std::mutex> lock(s.mu);
    for (auto it = s.set.begin(); it != s.set.end();) {
      if ((*it)->deadline_ms <= now) {
        expired.push_back(*it);
        it = s.set.erase(it);
      } else {
        ++it;
      }
    }
  }
  return expired;
}

std::vector<Connection*> IdleSet::Close() {
  std::vector<Connection*> all;
  for (Shard& s : shards_) {
    std::lock_guard<std::mutex> lock(s.mu);
    s.closed = true;
    all.insert(all.end(), s.set.begin(), s.set.end());
    s.set.clear();
  }
  return all;
}

}  // namespace isapi_host
