// loop_reader.h on Windows: the channel is a named pipe, which uv_poll cannot watch, so the
// worker reads it with a thread (worker_channel.cc).
#include "loop_reader.h"

namespace isapi::worker {

bool start_loop_reader(Napi::Env, channel::NativeHandle, LoopReaderSink) { return false; }

}  // namespace isapi::worker
