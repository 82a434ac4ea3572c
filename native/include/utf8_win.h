// UTF-8 <-> UTF-16 for Windows code. Every path and text inside our native code is UTF-8; the
// Windows APIs that honour non-ASCII (…W functions) take UTF-16, and the narrow (…A / CRT)
// ones would read the bytes in the ANSI code page (C:\inetpub\fü breaks). One pair of
// functions, used by the host, the bridge and the launcher.
#pragma once
#ifdef _WIN32
#include <windows.h>

#include <string>

namespace isapi::win {

inline std::wstring widen(const std::string& s) {
  if (s.empty()) return {};
  int n = MultiByteToWideChar(CP_UTF8, 0, s.data(), int(s.size()), nullptr, 0);
  std::wstring w(size_t(n > 0 ? n : 0), L'\0');
  if (n > 0) MultiByteToWideChar(CP_UTF8, 0, s.data(), int(s.size()), w.data(), n);
  return w;
}

inline std::string narrow(const std::wstring& w) {
  if (w.empty()) return {};
  int n = WideCharToMultiByte(CP_UTF8, 0, w.data(), int(w.size()), nullptr, 0, nullptr, nullptr);
  std::string s(size_t(n > 0 ? n : 0), '\0');
  if (n > 0) WideCharToMultiByte(CP_UTF8, 0, w.data(), int(w.size()), s.data(), n, nullptr, nullptr);
  return s;
}

}  // namespace isapi::win
#endif
