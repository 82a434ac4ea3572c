// A worker process as the bridge sees it: starting it, its channel and output, pings, requests
// handed to it, and its death. What it sends is handled in worker_messages.cc.
#include "worker.h"

#include <cstring>
#include <filesystem>
#include <system_error>
#include <vector>

#include "bridge_log.h"
#include "request_io.h"
#include "response_check.h"
#include "server_support.h"
#include "worker_pool.h"

namespace isapi::bridge {

// At most this much body is folded into a header send; the rest goes as separate writes.
constexpr size_t kMergeLimit = 64 * 1024;

using channel::Msg;
namespace msg = channel::msg;

Worker::~Worker() {
  channel_.shutdown();
  for (std::thread* t : {&reader_, &outputReader_}) {
    if (!t->joinable()) continue;
    if (t->get_id() == std::this_thread::get_id()) t->detach();
    else t->join();
  }
  process_.close_output();
}

bool Worker::start(std::string& error) {
  const std::string& addon = pool_.config().workerAddon;
  std::error_code ec;
  if (addon != pool_.config().bridgePath && !std::filesystem::exists(std::filesystem::u8path(addon), ec)) {
    // Said here rather than by the worker's "cannot load" so the fix is in the log and on the 503 page.
    error = "the worker's x64 addon " + addon + " is missing (this 32-bit bridge's x64 workers load it): " +
            "copy the whole folder that `isapi pack --target win-ia32` wrote";
    return false;
  }
  channel::NativeHandle child;
  std::string address;
  if (!channel::create_channel(channel_, child, address, error)) return false;
  token_ = channel::random_token();
  SpawnOptions opts;
  opts.executable = pool_.config().workerExe;
  opts.channelHandle = child;
  channel::NativeHandle boardChild = channel::Endpoint::invalid();
  std::string boardAddress;
  if (board_.create(boardChild, boardAddress)) opts.boardHandle = boardChild;
  opts.env = {{"ISAPI_CHANNEL", address},
              {"ISAPI_CHANNEL_TOKEN", token_},
              {"ISAPI_CHANNEL_PROTOCOL", std::to_string(channel::kProtocolVersion)},
              {"ISAPI_BRIDGE", addon},
              {"ISAPI_WORKER_SLOT", std::to_string(slot_)}};
  if (board_.valid()) opts.env.emplace_back("ISAPI_TAKEN_BOARD", boardAddress);
  startedAt_ = std::chrono::steady_clock::now();
  bool ok = process_.spawn(opts, error);
  channel::close_native(child);
  if (board_.valid()) channel::close_native(boardChild);
  if (!ok) return false;
  log_line("worker " + std::to_string(slot_) + " started (pid " + std::to_string(process_.pid()) + ")");
  reader_ = std::thread([self = shared_from_this()] { self->read_loop(); });
  outputReader_ = std::thread([self = shared_from_this()] { self->output_loop(); });
  return true;
}

// Drains the worker's stdout/stderr into the log, line by line, keeping the last few KiB for
// error pages. Ends when every process holding the pipe's write end has exited.
void Worker::output_loop() {
  constexpr size_t kTail = 4096;
  std::vector<char> buf(16 * 1024);
  std::string partial;
  for (;;) {
    long n = process_.read_output(buf.data(), buf.size());
    if (n <= 0) break;
    partial.append(buf.data(), size_t(n));
    size_t lastNl = partial.rfind('\n');
    // A line longer than the buffer is written in pieces rather than held without bound.
    size_t cut = lastNl != std::string::npos ? lastNl + 1 : (partial.size() >= buf.size() ? partial.size() : 0);
    if (cut == 0) continue;
    std::string_view lines(partial.data(), cut);
    if (lines.back() == '\n') lines.remove_suffix(1);
    log_worker_output(slot_, lines);
    {
      std::lock_guard<std::mutex> lock(tailMu_);
      outputTail_.append(partial, 0, cut);
      if (outputTail_.size() > kTail) outputTail_.erase(0, outputTail_.size() - kTail);
    }
    partial.erase(0, cut);
  }
  if (!partial.empty()) {
    log_worker_output(slot_, partial);
    std::lock_guard<std::mutex> lock(tailMu_);
    outputTail_ += partial;
  }
}

std::string Worker::output_tail() {
  std::lock_guard<std::mutex> lock(tailMu_);
  return outputTail_;
}

void Worker::ping() {
  msg::Ping ping;
  ping.seq = ++pingSeq_;
  send(channel::encoded(0, ping));
}

void Worker::mark_alive() { lastPong_ = std::chrono::steady_clock::now().time_since_epoch().count(); }

std::chrono::steady_clock::duration Worker::since_pong() const {
  return std::chrono::steady_clock::now().time_since_epoch() - std::chrono::steady_clock::duration(lastPong_.load());
}

void Worker::kill_unresponsive(const std::string& why) {
  log_line("worker " + std::to_string(slot_) + " (pid " + std::to_string(pid()) + ") " + why + "; replacing it");
  unresponsive_ = true;
  process_.kill();
}

bool Worker::send(const std::string& frames) { return send_frames(frames, nullptr); }

bool Worker::send_request(const std::string& frame, InflightRequest& req) { return send_frames(frame, &req); }

bool Worker::send_frames(const std::string& frames, InflightRequest* request) {
  // Combining: with one lock held across write(), a loop thread waited for every other's system
  // call on the same worker (issue 17: 63% of the host's futex calls at 64 connections). Now a
  // caller that finds a sender at work leaves its frames for it and returns. A worker that dies
  // meanwhile is still handled as before: its reader takes back every request not yet Taken.
  std::string batch;
  {
    std::lock_guard<std::mutex> lock(sendMu_);
    if (broken_.load()) return false;
    // Decided under sendMu_, in the order the frames go into the channel.
    if (request) request->channelSeq = nextRequestSeq_++;
    if (sending_) {
      sendQueue_ += frames;
      return true;
    }
    sending_ = true;
  }
  bool ok = channel_.write_all(frames.data(), frames.size());
  const bool mine = ok;  // what the caller's own frames did: adopt() re-routes on false
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(sendMu_);
      if (!ok) broken_ = true;
      if (!ok || sendQueue_.empty()) {
        sendQueue_.clear();
        sending_ = false;
        return mine;
      }
      batch.clear();
      batch.swap(sendQueue_);
    }
    ok = channel_.write_all(batch.data(), batch.size());
  }
}

