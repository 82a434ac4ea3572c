// Windows transport: a named pipe `\\.\pipe\node-isapi-<128-bit random hex>`, created by the
// bridge as the first and only instance, local clients only, with a DACL that lets nothing but
// the bridge process's own user open it. Nothing is inherited: the worker connects by name (the
// name travels in ISAPI_CHANNEL as `pipe:<name>`) and proves itself with ISAPI_CHANNEL_TOKEN.
//
// Both ends use overlapped I/O, one event per operation: the reader thread blocks in ReadFile
// while other threads write on the same handle, which synchronous handles would serialize.
//
// Accepting the worker is lazy. A fresh pipe instance is "listening"; when the worker opens it,
// it becomes connected whether or not the bridge waits in ConnectNamedPipe. So the bridge's
// reader thread just reads: ReadFile answers ERROR_PIPE_LISTENING until the worker has
// connected, and only then does read_some wait in an overlapped ConnectNamedPipe. The bridge
// writes only after the worker's Ready message was read, i.e. after the connection.
//
// A worker that dies before connecting would leave that wait hanging (on POSIX the inherited
// socket closes with the child). So create_channel's childHandle is a duplicate of the pipe
// handle that serves as a link: process_win.cc passes the new process to link_worker_process(),
// and the connect wait also watches the process; its exit reads as end-of-stream.
#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0602  // Windows 8 / Server 2012 (CancelIoEx needs Vista)
#endif
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#include <ntsecapi.h>  // RtlGenRandom (advapi32's SystemFunction036)

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "transport.h"

namespace isapi::channel {

namespace {

constexpr DWORD kPipeBuffer = 1u << 20;  // a whole small response in one write
constexpr DWORD kMaxIo = 1u << 30;       // per ReadFile/WriteFile call
constexpr int kBusyTimeoutMs = 2000;     // worker side: waiting for a busy pipe

struct PipeState {
  std::atomic<bool> shut{false};
  HANDLE peerProcess = nullptr;  // bridge side: the worker, watched while waiting for it to connect
};

std::mutex g_mu;
// Every open endpoint's state, and the link handles (create_channel's childHandle) → the state of
// the bridge end they belong to.
std::unordered_map<HANDLE, std::shared_ptr<PipeState>> g_pipes;
std::unordered_map<HANDLE, std::shared_ptr<PipeState>> g_links;
std::vector<HANDLE> g_idleEvents;

std::shared_ptr<PipeState> state_of(HANDLE h) {
  std::lock_guard<std::mutex> lock(g_mu);
  auto& s = g_pipes[h];
  if (!s) s = std::make_shared<PipeState>();
  return s;
}

// Manual-reset events for OVERLAPPED, reused. ReadFile/WriteFile/ConnectNamedPipe reset the
// event when they start, and an event only goes back to the pool after its operation ended.
struct IoEvent {
  HANDLE h = nullptr;
  IoEvent() {
    {
      std::lock_guard<std::mutex> lock(g_mu);
      if (!g_idleEvents.empty()) {
        h = g_idleEvents.back();
        g_idleEvents.pop_back();
      }
    }
    if (!h) h = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  }
  ~IoEvent() {
    if (!h) return;
    std::lock_guard<std::mutex> lock(g_mu);
    if (g_idleEvents.size() < 64) g_idleEvents.push_back(h);
    else CloseHandle(h);
  }
  IoEvent(const IoEvent&) = delete;
  IoEvent& operator=(const IoEvent&) = delete;
};

// Finishes an operation that answered ERROR_IO_PENDING. It is cancelled when the endpoint is
// shut down, or when `peer` (a process) exits first. Returns the error (0 on success).
DWORD finish_pending(HANDLE h, OVERLAPPED& ov, const PipeState& st, HANDLE peer, DWORD& bytes) {
  // shutdown() sets `shut` before it cancels: checking after the operation started closes the
  // window where shutdown ran between our check in the caller and the start of the operation.
  if (st.shut.load()) {
    CancelIoEx(h, &ov);
  } else if (peer) {
    HANDLE waits[2] = {ov.hEvent, peer};
    if (WaitForMultipleObjects(2, waits, FALSE, INFINITE) == WAIT_OBJECT_0 + 1) CancelIoEx(h, &ov);
  }
  if (GetOverlappedResult(h, &ov, &bytes, TRUE)) return 0;
  return GetLastError();
}

// Waits for the worker to open the pipe. False when the endpoint was shut down or the worker
// exited without connecting.
bool accept_worker(HANDLE h, const PipeState& st) {
  HANDLE peer;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    peer = st.peerProcess;
  }
  IoEvent ev;
  OVERLAPPED ov{};
  ov.hEvent = ev.h;
  if (ConnectNamedPipe(h, &ov)) return true;
  DWORD err = GetLastError();
  if (err == ERROR_PIPE_CONNECTED) return true;
  if (err != ERROR_IO_PENDING) return false;
  DWORD unused = 0;
  return finish_pending(h, ov, st, peer, unused) == 0;
}

// A DACL granting read/write to the process token's user and to nobody else.
struct OwnerOnlySecurity {
  std::vector<unsigned char> userBuf, aclBuf;
  SECURITY_DESCRIPTOR sd{};
  SECURITY_ATTRIBUTES sa{};

