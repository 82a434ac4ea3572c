// Loading an ISAPI filter (IsapiFilter) and the server-wide dispatch order (FilterSet).
#include <algorithm>
#include <cstring>

#include "filters.h"
#include "platform/dynlib.h"

namespace isapi_host {

namespace {

void* Symbol(void* handle, const char* name, const char* decorated) {
  void* p = DynlibSymbol(handle, name);
  if (!p && decorated) p = DynlibSymbol(handle, decorated);
  return p;
}

}  // namespace

bool IsapiFilter::Load(const std::string& path, void* handle, std::string* err) {
  path_ = path;
  handle_ = handle;
  GetVersionFn get_version = reinterpret_cast<GetVersionFn>(Symbol(handle, "GetFilterVersion", "_GetFilterVersion@4"));
  proc_ = reinterpret_cast<ProcFn>(Symbol(handle, "HttpFilterProc", "_HttpFilterProc@12"));
  terminate_ = reinterpret_cast<TerminateFn>(Symbol(handle, "TerminateFilter", "_TerminateFilter@4"));
  if (!get_version || !proc_) {
    *err = "ISAPI filter " + path + " does not export " + (get_version ? "HttpFilterProc" : "GetFilterVersion") +
           ": is it an ISAPI filter (an extension-only library is not)?";
    return false;
  }
  HTTP_FILTER_VERSION v;
  memset(&v, 0, sizeof v);
  v.dwServerFilterVersion = HTTP_FILTER_REVISION;
  if (!get_version(&v)) {
    *err = "GetFilterVersion of " + path + " returned FALSE: the filter refused to start (see its own log for why)";
    return false;
  }
  v.lpszFilterDesc[sizeof v.lpszFilterDesc - 1] = 0;
  description_ = v.lpszFilterDesc;
  flags_ = v.dwFlags;
  // Port bits: neither set means both. This host only has non-secure ports.
  bool nonsecure = (flags_ & SF_NOTIFY_NONSECURE_PORT) || !(flags_ & SF_NOTIFY_SECURE_PORT);
  notifications_ =
      nonsecure ? (flags_ & ~(SF_NOTIFY_SECURE_PORT | SF_NOTIFY_NONSECURE_PORT | SF_NOTIFY_ORDER_MASK)) : 0;
  return true;
}

int IsapiFilter::rank() const {
  if (flags_ & SF_NOTIFY_ORDER_HIGH) return 0;
  if (flags_ & SF_NOTIFY_ORDER_MEDIUM) return 1;
  return 2;
}

void IsapiFilter::Terminate() {
  if (terminated_ || !handle_) return;
  terminated_ = true;
  if (terminate_) terminate_(HSE_TERM_MUST_UNLOAD);
}

void FilterSet::Add(IsapiFilter* f) {
  ordered_.push_back(f);
  std::stable_sort(ordered_.begin(), ordered_.end(),
                   [](const IsapiFilter* a, const IsapiFilter* b) { return a->rank() < b->rank(); });
  mask_ |= f->notifications();
}

}  // namespace isapi_host