bool Worker::adopt(const InflightPtr& req) {
  {
    std::lock_guard<std::mutex> lock(req->mu);
    if (req->ended()) return true;  // answered meanwhile (deadline, shutdown): nothing to send
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ == WorkerState::Dead) return false;
    inflight_[req->id] = req;
  }
  std::string frame;
  {
    std::lock_guard<std::mutex> lock(req->mu);
    req->worker = shared_from_this();
    req->advance(RequestPhase::Sent);
    frame.swap(req->beginFrame);
  }
  bool sent = send_request(frame, *req);
  {
    // Kept until the worker says Taken, so a worker that dies first does not lose it.
    std::lock_guard<std::mutex> lock(req->mu);
    if ((req->phase == RequestPhase::Sent || req->phase == RequestPhase::Waiting) && req->beginFrame.empty())
      req->beginFrame.swap(frame);
    // The worker died while the frame was on its way (its reader took the request back, see
    // on_channel_closed): the pool gives it to another worker.
    if (req->phase == RequestPhase::Waiting) return false;
  }
  if (sent) return true;
  broken_ = true;
  // The worker died before it could read the request (the send failed): unless its reader
  // already took care of it (502, or re-routed), take it back so the pool gives it to another.
  std::lock_guard<std::mutex> lock(mu_);
  if (inflight_.erase(req->id) == 0) return true;
  std::lock_guard<std::mutex> rlock(req->mu);
  if (req->phase != RequestPhase::Sent) return true;
  req->worker = nullptr;
  req->advance(RequestPhase::Waiting);
  return false;
}

void Worker::await_filter(uint32_t id, const std::shared_ptr<FilterWait>& wait) {
  std::lock_guard<std::mutex> lock(mu_);
  filterWaits_[id] = wait;
  if (state_ == WorkerState::Dead) wait->dead = true;
}

void Worker::forget_filter(uint32_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  filterWaits_.erase(id);
}

void Worker::forget(uint32_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  inflight_.erase(id);
}

void Worker::abort(uint32_t id) {
  forget(id);
  send(channel::encoded(id, msg::Abort{}));
}

size_t Worker::load() {
  std::lock_guard<std::mutex> lock(mu_);
  return inflight_.size();
}

std::vector<InflightPtr> Worker::snapshot() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<InflightPtr> out;
  out.reserve(inflight_.size());
  for (auto& [id, r] : inflight_) out.push_back(r);
  return out;
}

void Worker::request_shutdown() {
  if (state_ != WorkerState::Draining) drainingSince_ = std::chrono::steady_clock::now();
  state_ = WorkerState::Draining;
  send(channel::encoded(0, msg::Shutdown{}));
}

std::string Worker::reap(int timeoutMs) {
  if (!process_.wait(timeoutMs)) {
    process_.kill();
    process_.wait(5000);
  }
  channel_.shutdown();
  if (reader_.joinable() && reader_.get_id() != std::this_thread::get_id()) reader_.join();
  // The pipe ends when the worker and everything it started are gone; a grandchild that keeps
  // it open must not hold the supervisor, so its reader is left to finish on its own.
  if (outputReader_.joinable() && outputReader_.get_id() != std::this_thread::get_id()) outputReader_.detach();
  return process_.exit_description();
}

InflightPtr Worker::find(uint32_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = inflight_.find(id);
  return it == inflight_.end() ? nullptr : it->second;
}