  bool init(std::string& error) {
    HANDLE token = nullptr;
    if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &token)) {
      error = "cannot read this process's user: " + system_message(GetLastError());
      return false;
    }
    DWORD size = 0;
    GetTokenInformation(token, TokenUser, nullptr, 0, &size);
    userBuf.resize(size ? size : 1);
    bool ok = GetTokenInformation(token, TokenUser, userBuf.data(), size, &size);
    DWORD err = GetLastError();
    CloseHandle(token);
    if (!ok) {
      error = "cannot read this process's user: " + system_message(err);
      return false;
    }
    PSID sid = reinterpret_cast<TOKEN_USER*>(userBuf.data())->User.Sid;
    DWORD aclSize = DWORD(sizeof(ACL) + sizeof(ACCESS_ALLOWED_ACE) - sizeof(DWORD) + GetLengthSid(sid));
    aclBuf.resize(aclSize);
    PACL acl = reinterpret_cast<PACL>(aclBuf.data());
    // Specific rights, not GENERIC_*: the ACE is compared with the mapped rights of CreateFile.
    if (!InitializeAcl(acl, aclSize, ACL_REVISION) ||
        !AddAccessAllowedAce(acl, ACL_REVISION, FILE_GENERIC_READ | FILE_GENERIC_WRITE, sid) ||
        !InitializeSecurityDescriptor(&sd, SECURITY_DESCRIPTOR_REVISION) ||
        !SetSecurityDescriptorDacl(&sd, TRUE, acl, FALSE)) {
      error = "cannot build the channel's security descriptor: " + system_message(GetLastError());
      return false;
    }
    sa.nLength = sizeof sa;
    sa.lpSecurityDescriptor = &sd;
    sa.bInheritHandle = FALSE;
    return true;
  }
};

}  // namespace

std::string system_message(unsigned long err) {
  char* text = nullptr;
  DWORD n = FormatMessageA(FORMAT_MESSAGE_ALLOCATE_BUFFER | FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS,
                           nullptr, err, 0, reinterpret_cast<char*>(&text), 0, nullptr);
  std::string s = n && text ? std::string(text, n) : std::string();
  if (text) LocalFree(text);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '.')) s.pop_back();
  return s + " (error " + std::to_string(err) + ")";
}

NativeHandle Endpoint::invalid() { return INVALID_HANDLE_VALUE; }

Endpoint& Endpoint::operator=(Endpoint&& o) noexcept {
  if (this != &o) {
    close();
    h_ = o.h_;
    o.h_ = invalid();
  }
  return *this;
}

