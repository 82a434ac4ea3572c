# The worker's Node-API addon, compiled into the bridge library (native/bridge/CMakeLists.txt
# includes this file): one binary is both the web server's extension and the worker's addon.
set(ISAPI_WORKER_ADDON_SRC
  ${CMAKE_CURRENT_LIST_DIR}/addon.cc
  ${CMAKE_CURRENT_LIST_DIR}/worker_channel.cc)
if(WIN32)
  list(APPEND ISAPI_WORKER_ADDON_SRC ${CMAKE_CURRENT_LIST_DIR}/loop_reader_win.cc)
else()
  list(APPEND ISAPI_WORKER_ADDON_SRC ${CMAKE_CURRENT_LIST_DIR}/loop_reader_posix.cc)
endif()
