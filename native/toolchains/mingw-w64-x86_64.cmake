# Cross-compiling the native parts for Windows x64 with mingw-w64 (Debian package `mingw-w64`).
# Used by scripts/build-native.js: cmake-js compile --CDCMAKE_TOOLCHAIN_FILE=<this file>.
set(CMAKE_SYSTEM_PROCESSOR AMD64)
set(ISAPI_MINGW_TRIPLE x86_64-w64-mingw32)
include(${CMAKE_CURRENT_LIST_DIR}/mingw-w64-common.cmake)