bool Endpoint::write_all(const void* data, size_t n) {
  if (!valid()) return false;
  auto st = state_of(h_);
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    if (st->shut.load()) return false;
    IoEvent ev;
    OVERLAPPED ov{};
    ov.hEvent = ev.h;
    DWORD want = DWORD(n < kMaxIo ? n : kMaxIo);
    DWORD put = 0;
    DWORD err = 0;
    if (WriteFile(h_, p, want, nullptr, &ov)) {
      if (!GetOverlappedResult(h_, &ov, &put, FALSE)) err = GetLastError();
    } else {
      err = GetLastError();
      if (err == ERROR_IO_PENDING) err = finish_pending(h_, ov, *st, nullptr, put);
    }
    // ERROR_PIPE_LISTENING (worker not connected yet), broken pipe, cancelled: the peer is not
    // there; the reader sees the same and fails the worker's requests.
    if (err) return false;
    p += put;
    n -= put;
  }
  return true;
}

// Overlapped pipes have no cheap non-blocking write: report "would block" and let the
// caller's writer thread send it.
long Endpoint::try_write(const void*, size_t) { return 0; }

long Endpoint::read_some(void* buf, size_t n) {
  if (!valid()) return -1;
  auto st = state_of(h_);
  DWORD want = DWORD(n < kMaxIo ? n : kMaxIo);
  for (;;) {
    if (st->shut.load()) return 0;
    IoEvent ev;
    OVERLAPPED ov{};
    ov.hEvent = ev.h;
    DWORD got = 0;
    DWORD err = 0;
    if (ReadFile(h_, buf, want, nullptr, &ov)) {
      if (!GetOverlappedResult(h_, &ov, &got, FALSE)) err = GetLastError();
    } else {
      err = GetLastError();
      if (err == ERROR_IO_PENDING) err = finish_pending(h_, ov, *st, nullptr, got);
    }
    switch (err) {
      case 0:
        if (got == 0) continue;  // a zero-length write by the peer, not end-of-stream
        return long(got);
      case ERROR_MORE_DATA:  // message-mode peer; the rest comes with the next read
        return long(got);
      case ERROR_PIPE_LISTENING:  // bridge side, the worker has not opened the pipe yet
        if (!accept_worker(h_, *st)) return 0;
        continue;
      case ERROR_BROKEN_PIPE:
      case ERROR_PIPE_NOT_CONNECTED:
      case ERROR_NO_DATA:
      case ERROR_OPERATION_ABORTED:  // shutdown()
        return 0;
      default: return -1;
    }
  }
}

void Endpoint::shutdown() {
  if (!valid()) return;
  state_of(h_)->shut.store(true);
  CancelIoEx(h_, nullptr);  // every thread's pending operation on this handle
}

void Endpoint::close() {
  if (!valid()) return;
  std::shared_ptr<PipeState> st;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = g_pipes.find(h_);
    if (it != g_pipes.end()) {
      st = std::move(it->second);
      g_pipes.erase(it);
    }
  }
  if (st) {
    std::lock_guard<std::mutex> lock(g_mu);
    if (st->peerProcess) {
      CloseHandle(st->peerProcess);
      st->peerProcess = nullptr;
    }
  }
  CloseHandle(h_);
  h_ = invalid();
}

void close_native(NativeHandle h) {
  if (h == INVALID_HANDLE_VALUE || h == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    g_links.erase(h);
  }
  CloseHandle(h);
}

bool link_worker_process(NativeHandle childHandle, void* process) {
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = g_links.find(childHandle);
  if (it == g_links.end() || !process) return false;
  HANDLE dup = nullptr;
  if (!DuplicateHandle(GetCurrentProcess(), process, GetCurrentProcess(), &dup, SYNCHRONIZE, FALSE, 0)) return false;
  if (it->second->peerProcess) CloseHandle(it->second->peerProcess);
  it->second->peerProcess = dup;
  return true;
}

