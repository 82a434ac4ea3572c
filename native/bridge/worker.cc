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

using channel::FrameWriter;
using channel::Msg;

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
  opts.env = {{"ISAPI_CHANNEL", address},
              {"ISAPI_CHANNEL_TOKEN", token_},
              {"ISAPI_BRIDGE", addon},
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
  std::string frame;
  FrameWriter(frame, Msg::Ping, 0).u32(++pingSeq_).finish();
  send(frame);
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
  std::string frame;
  FrameWriter(frame, Msg::Abort, id).finish();
  send(frame);
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
  std::string frame;
  FrameWriter(frame, Msg::Shutdown, 0).finish();
  send(frame);
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
          channel::FrameReader wr(reinterpret_cast<const uint8_t*>(frames[i + 1].second.data()), frames[i + 1].second.size());
          std::string_view data = wr.str();
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
  size_t answered = 0;  // their whole response was out, only Done was missing
  for (auto& r : orphans) {
    std::lock_guard<std::mutex> lock(r->mu);
    if (r->ended()) continue;
    if (r->phase == RequestPhase::Sent && !r->beginFrame.empty()) {
      r->worker = nullptr;
      r->advance(RequestPhase::Waiting);
      reroute.push_back(r);
    } else {
      if (r->headersSent && r->response_complete()) ++answered;
      failed.push_back(r);
    }
  }
  const bool hung = unresponsive_.load();
  if (!failed.empty() || !reroute.empty()) {
    const size_t cut = failed.size() - answered;
    std::string what = (hung ? "stopped answering" : "died") + std::string(" with ") + std::to_string(failed.size()) + " request(s) in flight";
    if (cut) what += hung ? "; answering them with 504" : "; answering them with 502";
    if (answered) what += "; " + std::to_string(answered) + " had sent their whole response (kept as answered)";
    if (!reroute.empty()) what += "; " + std::to_string(reroute.size()) + " not yet taken go to another worker";
    log_line("worker " + std::to_string(slot_) + " (pid " + std::to_string(pid()) + ") " + what);
  }
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
  std::string frame;
  FrameWriter f(frame, Msg::ServerSupportReply, id);
  f.u32(callId).u32(r.ok ? 1 : 0).u32(r.error).u32(uint32_t(r.ints.size()));
  for (uint32_t v : r.ints) f.u32(v);
  f.str(r.out).finish();
  w.send(frame);
}

static void send_var_reply(Worker& w, uint32_t id, uint32_t callId, uint32_t err, std::string_view value) {
  std::string frame;
  FrameWriter(frame, Msg::VarReply, id).u32(callId).u32(err).str(value).finish();
  w.send(frame);
}

