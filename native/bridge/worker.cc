#include "worker.h"

#include <cstring>
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

// Encodes one message into a frame of its own.
template <class M>
static std::string frame_of(uint32_t id, const M& m) {
  std::string frame;
  channel::encode(frame, id, m);
  return frame;
}

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
  channel::NativeHandle child;
  std::string address;
  if (!channel::create_channel(channel_, child, address, error)) return false;
  token_ = channel::random_token();
  SpawnOptions opts;
  opts.executable = pool_.config().workerExe;
  opts.channelHandle = child;
  opts.env = {{"ISAPI_CHANNEL", address},
              {"ISAPI_CHANNEL_TOKEN", token_},
              {"ISAPI_CHANNEL_PROTOCOL", std::to_string(channel::kProtocolVersion)},
              {"ISAPI_BRIDGE", pool_.config().bridgePath},
              {"ISAPI_WORKER_SLOT", std::to_string(slot_)}};
  startedAt_ = std::chrono::steady_clock::now();
  bool ok = process_.spawn(opts, error);
  channel::close_native(child);
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
  send(frame_of(0, ping));
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

bool Worker::send(const std::string& frames) {
  std::lock_guard<std::mutex> lock(sendMu_);
  return channel_.write_all(frames.data(), frames.size());
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
  bool sent = send(frame);
  {
    // Kept until the worker says Taken, so a worker that dies first does not lose it.
    std::lock_guard<std::mutex> lock(req->mu);
    if (req->phase == RequestPhase::Sent && req->beginFrame.empty()) req->beginFrame.swap(frame);
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
  send(frame_of(id, msg::Abort{}));
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
  send(frame_of(0, msg::Shutdown{}));
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
  for (auto& r : orphans) {
    std::lock_guard<std::mutex> lock(r->mu);
    if (r->ended()) continue;
    if (r->phase == RequestPhase::Sent && !r->beginFrame.empty()) {
      r->worker = nullptr;
      r->advance(RequestPhase::Waiting);
      reroute.push_back(r);
    } else {
      failed.push_back(r);
    }
  }
  const bool hung = unresponsive_.load();
  if (!failed.empty() || !reroute.empty())
    log_line("worker " + std::to_string(slot_) + " (pid " + std::to_string(pid()) + ") " +
             (hung ? "stopped answering" : "died") + " with " + std::to_string(failed.size()) +
             " request(s) in flight" + (failed.empty() ? "" : hung ? "; answering them with 504" : "; answering them with 502") +
             (reroute.empty() ? "" : "; " + std::to_string(reroute.size()) + " not yet taken go to another worker"));
  for (auto& r : failed) {
    if (hung)
      fail_request(*r, 504, "Gateway Timeout", "The worker process handling this request stopped responding (its event loop was blocked) and was replaced.");
    else
      fail_request(*r, 502, "Bad Gateway", "The worker process handling this request exited.");
  }
  pool_.on_dead(*this);
  for (auto& r : reroute) pool_.dispatch(r);
}

static void send_support_reply(Worker& w, uint32_t id, uint32_t callId, const ServerSupportResult& r) {
  msg::ServerSupportReply reply;
  reply.callId = callId;
  reply.ok = r.ok;
  reply.error = r.error;
  reply.ints = r.ints;
  reply.out = r.out;
  w.send(frame_of(id, reply));
}

static void send_var_reply(Worker& w, uint32_t id, uint32_t callId, uint32_t err, std::string_view value) {
  msg::VarReply reply;
  reply.callId = callId;
  reply.err = err;
  reply.value = value;
  w.send(frame_of(id, reply));
}

void Worker::refuse_malformed(Msg type) {
  log_line("worker " + std::to_string(slot_) + " sent a malformed " + channel::message_name(type) +
           " message (a worker from a different pack?); stopping it");
  process_.kill();
}

void Worker::on_ready(std::string_view payload) {
  msg::Ready ready;
  const bool decoded = channel::decode(payload, ready);
  // The protocol comes first in every version's Ready, so a mismatch is named even when the
  // rest of the message has another shape.
  if (ready.protocol != channel::kProtocolVersion) {
    log_line("worker " + std::to_string(slot_) + " speaks channel protocol " + std::to_string(ready.protocol) +
             " but this bridge speaks " + std::to_string(channel::kProtocolVersion) +
             ": the folder mixes files from different packs (pack it again); stopping the worker");
    process_.kill();
    return;
  }
  if (!decoded || ready.token != token_) {
    log_line("worker " + std::to_string(slot_) + " sent a bad Ready message (wrong token); stopping it");
    process_.kill();
    return;
  }
  log_line("worker " + std::to_string(slot_) + " ready (pid " + std::to_string(ready.pid) + ")");
  mark_alive();
  wasReady_ = true;
  state_ = WorkerState::Ready;
  pool_.on_ready(*this);
}

void Worker::handle(const channel::FrameHeader& h, std::string_view payload, const std::string& mergedBody) {
  switch (h.type) {
    case Msg::Ready:
      on_ready(payload);
      return;
    case Msg::Pong:
      mark_alive();
      return;
    case Msg::Log: {
      msg::Log m;
      if (!channel::decode(payload, m)) return refuse_malformed(h.type);
      log_line("worker " + std::to_string(slot_) + ": " + std::string(m.line));
      return;
    }
    case Msg::Reload: {
      msg::Reload m;
      if (!channel::decode(payload, m)) return refuse_malformed(h.type);
      log_line("worker " + std::to_string(slot_) + " asked for a reload: " + std::string(m.reason));
      pool_.reload("requested by worker " + std::to_string(slot_));
      return;
    }
    case Msg::FilterCall:
    case Msg::FilterReply: {
      // Decoded by the web-server thread that waits for the verdict (filter_entry.cc).
      std::shared_ptr<FilterWait> wait;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = filterWaits_.find(h.id);
        if (it != filterWaits_.end()) wait = it->second;
      }
      if (!wait) return;  // the notification timed out; its late answer is dropped
      std::lock_guard<std::mutex> lock(wait->mu);
      wait->frames.emplace_back(h.type, std::string(payload));
      wait->cv.notify_all();
      return;
    }
    default:
      break;
  }
  InflightPtr req = find(h.id);
  if (!req) {
    // The request already ended (deadline, client gone); its late messages are dropped, and
    // its calls answered with an error so the handler's promise settles.
    if (h.type == Msg::GetVar) {
      msg::GetVar m;
      if (channel::decode(payload, m)) send_var_reply(*this, h.id, m.callId, ERROR_INVALID_PARAMETER, {});
    }
    if (h.type == Msg::ServerSupport) {
      msg::ServerSupport m;
      ServerSupportResult gone;
      gone.error = ERROR_INVALID_PARAMETER;
      if (channel::decode(payload, m)) send_support_reply(*this, h.id, m.callId, gone);
    }
    return;
  }
  std::unique_lock<std::mutex> lock(req->mu);
  EXTENSION_CONTROL_BLOCK* ecb = req->ecb;
  switch (h.type) {
    case Msg::ResponseHeaders: {
      msg::ResponseHeaders m;
      if (!channel::decode(payload, m)) {
        lock.unlock();
        return refuse_malformed(h.type);
      }
      std::string status(m.status);
      std::string headers(m.headers);
      if (!req->ended() && refuse_unsafe_response(ecb, status, headers)) {  // a 500, never a split
        req->headersSent = true;
        abort_locked(req, lock);
        break;
      }
      headers += mergedBody;
      if (req->ended()) break;
      HSE_SEND_HEADER_EX_INFO info{};
      info.pszStatus = status.c_str();
      info.cchStatus = DWORD(status.size());
      info.pszHeader = headers.c_str();
      info.cchHeader = DWORD(headers.size());
      info.fKeepConn = m.keepConn ? TRUE : FALSE;
      int code = std::atoi(status.c_str());
      if (code > 0) ecb->dwHttpStatusCode = DWORD(code);
      req->headersSent = true;
      // Headers (and the body merged into them) go synchronously: they are the first bytes of
      // the response, so the connection's buffer has room for them.
      req->ackOwed += mergedBody.size();
      if (!ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_SEND_RESPONSE_HEADER_EX, &info, nullptr, nullptr))
        abort_locked(req, lock);  // the client went away
      break;
    }
    case Msg::Write: {
      msg::Write m;
      if (!channel::decode(payload, m)) {
        lock.unlock();
        return refuse_malformed(h.type);
      }
      queue_write_locked(req, m.data, lock);
      break;
    }
    case Msg::Taken: {
      std::string().swap(req->beginFrame);
      if (req->phase != RequestPhase::Sent) break;  // already answered (deadline, shutdown)
      req->advance(RequestPhase::Taken);
      start_body_locked(req, lock);
      break;
    }
    case Msg::Done: {
      msg::Done m;
      if (!channel::decode(payload, m)) {
        lock.unlock();
        return refuse_malformed(h.type);
      }
      if (req->ended()) break;
      if (m.httpStatus) ecb->dwHttpStatusCode = m.httpStatus;
      if (!m.logData.empty()) {
        size_t n = std::min(m.logData.size(), size_t(HSE_LOG_BUFFER_LEN - 1));
        std::memcpy(ecb->lpszLogData, m.logData.data(), n);
        ecb->lpszLogData[n] = 0;
      }
      lock.unlock();
      forget(h.id);
      lock.lock();
      finish_after_writes_locked(req, m.hseStatus ? m.hseStatus : HSE_STATUS_SUCCESS, lock);
      break;
    }
    case Msg::GetVar: {
      msg::GetVar m;
      if (!channel::decode(payload, m)) {
        lock.unlock();
        return refuse_malformed(h.type);
      }
      if (req->ended()) {
        lock.unlock();
        send_var_reply(*this, h.id, m.callId, ERROR_INVALID_PARAMETER, {});
        break;
      }
      std::string name(m.name);
      std::string value(1024, '\0');
      DWORD size = DWORD(value.size());
      BOOL ok = ecb->GetServerVariable(ecb->ConnID, name.data(), value.data(), &size);
      uint32_t err = ok ? 0 : GetLastError();
      if (!ok && err == ERROR_INSUFFICIENT_BUFFER) {
        value.resize(size);
        ok = ecb->GetServerVariable(ecb->ConnID, name.data(), value.data(), &size);
        err = ok ? 0 : GetLastError();
      }
      // UNICODE_* values are UTF-16 and end with a two-byte NUL; others end with one byte.
      size_t nul = name.rfind("UNICODE_", 0) == 0 ? 2 : 1;
      value.resize(ok && size >= nul ? size - nul : 0);
      lock.unlock();
      send_var_reply(*this, h.id, m.callId, err, value);
      break;
    }
    case Msg::ServerSupport: {
      msg::ServerSupport m;
      if (!channel::decode(payload, m)) {
        lock.unlock();
        return refuse_malformed(h.type);
      }
      uint32_t callId = m.callId;
      ServerSupportCall call;
      call.request = m.request;
      call.ints = std::move(m.ints);
      call.strs = std::move(m.strs);
      ServerSupportResult r;
      if (req->ended()) {
        r.error = ERROR_INVALID_PARAMETER;
      } else {
        std::weak_ptr<Worker> self = weak_from_this();
        uint32_t id = h.id;
        call.reply = [self, id, callId](ServerSupportResult late) {
          if (auto w = self.lock()) send_support_reply(*w, id, callId, late);
        };
        r = server_support(req, call, lock);
        if (r.pending) break;
      }
      lock.unlock();
      send_support_reply(*this, h.id, callId, r);
      break;
    }
    case Msg::BodyCredit: {
      msg::BodyCredit m;
      if (!channel::decode(payload, m)) {
        lock.unlock();
        return refuse_malformed(h.type);
      }
      body_credit_locked(req, m.bytes, lock);
      break;
    }
    default:
      break;
  }
}

}  // namespace isapi::bridge