bool create_channel(Endpoint& parent, NativeHandle& childHandle, std::string& childAddress, std::string& error) {
  childHandle = INVALID_HANDLE_VALUE;
  OwnerOnlySecurity sec;
  if (!sec.init(error)) return false;
  // The name is ASCII by construction (hex), so the ANSI pipe APIs here and in open_worker_end
  // are exact; paths that come from outside (folders, files) go through the wide APIs.
  std::string name = "\\\\.\\pipe\\node-isapi-" + random_token();
  HANDLE h = CreateNamedPipeA(name.c_str(), PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE,
                              PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS, 1,
                              kPipeBuffer, kPipeBuffer, 0, &sec.sa);
  if (h == INVALID_HANDLE_VALUE) {
    error = "cannot create the worker's channel " + name + ": " + system_message(GetLastError());
    return false;
  }
  HANDLE link = nullptr;
  if (!DuplicateHandle(GetCurrentProcess(), h, GetCurrentProcess(), &link, 0, FALSE, DUPLICATE_SAME_ACCESS)) {
    error = "cannot create the worker's channel " + name + ": " + system_message(GetLastError());
    CloseHandle(h);
    return false;
  }
  auto st = std::make_shared<PipeState>();
  {
    std::lock_guard<std::mutex> lock(g_mu);
    g_pipes[h] = st;
    g_links[link] = st;
  }
  parent = Endpoint(h);
  childHandle = link;
  childAddress = "pipe:" + name;
  return true;
}

bool open_worker_end(const std::string& address, Endpoint& out, std::string& error) {
  if (address.rfind("pipe:", 0) != 0) {
    error = "ISAPI_CHANNEL must be pipe:<name> on Windows, got '" + address + "'";
    return false;
  }
  std::string name = address.substr(5);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kBusyTimeoutMs);
  for (;;) {
    // SECURITY_IDENTIFICATION: the bridge may learn who we are but never act as us.
    HANDLE h = CreateFileA(name.c_str(), GENERIC_READ | GENERIC_WRITE, 0, nullptr, OPEN_EXISTING,
                           FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION, nullptr);
    if (h != INVALID_HANDLE_VALUE) {
      out = Endpoint(h);
      return true;
    }
    DWORD err = GetLastError();
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (err == ERROR_PIPE_BUSY && left > 0) {
      WaitNamedPipeA(name.c_str(), DWORD(left));
      continue;
    }
    if (err == ERROR_FILE_NOT_FOUND)
      error = "the channel " + name +
              " does not exist (was this worker started by its bridge, and is the bridge still running?)";
    else if (err == ERROR_ACCESS_DENIED)
      error = "access to the channel " + name +
              " was denied: the worker must run as the same user as the web server process that started it";
    else if (err == ERROR_PIPE_BUSY) error = "the channel " + name + " is already taken by another process";
    else error = "cannot open the channel " + name + ": " + system_message(err);
    return false;
  }
}

std::string random_token() {
  unsigned char b[16] = {0};
  if (!RtlGenRandom(b, sizeof b)) {
    // Never seen in practice; still, never hand out a predictable all-zero name or token.
    LARGE_INTEGER t;
    QueryPerformanceCounter(&t);
    unsigned long long mix[2] = {
        static_cast<unsigned long long>(t.QuadPart) * 0x9E3779B97F4A7C15ull,
        (static_cast<unsigned long long>(GetCurrentProcessId()) << 32 ^ GetCurrentThreadId() ^ GetTickCount64()) *
            0xC2B2AE3D27D4EB4Full};
    std::memcpy(b, mix, sizeof b);
  }
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (unsigned char c : b) {
    s += hex[c >> 4];
    s += hex[c & 15];
  }
  return s;
}

}  // namespace isapi::channel
