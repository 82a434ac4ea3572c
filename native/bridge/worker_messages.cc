// What a worker sends, handled on its reader thread (Worker::handle): each frame decoded with the
// channel's schema (native/channel/messages.h) and turned into calls on the request's ECB. The
// worker's life (start, channel, output, death) is in worker.cc.
#include <cstring>

#include "bridge_log.h"
#include "request_io.h"
#include "response_check.h"
#include "server_support.h"
#include "worker.h"
#include "worker_pool.h"

namespace isapi::bridge {

using channel::Msg;
namespace msg = channel::msg;

static void send_support_reply(Worker& w, uint32_t id, uint32_t callId, const ServerSupportResult& r) {
  msg::ServerSupportReply reply;
  reply.callId = callId;
  reply.ok = r.ok;
  reply.error = r.error;
  reply.ints = r.ints;
  reply.out = r.out;
  w.send(channel::encoded(id, reply));
}

static void send_var_reply(Worker& w, uint32_t id, uint32_t callId, uint32_t err, std::string_view value) {
  msg::VarReply reply;
  reply.callId = callId;
  reply.err = err;
  reply.value = value;
  w.send(channel::encoded(id, reply));
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
    case Msg::Ready: on_ready(payload); return;
    case Msg::Pong: mark_alive(); return;
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
    default: break;
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
  if (req->phase == RequestPhase::Sent && h.type != Msg::Taken) {
    // The worker speaks about the request, so its handler runs: the taken board said so
    // without a Taken message (taken_board.h).
    std::string().swap(req->beginFrame);
    req->advance(RequestPhase::Taken);
    start_body_locked(req, lock);
  }
  // Decodes the payload as its type; a frame that does not is another protocol's: the worker
  // is stopped (with the request's lock released, as refuse_malformed takes the pool's).
  auto decoded = [&](auto& m) {
    if (channel::decode(payload, m)) return true;
    lock.unlock();
    refuse_malformed(h.type);
    return false;
  };
  switch (h.type) {
    case Msg::ResponseHeaders: {
      msg::ResponseHeaders m;
      if (!decoded(m)) return;
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
      req->note_headers_sent(headers);
      // Headers (and the body merged into them) go synchronously: they are the first bytes of
      // the response, so the connection's buffer has room for them.
      req->ackOwed += mergedBody.size();
      if (!ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_SEND_RESPONSE_HEADER_EX, &info, nullptr, nullptr))
        abort_locked(req, lock);  // the client went away
      break;
    }
    case Msg::Write: {
      msg::Write m;
      if (!decoded(m)) return;
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
      if (!decoded(m)) return;
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
      if (!decoded(m)) return;
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
      if (!decoded(m)) return;
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
      if (!decoded(m)) return;
      body_credit_locked(req, m.bytes, lock);
      break;
    }
    default: break;
  }
}

}  // namespace isapi::bridge
