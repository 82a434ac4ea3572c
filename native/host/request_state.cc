#include "request_state.h"

#include <cassert>
#include <cstdio>

namespace isapi_host {

const char* RequestStateName(RequestState s) {
  switch (s) {
    case RequestState::kRunning: return "Running";
    case RequestState::kDoneEarly: return "DoneEarly";
    case RequestState::kPending: return "Pending";
    case RequestState::kCompleted: return "Completed";
  }
  return "?";
}

bool RequestStateAllowed(RequestState from, RequestState to) {
  using S = RequestState;
  switch (to) {
    case S::kRunning: return false;
    case S::kDoneEarly: return from == S::kRunning;
    case S::kPending: return from == S::kRunning;
    case S::kCompleted: return from != S::kCompleted;
  }
  return false;
}

void AdvanceRequestState(RequestState* state, RequestState to) {
  if (!RequestStateAllowed(*state, to)) {
    std::fprintf(stderr, "isapi-host: bug: a request went from %s to %s\n", RequestStateName(*state),
                 RequestStateName(to));
    assert(!"request state transition not allowed");
  }
  *state = to;
}

}  // namespace isapi_host