void Worker::handle(const channel::FrameHeader& h, std::string_view payload, const std::string& mergedBody) {
  channel::FrameReader rd(reinterpret_cast<const uint8_t*>(payload.data()), payload.size());
  if (h.type == Msg::Ready) {
    uint32_t protocol = rd.u32();
    uint32_t pid = rd.u32();
    std::string_view token = rd.str();
    if (!rd.ok() || protocol != channel::kProtocolVersion || token != token_) {
      log_line("worker " + std::to_string(slot_) + " sent a bad Ready message (protocol " +
               std::to_string(protocol) + "); stopping it");
      process_.kill();
      return;
    }
    log_line("worker " + std::to_string(slot_) + " ready (pid " + std::to_string(pid) + ")");
    mark_alive();
    wasReady_ = true;
    state_ = WorkerState::Ready;
    pool_.on_ready(*this);
    return;
  }
  if (h.type == Msg::Pong) {
    mark_alive();
    return;
  }
  if (h.type == Msg::Log) {
    log_line("worker " + std::to_string(slot_) + ": " + std::string(rd.str()));
    return;
  }
  if (h.type == Msg::Reload) {
    log_line("worker " + std::to_string(slot_) + " asked for a reload: " + std::string(rd.str()));
    pool_.reload("requested by worker " + std::to_string(slot_));
    return;
  }
  if (h.type == Msg::FilterCall || h.type == Msg::FilterReply) {
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
  InflightPtr req = find(h.id);
  if (!req) {
    // The request already ended (deadline, client gone); its late messages are dropped.
    if (h.type == Msg::GetVar) send_var_reply(*this, h.id, rd.u32(), ERROR_INVALID_PARAMETER, {});
    if (h.type == Msg::ServerSupport) {
      ServerSupportResult gone;
      gone.error = ERROR_INVALID_PARAMETER;
      send_support_reply(*this, h.id, rd.u32(), gone);
    }
    return;
  }
  std::unique_lock<std::mutex> lock(req->mu);
  EXTENSION_CONTROL_BLOCK* ecb = req->ecb;
  switch (h.type) {
    case Msg::ResponseHeaders: {
      std::string status(rd.str());
      std::string headers(rd.str());
      uint32_t keepConn = rd.u32();
      if (!req->ended() && rd.ok() && refuse_unsafe_response(ecb, status, headers)) {  // a 500, never a split
        req->headersSent = true;
        abort_locked(req, lock);
        break;
      }
      headers += mergedBody;
      if (req->ended() || !rd.ok()) break;
      HSE_SEND_HEADER_EX_INFO info{};
      info.pszStatus = status.c_str();
      info.cchStatus = DWORD(status.size());
      info.pszHeader = headers.c_str();
      info.cchHeader = DWORD(headers.size());
      info.fKeepConn = keepConn ? TRUE : FALSE;
      int code = std::atoi(status.c_str());
      if (code > 0) ecb->dwHttpStatusCode = DWORD(code);
      req->note_headers_sent(headers);
      // Headers (and the body merged into them) go synchronously: they are the first bytes of
      // the response, so the connection's buffer has room for them.
      req->ackOwed += mergedBody.size();
      if (!ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_SEND_RESPONSE_HEADER_EX, &info, nullptr, nullptr))
        abort_locked(req, lock);  // the client went away
      break;
    }
    case Msg::Write: {
      std::string_view data = rd.str();
      if (!rd.ok()) break;
      queue_write_locked(req, data, lock);
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
      uint32_t hse = rd.u32();
      uint32_t httpStatus = rd.u32();
      std::string_view logData = rd.str();
      if (req->ended()) break;
      if (httpStatus) ecb->dwHttpStatusCode = httpStatus;
      if (!logData.empty()) {
        size_t n = std::min(logData.size(), size_t(HSE_LOG_BUFFER_LEN - 1));
        std::memcpy(ecb->lpszLogData, logData.data(), n);
        ecb->lpszLogData[n] = 0;
      }
      lock.unlock();
      forget(h.id);
      lock.lock();
      finish_after_writes_locked(req, hse ? hse : HSE_STATUS_SUCCESS, lock);
      break;
    }
    case Msg::GetVar: {
      uint32_t callId = rd.u32();
      std::string name(rd.str());
      if (req->ended() || !rd.ok()) {
        lock.unlock();
        send_var_reply(*this, h.id, callId, ERROR_INVALID_PARAMETER, {});
        break;
      }
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
      send_var_reply(*this, h.id, callId, err, value);
      break;
    }
    case Msg::ServerSupport: {
      uint32_t callId = rd.u32();
      ServerSupportCall call;
      call.request = rd.u32();
      uint32_t n = rd.u32();
      for (uint32_t i = 0; i < n && i < 16 && rd.ok(); ++i) call.ints.push_back(rd.u32());
      uint32_t m = rd.u32();
      for (uint32_t i = 0; i < m && i < 16 && rd.ok(); ++i) call.strs.push_back(rd.str());
      ServerSupportResult r;
      if (req->ended() || !rd.ok()) {
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
      body_credit_locked(req, rd.u32(), lock);
      break;
    }
    default:
      break;
  }
}

}  // namespace isapi::bridge
