// ISAPI ABI for node-isapi's native code.
//
// On Windows this is the platform SDK (mingw-w64's httpext.h / httpfilt.h). Elsewhere the same
// types are declared here with the Windows x64 layout: DWORD is 32 bits (never `unsigned long`,
// which is 64 bits on LP64), BOOL is int, WINAPI is empty. isapi_layout.h checks every offset
// against docs/isapi.md §3 at compile time, so both builds agree.
#pragma once

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#include <httpext.h>
#include <httpfilt.h>
#else
#include "isapi_posix.h"
#endif

#include "isapi_constants.h"
#include "isapi_layout.h"
