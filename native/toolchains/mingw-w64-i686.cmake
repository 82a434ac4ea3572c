# Cross-compiling the native parts for 32-bit Windows (IIS application pools with
# enable32BitAppOnWindows: the bridge DLL must match the pool's bitness; its workers stay x64)
# with mingw-w64 (Debian package `mingw-w64`).
# Used by scripts/build-native.js: cmake-js compile --CDCMAKE_TOOLCHAIN_FILE=<this file>.
# The -posix compilers are required: they provide std::thread/std::mutex (through winpthreads,
# linked statically by the bridge so the DLL imports system DLLs only).
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR X86)

set(ISAPI_MINGW_TRIPLE i686-w64-mingw32)

set(CMAKE_C_COMPILER ${ISAPI_MINGW_TRIPLE}-gcc-posix)
set(CMAKE_CXX_COMPILER ${ISAPI_MINGW_TRIPLE}-g++-posix)
set(CMAKE_RC_COMPILER ${ISAPI_MINGW_TRIPLE}-windres)
find_program(CMAKE_DLLTOOL NAMES ${ISAPI_MINGW_TRIPLE}-dlltool)
find_program(CMAKE_AR NAMES ${ISAPI_MINGW_TRIPLE}-gcc-ar-posix ${ISAPI_MINGW_TRIPLE}-ar)
find_program(CMAKE_RANLIB NAMES ${ISAPI_MINGW_TRIPLE}-gcc-ranlib-posix ${ISAPI_MINGW_TRIPLE}-ranlib)

# Libraries and headers come from the mingw-w64 sysroot only; programs from the build machine.
set(CMAKE_FIND_ROOT_PATH /usr/${ISAPI_MINGW_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# ISAPI entry points are __stdcall: on x86 their C names are decorated (_HttpExtensionProc@4).
# IIS looks them up undecorated, as bridge.def lists them; --kill-at strips the @N from the
# export table (--enable-stdcall-fixup: resolving the .def names to the decorated ones is intended, no warning).
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-Wl,--kill-at -Wl,--enable-stdcall-fixup")

# No global _WIN32_WINNT/UNICODE here: each target picks its minimum Windows version (the
# bridge: Windows 8 / Server 2012), and code calls the ...W functions explicitly.
