// The worker's ServerSupportFunction calls, carried by one generic message: the worker sends
// the HSE_REQ_* code with integer and string arguments; this file turns each into the real
// call on the ECB and the reply back into integers and a string.
#pragma once
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "inflight_request.h"

namespace isapi::bridge {

struct ServerSupportResult;

struct ServerSupportCall {
  uint32_t request = 0;
  // For calls the web server completes later (EXEC_URL): called once with the final result.
  std::function<void(ServerSupportResult)> reply;
  std::vector<uint32_t> ints;
  std::vector<std::string_view> strs;
};

struct ServerSupportResult {
  bool ok = false;
  uint32_t error = 0;
  std::vector<uint32_t> ints;
  std::string out;
  bool pending = false;  // answered later, from the web server's completion callback
};

// Runs the call against req's ECB. Caller holds req->mu (an asynchronous call releases and
// retakes it) and has checked !req->ended().
ServerSupportResult server_support(const InflightPtr& req, const ServerSupportCall& call,
                                   std::unique_lock<std::mutex>& lock);

}  // namespace isapi::bridge
