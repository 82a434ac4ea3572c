// The taken board: a page of memory shared by the bridge and one worker, where the worker
// counts the Request frames whose handlers it has started.
//
// Why: a worker that dies must never have a request it started replayed elsewhere (it may
// have had effects), while a request it never started should go to another worker. The worker
// used to say Taken for every request before running its handler: one more write for the
// worker and one more wake-up of the bridge's reader per batch (issue 17). With the board, the
// worker stores the count in shared memory before it runs the batch's handlers, and the
// bridge reads it only when the worker has died: a Request frame whose position in the
// channel is below the count was started. The count survives the worker's death (the bridge
// keeps its mapping). Taken is still sent for requests flagged kFrameWantsTaken (their body
// streams after Taken), and for every request when there is no board.
//
// Portable interface; taken_board_posix.cc (a memfd inherited as a descriptor),
// taken_board_win.cc (none yet: the worker sends Taken for every request).
#pragma once
#include <atomic>
#include <cstdint>
#include <string>

#include "transport.h"

namespace isapi::channel {

class TakenBoard {
 public:
  TakenBoard() = default;
  TakenBoard(const TakenBoard&) = delete;
  TakenBoard& operator=(const TakenBoard&) = delete;
  ~TakenBoard();

  // Bridge side: creates the board; childHandle is for the worker to inherit (the bridge closes
  // it after spawning) and childAddress goes in ISAPI_TAKEN_BOARD. False: no board (the
  // worker then sends Taken for every request).
  bool create(NativeHandle& childHandle, std::string& childAddress);
  // Worker side: maps the board named by ISAPI_TAKEN_BOARD's value.
  bool open(const std::string& address);

  bool valid() const { return count_ != nullptr; }
  // Worker: the number of Request frames whose handlers may have started (release store).
  void publish(uint32_t requestsStarted) {
    if (count_) count_->store(requestsStarted, std::memory_order_release);
  }
  // Bridge: what the worker published (0 without a board).
  uint32_t started() const { return count_ ? count_->load(std::memory_order_acquire) : 0; }

 private:
  std::atomic<uint32_t>* count_ = nullptr;
};

}  // namespace isapi::channel
