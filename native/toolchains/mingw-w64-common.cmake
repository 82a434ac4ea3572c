# What both mingw-w64 toolchain files share; each sets CMAKE_SYSTEM_PROCESSOR and
# ISAPI_MINGW_TRIPLE first, then includes this file.
# The -posix compilers are required: they provide std::thread/std::mutex (through winpthreads,
# linked statically by the bridge so the DLL imports system DLLs only).
set(CMAKE_SYSTEM_NAME Windows)

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

# No global _WIN32_WINNT/UNICODE here: each target picks its minimum Windows version (the
# bridge: Windows 8 / Server 2012), and code calls the ...W functions explicitly.
