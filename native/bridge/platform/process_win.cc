// Windows process supervision: CreateProcessW with an explicit environment block, stdout and
// stderr appended to the worker log, exactly those handles inherited (a handle list), no
// console window, and every worker in one kill-on-close job object owned by the bridge, so
// workers never outlive the web server process (or the bridge DLL, if it is unloaded).
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#define PSAPI_VERSION 2  // K32GetProcessMemoryInfo from kernel32: no psapi.dll import
#include <psapi.h>

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <vector>

#include "process.h"
#include "utf8_win.h"

namespace isapi::bridge {
namespace {

using win::narrow;
using win::widen;

using channel::system_message;

// The variable name of an environment entry. Entries such as "=C:=C:\dir" (per-drive current
// directories) start with '='; their name runs to the second '='.
std::wstring_view env_name(const std::wstring& entry) {
  size_t eq = entry.find(L'=', 1);
  return std::wstring_view(entry).substr(0, eq == std::wstring::npos ? entry.size() : eq);
}

bool same_name(std::wstring_view a, std::wstring_view b) {
  return CompareStringOrdinal(a.data(), int(a.size()), b.data(), int(b.size()), TRUE) == CSTR_EQUAL;
}

// The current environment plus `additions` (which replace variables of the same name), as a
// CREATE_UNICODE_ENVIRONMENT block sorted by name, case-insensitively, as Windows requires.
std::wstring environment_block(const std::vector<std::pair<std::string, std::string>>& additions) {
  std::vector<std::wstring> entries;
  if (LPWCH env = GetEnvironmentStringsW()) {
    for (const wchar_t* p = env; *p; p += wcslen(p) + 1) entries.emplace_back(p);
    FreeEnvironmentStringsW(env);
  }
  for (auto& [k, v] : additions) {
    std::wstring name = widen(k);
    entries.erase(std::remove_if(entries.begin(), entries.end(),
                                 [&](const std::wstring& e) { return same_name(env_name(e), name); }),
                  entries.end());
    entries.push_back(name + L"=" + widen(v));
  }
  std::stable_sort(entries.begin(), entries.end(), [](const std::wstring& a, const std::wstring& b) {
    std::wstring_view na = env_name(a), nb = env_name(b);
    return CompareStringOrdinal(na.data(), int(na.size()), nb.data(), int(nb.size()), TRUE) == CSTR_LESS_THAN;
  });
  std::wstring block;
  for (auto& e : entries) {
    block += e;
    block += L'\0';
  }
  if (entries.empty()) block += L'\0';
  block += L'\0';
  return block;
}

// One job per bridge, created on first use. Closing it (process exit, or the static destructor
// when the DLL is unloaded) kills every worker still in it.
struct WorkerJob {
  std::once_flag once;
  HANDLE job = nullptr;
  HANDLE get() {
    std::call_once(once, [this] {
      HANDLE j = CreateJobObjectW(nullptr, nullptr);
      if (!j) return;
      JOBOBJECT_EXTENDED_LIMIT_INFORMATION li{};
      // DIE_ON_UNHANDLED_EXCEPTION: a crashing worker exits at once (no error reporting dialog
      // or dump collection holding it), so the bridge notices and restarts it promptly.
      li.BasicLimitInformation.LimitFlags =
          JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION;
      if (!SetInformationJobObject(j, JobObjectExtendedLimitInformation, &li, sizeof li)) {
        CloseHandle(j);
        return;
      }
      job = j;
    });
    return job;
  }
  ~WorkerJob() {
    if (job) CloseHandle(job);
  }
};
WorkerJob g_job;

HANDLE open_inheritable(const wchar_t* path, DWORD access, DWORD disposition) {
  SECURITY_ATTRIBUTES sa{sizeof sa, nullptr, TRUE};
  return CreateFileW(path, access, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, &sa, disposition,
                     FILE_ATTRIBUTE_NORMAL, nullptr);
}

}  // namespace

bool Process::spawn(const SpawnOptions& opts, std::string& error) {
  if (process_) {
    CloseHandle(process_);
    process_ = nullptr;
  }
  std::wstring exe = widen(opts.executable);
  std::wstring cmdline = L"\"" + exe + L"\"";
  std::wstring env = environment_block(opts.env);

  // stdin is NUL; stdout and stderr share the write end of a pipe the bridge drains. Only
  // these two handles are inherited, whatever else the web server process holds.
  close_output();
  HANDLE nul = open_inheritable(L"NUL", GENERIC_READ | GENERIC_WRITE, OPEN_EXISTING);
  HANDLE pipeRead = nullptr, log = INVALID_HANDLE_VALUE;
  SECURITY_ATTRIBUTES sa{sizeof sa, nullptr, TRUE};
  if (CreatePipe(&pipeRead, &log, &sa, 0)) {
    SetHandleInformation(pipeRead, HANDLE_FLAG_INHERIT, 0);
  } else {
    pipeRead = nullptr;
    log = INVALID_HANDLE_VALUE;
  }
  HANDLE out = log != INVALID_HANDLE_VALUE ? log : nul;
  std::vector<HANDLE> inherit;
  if (nul != INVALID_HANDLE_VALUE) inherit.push_back(nul);
  if (log != INVALID_HANDLE_VALUE) inherit.push_back(log);

  STARTUPINFOEXW si{};
  si.StartupInfo.cb = sizeof si;
  std::vector<unsigned char> attrBuf;
  if (!inherit.empty()) {
    SIZE_T size = 0;
    InitializeProcThreadAttributeList(nullptr, 1, 0, &size);
    attrBuf.resize(size);
    auto* attrs = reinterpret_cast<LPPROC_THREAD_ATTRIBUTE_LIST>(attrBuf.data());
    if (InitializeProcThreadAttributeList(attrs, 1, 0, &size)) {
      if (UpdateProcThreadAttribute(attrs, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST, inherit.data(),
                                    inherit.size() * sizeof(HANDLE), nullptr, nullptr)) {
        si.lpAttributeList = attrs;
      } else {
        DeleteProcThreadAttributeList(attrs);
      }
    }
    si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
    si.StartupInfo.hStdInput = nul;
    si.StartupInfo.hStdOutput = out;
    si.StartupInfo.hStdError = out;
  }

  PROCESS_INFORMATION pi{};
  DWORD flags = CREATE_UNICODE_ENVIRONMENT | CREATE_NO_WINDOW | CREATE_SUSPENDED |
                (si.lpAttributeList ? EXTENDED_STARTUPINFO_PRESENT : 0);
  // Without a handle list (not expected on Windows 8+), nothing is inherited rather than
  // everything: the worker then runs without captured output.
  BOOL inheritHandles = si.lpAttributeList ? TRUE : FALSE;
  BOOL ok = CreateProcessW(exe.c_str(), cmdline.data(), nullptr, nullptr, inheritHandles, flags, env.data(), nullptr,
                           &si.StartupInfo, &pi);
  DWORD err = ok ? 0 : GetLastError();
  if (si.lpAttributeList) DeleteProcThreadAttributeList(si.lpAttributeList);
  if (log != INVALID_HANDLE_VALUE) CloseHandle(log);
  if (nul != INVALID_HANDLE_VALUE) CloseHandle(nul);
  if (!ok) {
    if (pipeRead) CloseHandle(pipeRead);
    error = "cannot start worker " + opts.executable + ": " + system_message(err);
    return false;
  }
  output_ = pipeRead;
  // Assigned before it runs, so anything it starts is in the job too. Assignment can fail in
  // a process that is already in a job on old Windows versions: the worker then still runs,
  // only without the kill-on-close guarantee.
  if (HANDLE job = g_job.get()) AssignProcessToJobObject(job, pi.hProcess);
  ResumeThread(pi.hThread);
  CloseHandle(pi.hThread);
  channel::link_worker_process(opts.channelHandle, pi.hProcess);
  process_ = pi.hProcess;
  pid_ = long(pi.dwProcessId);
  exited_ = false;
  exitDescription_.clear();
  return true;
}

long Process::read_output(char* buf, size_t size) {
  if (!output_) return -1;
  DWORD n = 0;
  // ERROR_BROKEN_PIPE: every writer has gone. A zero-byte write reads as 0 bytes: read on.
  while (ReadFile(output_, buf, DWORD(size), &n, nullptr))
    if (n > 0) return long(n);
  return -1;
}

void Process::close_output() {
  if (output_) CloseHandle(output_);
  output_ = nullptr;
}

void Process::kill() {
  if (running() && process_) TerminateProcess(process_, 1);
}

bool Process::wait(int timeoutMs) {
  if (pid_ <= 0 || exited_) return true;
  if (!process_) {
    exited_ = true;
    exitDescription_ = "unknown";
    return true;
  }
  if (WaitForSingleObject(process_, timeoutMs < 0 ? INFINITE : DWORD(timeoutMs)) != WAIT_OBJECT_0) return false;
  DWORD code = 0;
  if (!GetExitCodeProcess(process_, &code)) {
    exitDescription_ = "unknown (" + system_message(GetLastError()) + ")";
  } else if (code >= 0xC0000000u) {
    // NTSTATUS values (0xC0000005 access violation, 0xC0000409 stack buffer overrun…) read
    // better in hex, the way Windows tools print them.
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%08lX", static_cast<unsigned long>(code));
    exitDescription_ = std::string("exit code ") + hex;
  } else {
    exitDescription_ = "exit code " + std::to_string(code);
  }
  exited_ = true;
  CloseHandle(process_);
  process_ = nullptr;
  return true;
}

size_t Process::private_memory() const {
  if (!running() || !process_) return 0;
  // PagefileUsage is the commit charge, the process's private bytes (the _EX struct's
  // PrivateUsage is documented as the same value; Wine fills only PagefileUsage).
  PROCESS_MEMORY_COUNTERS pmc{};
  pmc.cb = sizeof pmc;
  if (!GetProcessMemoryInfo(process_, &pmc, sizeof pmc)) return 0;
  return pmc.PagefileUsage;
}

std::string this_module_path() {
  HMODULE self = nullptr;
  if (!GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                          reinterpret_cast<LPCWSTR>(&this_module_path), &self))
    return {};
  std::wstring path(MAX_PATH, L'\0');
  for (;;) {
    DWORD n = GetModuleFileNameW(self, path.data(), DWORD(path.size()));
    if (n == 0) return {};
    if (n < path.size()) {
      path.resize(n);
      break;
    }
    path.resize(path.size() * 2);  // truncated: retry with a bigger buffer
  }
  return narrow(path);
}

int processor_count() {
  DWORD n = GetActiveProcessorCount(ALL_PROCESSOR_GROUPS);
  if (n == 0) {
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    n = si.dwNumberOfProcessors;
  }
  return n ? int(n) : 1;
}

void make_directory(const std::string& dir) {
  std::wstring w = widen(dir);
  for (size_t i = 1; i <= w.size(); ++i) {
    if (i != w.size() && w[i] != L'\\' && w[i] != L'/') continue;
    std::wstring prefix = w.substr(0, i);
    // Skip drive roots ("C:") and the server/share part of UNC paths: they already exist.
    if (prefix.size() == 2 && prefix[1] == L':') continue;
    if (prefix.find_first_not_of(L"\\/") == std::wstring::npos) continue;
    CreateDirectoryW(prefix.c_str(), nullptr);
  }
}

}  // namespace isapi::bridge
