// How the bridge marks its ISAPI entry points for export (bridge.def lists them on Windows too).
#pragma once
#ifdef _WIN32
#define ISAPI_EXPORT extern "C" __declspec(dllexport)
#else
#define ISAPI_EXPORT extern "C" __attribute__((visibility("default")))
#endif