void Worker::read_loop() {
  channel::FrameDecoder decoder;
  std::vector<char> buf(256 * 1024);
  std::vector<std::pair<channel::FrameHeader, std::string_view>> frames;
  std::string body;
  for (;;) {
    long n = channel_.read_some(buf.data(), buf.size());
    if (n <= 0) break;
    decoder.feed(buf.data(), size_t(n));
    channel::FrameHeader h;
    std::string_view payload;
    bool corrupt = false;
    frames.clear();
    while (decoder.next(h, payload, corrupt)) frames.emplace_back(h, payload);
    for (size_t i = 0; i < frames.size(); ++i) {
      const size_t first = i;
      body.clear();
      // Headers directly followed by body writes of the same request go to the server as one
      // call (text after the header block is body): one send instead of several.
      if (frames[first].first.type == Msg::ResponseHeaders) {
        while (i + 1 < frames.size() && frames[i + 1].first.type == Msg::Write &&
               frames[i + 1].first.id == frames[first].first.id && body.size() < kMergeLimit) {
          msg::Write write;
          if (!channel::decode(frames[i + 1].second, write)) break;
          std::string_view data = write.data;
          // Header text ends at its first NUL (servers honour that; some extensions count the
          // terminator): binary bodies go as WriteClient calls of their own.
          if (data.find('\0') != std::string_view::npos) break;
          body += data;
          ++i;
        }
      }
      handle(frames[first].first, frames[first].second, body);
    }
    if (corrupt) {
      log_line("worker " + std::to_string(slot_) + " sent a corrupt frame; stopping it");
      process_.kill();
      break;
    }
    decoder.compact();
  }
  on_channel_closed();
}

void Worker::on_channel_closed() {
  std::vector<InflightPtr> orphans;
  std::vector<std::shared_ptr<FilterWait>> waits;
  {
    std::lock_guard<std::mutex> lock(mu_);
    state_ = WorkerState::Dead;  // under mu_: adopt() never adds to a worker whose requests were failed
    for (auto& [id, r] : inflight_) orphans.push_back(r);
    inflight_.clear();
    for (auto& [id, w] : filterWaits_) waits.push_back(w);
    filterWaits_.clear();
  }
  for (auto& w : waits) {
    std::lock_guard<std::mutex> lock(w->mu);
    w->dead = true;
    w->cv.notify_all();
  }
  // A request the worker's JavaScript never took has run no user code: it goes to another
  // worker. The others may have had effects, so they are answered, never replayed.
  std::vector<InflightPtr> reroute, failed;
  size_t answered = 0;                        // their whole response was out, only Done was missing
  const uint32_t started = board_.started();  // Request frames whose handlers ran (taken_board.h)
  for (auto& r : orphans) {
    std::lock_guard<std::mutex> lock(r->mu);
    if (r->ended()) continue;
    // Both count modulo 2^32 (a busy worker passes 2^32 requests in about a day): a frame is
    // before the count when its distance below it is under 2^31, far more than can be in flight.
    const int64_t seq = r->channelSeq.load();
    if (r->phase == RequestPhase::Sent && seq >= 0 && int32_t(uint32_t(seq) - started) < 0) {
      r->advance(RequestPhase::Taken);  // its handler ran, though no message said so yet
      std::string().swap(r->beginFrame);
    }
    if (r->phase == RequestPhase::Sent) {
      r->worker = nullptr;
      r->advance(RequestPhase::Waiting);
      // An empty frame: adopt() is sending it right now, and re-routes it when the send returns.
      if (!r->beginFrame.empty()) reroute.push_back(r);
    } else {
      if (r->response_complete()) ++answered;  // false until headers with a Content-Length went out
      failed.push_back(r);
    }
  }
  const bool hung = unresponsive_.load();
  if (!failed.empty() || !reroute.empty()) {
    const size_t cut = failed.size() - answered;
    std::string what = (hung ? "stopped answering" : "died") + std::string(" with ") + std::to_string(failed.size()) +
                       " request(s) in flight";
    if (cut) what += hung ? "; answering them with 504" : "; answering them with 502";
    if (answered) what += "; " + std::to_string(answered) + " had sent their whole response (kept as answered)";
    if (!reroute.empty()) what += "; " + std::to_string(reroute.size()) + " not yet taken go to another worker";
    log_line("worker " + std::to_string(slot_) + " (pid " + std::to_string(pid()) + ") " + what);
  }
  for (auto& r : failed) {
    if (hung)
      fail_request(
          *r, 504, "Gateway Timeout",
          "The worker process handling this request stopped responding (its event loop was blocked) and was replaced.");
    else fail_request(*r, 502, "Bad Gateway", "The worker process handling this request exited.");
  }
  pool_.on_dead(*this);
  for (auto& r : reroute) pool_.dispatch(r);
}

}  // namespace isapi::bridge
