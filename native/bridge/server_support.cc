#include "server_support.h"

#include "request_io.h"
#include "response_check.h"

#include <cstring>

#ifdef _WIN32
#include <io.h>
#include <fcntl.h>
#else
#include <fcntl.h>
#include <unistd.h>
#endif

namespace isapi::bridge {

namespace {

std::string arg(const ServerSupportCall& c, size_t i) {
  return i < c.strs.size() ? std::string(c.strs[i]) : std::string();
}
uint32_t num(const ServerSupportCall& c, size_t i) { return i < c.ints.size() ? c.ints[i] : 0; }

ServerSupportResult result_of(BOOL ok) {
  ServerSupportResult r;
  r.ok = ok != FALSE;
  r.error = ok ? 0 : GetLastError();
  return r;
}

ServerSupportResult bool_query(EXTENSION_CONTROL_BLOCK* ecb, DWORD request) {
  BOOL value = FALSE;
  ServerSupportResult r = result_of(ecb->ServerSupportFunction(ecb->ConnID, request, &value, nullptr, nullptr));
  r.ints.push_back(value ? 1 : 0);
  return r;
}

struct ExecUrlStorage {
  std::string url, method, headers, body;
  HSE_EXEC_URL_ENTITY_INFO entity{};
  HSE_EXEC_URL_INFO info{};
};

// The server reads these arguments as C strings: a NUL would end them early without anyone
// noticing (a URL cut short, a header text without its end), so it is refused instead.
bool has_nul(const ServerSupportCall& c) {
  for (std::string_view s : c.strs)
    if (s.find('\0') != std::string_view::npos) return true;
  return false;
}

ServerSupportResult refused() {
  ServerSupportResult r;
  r.error = ERROR_INVALID_PARAMETER;
  return r;
}

bool has_control(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return true;
  return false;
}

}  // namespace

ServerSupportResult server_support(const InflightPtr& reqp, const ServerSupportCall& call,
                                   std::unique_lock<std::mutex>& lock) {
  InflightRequest& req = *reqp;
  EXTENSION_CONTROL_BLOCK* ecb = req.ecb;
  // Checked here as well as in the runtime: the worker runs arbitrary code.
  if (call.request != HSE_REQ_EXEC_URL && has_nul(call)) return refused();
  switch (call.request) {
    case HSE_REQ_SEND_URL:
    case HSE_REQ_SEND_URL_REDIRECT_RESP:
      if (has_control(arg(call, 0))) return refused();  // a URL with CR/LF would split the Location
      break;
    case HSE_REQ_TRANSMIT_FILE:
      // With HSE_IO_SEND_HEADERS the status and head make the response header.
      if ((num(call, 0) & HSE_IO_SEND_HEADERS) &&
          (!status_problem(arg(call, 1)).empty() || !header_block_problem(arg(call, 2)).empty()))
        return refused();
      break;
    case HSE_REQ_EXEC_URL:
      // strs: url, method, child headers (text), entity body (bytes: may hold NULs).
      for (size_t i = 0; i < 3 && i < call.strs.size(); ++i)
        if (call.strs[i].find('\0') != std::string_view::npos) return refused();
      if (has_control(arg(call, 0)) || has_control(arg(call, 1)) || !header_block_problem(arg(call, 2)).empty())
        return refused();
      break;
    default: break;
  }
  switch (call.request) {
    case HSE_REQ_IS_KEEP_CONN:
    case HSE_REQ_IS_CONNECTED: return bool_query(ecb, call.request);

    case HSE_REQ_CLOSE_CONNECTION:
    case HSE_REQ_ABORTIVE_CLOSE:
      return result_of(ecb->ServerSupportFunction(ecb->ConnID, call.request, nullptr, nullptr, nullptr));

    case HSE_REQ_SET_FLUSH_FLAG:
      return result_of(ecb->ServerSupportFunction(ecb->ConnID, call.request,
                                                  reinterpret_cast<LPVOID>(uintptr_t(num(call, 0))), nullptr, nullptr));

    case HSE_APPEND_LOG_PARAMETER:
    case HSE_REQ_REPORT_UNHEALTHY:
    case HSE_REQ_SEND_URL:
    case HSE_REQ_SEND_URL_REDIRECT_RESP: {
      std::string text = arg(call, 0);
      DWORD size = DWORD(text.size() + 1);
      ServerSupportResult r =
          result_of(ecb->ServerSupportFunction(ecb->ConnID, call.request, text.data(), &size, nullptr));
      if (r.ok && (call.request == HSE_REQ_SEND_URL || call.request == HSE_REQ_SEND_URL_REDIRECT_RESP))
        req.headersSent = true;
      return r;
    }

    case HSE_REQ_MAP_URL_TO_PATH: {
      std::string url = arg(call, 0);
      std::string buf(std::max<size_t>(url.size() + 1, 4096), '\0');
      std::memcpy(buf.data(), url.c_str(), url.size() + 1);
      DWORD size = DWORD(buf.size());
      ServerSupportResult r =
          result_of(ecb->ServerSupportFunction(ecb->ConnID, call.request, buf.data(), &size, nullptr));
      if (!r.ok && r.error == ERROR_INSUFFICIENT_BUFFER && size > buf.size()) {
        buf.assign(size, '\0');
        std::memcpy(buf.data(), url.c_str(), url.size() + 1);
        r = result_of(ecb->ServerSupportFunction(ecb->ConnID, call.request, buf.data(), &size, nullptr));
      }
      if (r.ok) r.out = buf.c_str();
      return r;
    }

    case HSE_REQ_MAP_URL_TO_PATH_EX: {
      std::string url = arg(call, 0);
      HSE_URL_MAPEX_INFO info{};
      DWORD size = DWORD(url.size() + 1);
      ServerSupportResult r = result_of(
          ecb->ServerSupportFunction(ecb->ConnID, call.request, url.data(), &size, reinterpret_cast<LPDWORD>(&info)));
      if (r.ok) {
        r.out = info.lpszPath;
        r.ints = {info.dwFlags, info.cchMatchingPath, info.cchMatchingURL};
      }
      return r;
    }

    case HSE_REQ_SEND_CUSTOM_ERROR: {
      std::string status = arg(call, 0);
      HSE_CUSTOM_ERROR_INFO info{};
      info.pszStatus = status.data();
      info.uHttpSubError = uint16_t(num(call, 0));
      info.fAsync = FALSE;
      ServerSupportResult r = result_of(ecb->ServerSupportFunction(ecb->ConnID, call.request, &info, nullptr, nullptr));
      if (r.ok) req.headersSent = true;
      return r;
    }

    case HSE_REQ_EXEC_URL: {
      // strs: url, method, child headers, entity body; ints: flags. The child request runs
      // through the web server's pipeline; its completion arrives on IO_COMPLETION.
      if (req.ioBusy) {
        ServerSupportResult busy;
        busy.error = ERROR_INVALID_PARAMETER;  // one asynchronous operation at a time
        return busy;
      }
      auto st = std::make_shared<ExecUrlStorage>();
      st->url = arg(call, 0);
      st->method = arg(call, 1);
      st->headers = arg(call, 2);
      st->body = arg(call, 3);
      st->info.pszUrl = st->url.empty() ? nullptr : st->url.data();
      st->info.pszMethod = st->method.empty() ? nullptr : st->method.data();
      st->info.pszChildHeaders = st->headers.empty() ? nullptr : st->headers.data();
      if (!st->body.empty()) {
        st->entity.cbAvailable = DWORD(st->body.size());
        st->entity.lpbData = st->body.data();
        st->info.pEntity = &st->entity;
      }
      st->info.dwExecUrlFlags = num(call, 0);
      auto reply = call.reply;
      req.asyncStorage = st;
      HSE_EXEC_URL_INFO* info = &st->info;
      auto refused = std::make_shared<DWORD>(0);
      bool ok = begin_async_locked(
          reqp, lock,
          [ecb, info, refused] {
            if (ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_EXEC_URL, info, nullptr, nullptr)) return true;
            *refused = GetLastError();
            return false;
          },
          [reply](DWORD cbIO, DWORD error, std::unique_lock<std::mutex>& lock) {
            ServerSupportResult r;
            r.ok = error == 0;
            r.error = error;
            r.ints.push_back(cbIO);
            lock.unlock();
            if (reply) reply(std::move(r));
            lock.lock();
          });
      if (!ok) {
        ServerSupportResult r;
        r.error = *refused;
        return r;
      }
      ServerSupportResult r;
      r.ok = true;
      req.headersSent = true;  // the child's response goes to the client
      r.pending = true;
      return r;
    }

    case HSE_REQ_GET_EXEC_URL_STATUS: {
      HSE_EXEC_URL_STATUS st{};
      ServerSupportResult r = result_of(ecb->ServerSupportFunction(ecb->ConnID, call.request, &st, nullptr, nullptr));
      r.ints = {st.uHttpStatusCode, st.uHttpSubStatus, st.dwWin32Error};
      return r;
    }

    case HSE_REQ_TRANSMIT_FILE: {
      // strs: path, status line (with HSE_IO_SEND_HEADERS), head, tail; ints: flags, offset, length.
      // The file is opened here, in the web server's process: a worker's handle means nothing in it.
      std::string path = arg(call, 0), status = arg(call, 1), head = arg(call, 2), tail = arg(call, 3);
#ifdef _WIN32
      // The worker sends the path in UTF-8: the wide API, so that C:\inetpub\fü\x.bin opens
      // (CreateFileA would read it in the ANSI code page).
      int wn = MultiByteToWideChar(CP_UTF8, 0, path.data(), int(path.size()), nullptr, 0);
      std::wstring wpath(size_t(wn > 0 ? wn : 0), L'\0');
      if (wn > 0) MultiByteToWideChar(CP_UTF8, 0, path.data(), int(path.size()), wpath.data(), wn);
      HANDLE file = CreateFileW(wpath.c_str(), GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE, nullptr, OPEN_EXISTING,
                                FILE_ATTRIBUTE_NORMAL, nullptr);
      if (file == INVALID_HANDLE_VALUE) return result_of(FALSE);
#else
      int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        ServerSupportResult r;
        r.error = 2;  // ERROR_FILE_NOT_FOUND
        return r;
      }
      HANDLE file = reinterpret_cast<HANDLE>(intptr_t(fd));
#endif
      HSE_TF_INFO tf{};
      tf.hFile = file;
      tf.pszStatusCode = status.empty() ? nullptr : status.c_str();
      tf.dwFlags = (num(call, 0) | HSE_IO_SYNC) & ~DWORD(HSE_IO_ASYNC);
      tf.Offset = num(call, 1);
      tf.BytesToWrite = num(call, 2);
      tf.pHead = head.empty() ? nullptr : head.data();
      tf.HeadLength = DWORD(head.size());
      tf.pTail = tail.empty() ? nullptr : tail.data();
      tf.TailLength = DWORD(tail.size());
      ServerSupportResult r = result_of(ecb->ServerSupportFunction(ecb->ConnID, call.request, &tf, nullptr, nullptr));
#ifdef _WIN32
      CloseHandle(file);
#else
      ::close(fd);
#endif
      if (r.ok) req.headersSent = true;
      return r;
    }

    default: {
      ServerSupportResult r;
      r.error = ERROR_INVALID_PARAMETER;
      return r;
    }
  }
}

}  // namespace isapi::bridge
