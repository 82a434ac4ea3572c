// The launcher's portable part: naming the worker from the folder's manifest, and errors. The
// OS parts (finding this executable's folder, starting the worker) are launcher_posix.cc and
// launcher_win.cc.
#include "launcher.h"

#include <cstdio>

namespace isapi::launcher {

std::string app_name_from_manifest(const std::string& file) {
  const std::string suffix = ".manifest.json";
  if (file.size() <= suffix.size() || file.compare(file.size() - suffix.size(), suffix.size(), suffix) != 0) return {};
  return file.substr(0, file.size() - suffix.size());
}

int fail(const std::string& message) {
  std::fprintf(stderr, "install: %s\n", message.c_str());
  std::fflush(stderr);
  return 1;
}

}  // namespace isapi::launcher

int main(int argc, char** argv) { return isapi::launcher::run_worker_as_installer(argc, argv); }
