# Cross-compiling the native parts for 32-bit Windows (IIS application pools with
# enable32BitAppOnWindows: the bridge DLL must match the pool's bitness; its workers stay x64)
# with mingw-w64 (Debian package `mingw-w64`).
# Used by scripts/build-native.js: cmake-js compile --CDCMAKE_TOOLCHAIN_FILE=<this file>.
set(CMAKE_SYSTEM_PROCESSOR X86)
set(ISAPI_MINGW_TRIPLE i686-w64-mingw32)
include(${CMAKE_CURRENT_LIST_DIR}/mingw-w64-common.cmake)

# ISAPI entry points are __stdcall: on x86 their C names are decorated (_HttpExtensionProc@4).
# IIS looks them up undecorated, as bridge.def lists them; --kill-at strips the @N from the
# export table (--enable-stdcall-fixup: resolving the .def names to the decorated ones is intended, no warning).
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-Wl,--kill-at -Wl,--enable-stdcall-fixup")
# The same for MODULE libraries (the host's C test extensions and filters).
set(CMAKE_MODULE_LINKER_FLAGS_INIT "-Wl,--kill-at -Wl,--enable-stdcall-fixup")
