// The life of one request in the host: who completes it, decided once under
// RequestContext::state_mu_. Every change goes through AdvanceRequestState, which checks it
// against these arrows (anything else is a bug: logged, fatal in debug builds):
//
//   Running ──HttpExtensionProc returned a final status──────────────────────► Completed
//   Running ──returned HSE_STATUS_PENDING──► Pending ──DONE_WITH_SESSION──────► Completed
//   Running ──DONE_WITH_SESSION before HttpExtensionProc returned──► DoneEarly ──it returned──► Completed
//
// The thread that moves the request to Completed finishes it (framing checks, access log,
// connection hand-back); a DONE_WITH_SESSION in DoneEarly or Completed is a duplicate, ignored.
// The bridge's counterpart is RequestPhase (native/bridge/inflight_request.h).
#pragma once
#include <cstdint>

namespace isapi_host {

enum class RequestState : uint8_t {
  kRunning,    // HttpExtensionProc has not returned, DONE_WITH_SESSION not called
  kDoneEarly,  // DONE_WITH_SESSION came while HttpExtensionProc still runs: its return completes
  kPending,    // HttpExtensionProc returned PENDING: DONE_WITH_SESSION completes
  kCompleted,  // one thread owns completion; nothing changes any more
};

const char* RequestStateName(RequestState s);
bool RequestStateAllowed(RequestState from, RequestState to);
// Moves *state to `to`, reporting a transition the arrows above do not allow.
void AdvanceRequestState(RequestState* state, RequestState to);

}  // namespace isapi_host
