// The worker's resident memory. Portable interface; working_set_posix.cc (Linux /proc) and
// working_set_win.cc implement it.
#pragma once
#include <cstddef>

namespace isapi::bridge {

// Drops from this process's resident set the pages of its program and libraries that are read
// only and unmodified: what starting Node touched once (symbol tables, the source and code
// cache of built-in modules, start-up code). They are clean copies of the files, so nothing is
// lost: a page used again is mapped again from the file cache (a minor fault). Called once the
// worker is ready; returns the bytes released from the resident set (0 where unsupported).
size_t release_startup_pages();

}  // namespace isapi::bridge
