// Windows: start the worker (<name>.exe beside this program) with "--isapi-installer" and the
// rest of this program's command line exactly as it was typed, on the same console and
// standard handles; wait for it and return its exit code. Ctrl+C reaches both processes (they
// share the console): this one ignores it and waits, the worker decides. A job object ends the
// worker if this process is killed, so the pair behaves as one program.
#include <windows.h>

#include <string>
#include <vector>

#include "launcher.h"
#include "utf8_win.h"

namespace isapi::launcher {

namespace {

using win::narrow;
using win::widen;

std::string system_message(DWORD err) {
  wchar_t* text = nullptr;
  DWORD n = FormatMessageW(FORMAT_MESSAGE_ALLOCATE_BUFFER | FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS,
                           nullptr, err, 0, reinterpret_cast<wchar_t*>(&text), 0, nullptr);
  std::wstring w = n && text ? std::wstring(text, n) : L"";
  if (text) LocalFree(text);
  while (!w.empty() && (w.back() == L'\r' || w.back() == L'\n' || w.back() == L' ')) w.pop_back();
  return narrow(w) + " (error " + std::to_string(err) + ")";
}

std::wstring own_folder() {
  std::vector<wchar_t> buf(MAX_PATH);
  for (;;) {
    DWORD n = GetModuleFileNameW(nullptr, buf.data(), DWORD(buf.size()));
    if (n == 0) return {};
    if (n < buf.size()) {
      std::wstring self(buf.data(), n);
      size_t slash = self.find_last_of(L"\\/");
      return slash == std::wstring::npos ? std::wstring(L".") : self.substr(0, slash);
    }
    buf.resize(buf.size() * 2);
  }
}

// What follows the program name on the command line, untouched: the worker's C runtime splits
// it into arguments exactly as this program's would have. The program name is skipped the way
// CommandLineToArgvW and the C runtime read argv[0]: up to the first blank outside double
// quotes, with no backslash escapes.
const wchar_t* arguments_tail(const wchar_t* cmd) {
  bool quoted = false;
  for (; *cmd; ++cmd) {
    if (*cmd == L'"') quoted = !quoted;
    else if (!quoted && (*cmd == L' ' || *cmd == L'\t')) break;
  }
  while (*cmd == L' ' || *cmd == L'\t') ++cmd;
  return cmd;
}

BOOL WINAPI leave_ctrl_c_to_worker(DWORD event) { return event == CTRL_C_EVENT || event == CTRL_BREAK_EVENT; }

HANDLE inheritable_std_handle(DWORD which) {
  HANDLE h = GetStdHandle(which);
  if (h != nullptr && h != INVALID_HANDLE_VALUE) SetHandleInformation(h, HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT);
  return h;
}

}  // namespace

int run_worker_as_installer(int, char**) {
  std::wstring folder = own_folder();
  if (folder.empty()) return fail("cannot find this program's folder: " + system_message(GetLastError()));
  std::vector<std::string> names;
  WIN32_FIND_DATAW found;
  HANDLE find = FindFirstFileW((folder + L"\\*.manifest.json").c_str(), &found);
  if (find != INVALID_HANDLE_VALUE) {
    do {
      std::string name = app_name_from_manifest(narrow(found.cFileName));
      if (!name.empty() && !(found.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY)) names.push_back(name);
    } while (FindNextFileW(find, &found));
    FindClose(find);
  }
  if (names.size() != 1) {
    return fail(narrow(folder) +
                (names.empty() ? " holds no <name>.manifest.json" : " holds more than one <name>.manifest.json") +
                ": the installer works from the folder `isapi pack` wrote, beside the bridge and the worker");
  }
  std::wstring worker = folder + L"\\" + widen(names[0]) + L".exe";
  std::wstring cmdline = L"\"" + worker + L"\" " + widen(kInstallerFlag);
  const wchar_t* tail = arguments_tail(GetCommandLineW());
  if (*tail) cmdline += std::wstring(L" ") + tail;

  STARTUPINFOW si{};
  si.cb = sizeof si;
  si.dwFlags = STARTF_USESTDHANDLES;
  si.hStdInput = inheritable_std_handle(STD_INPUT_HANDLE);
  si.hStdOutput = inheritable_std_handle(STD_OUTPUT_HANDLE);
  si.hStdError = inheritable_std_handle(STD_ERROR_HANDLE);
  SetConsoleCtrlHandler(leave_ctrl_c_to_worker, TRUE);

  PROCESS_INFORMATION pi{};
  if (!CreateProcessW(worker.c_str(), cmdline.data(), nullptr, nullptr, TRUE, CREATE_SUSPENDED, nullptr, nullptr, &si,
                      &pi)) {
    DWORD err = GetLastError();
    return fail(
        "cannot start " + narrow(worker) + ": " + system_message(err) +
        (err == ERROR_FILE_NOT_FOUND ? " (the manifest names it: copy the whole folder, or pack it again)" : ""));
  }
  // Only the worker joins the job (silent breakaway: what the installer starts, such as
  // appcmd, is its own business). Without a job (not allowed here) the worker simply outlives
  // a killed launcher, as any child would.
  HANDLE job = CreateJobObjectW(nullptr, nullptr);
  if (job) {
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION limits{};
    limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | JOB_OBJECT_LIMIT_SILENT_BREAKAWAY_OK;
    if (!SetInformationJobObject(job, JobObjectExtendedLimitInformation, &limits, sizeof limits) ||
        !AssignProcessToJobObject(job, pi.hProcess)) {
      CloseHandle(job);
      job = nullptr;
    }
  }
  ResumeThread(pi.hThread);
  CloseHandle(pi.hThread);
  WaitForSingleObject(pi.hProcess, INFINITE);
  DWORD code = 1;
  GetExitCodeProcess(pi.hProcess, &code);
  CloseHandle(pi.hProcess);
  if (job) CloseHandle(job);
  return int(code);
}

}  // namespace isapi::launcher
