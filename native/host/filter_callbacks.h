// The C callbacks a filter receives in HTTP_FILTER_CONTEXT and in the notification structs
// (HTTP_FILTER_PREPROC_HEADERS, _AUTH_COMPLETE_INFO, _SEND_RESPONSE). Each finds its
// FilterSession (FilterSession::FromContext) and calls the member of the same name.
// Private to the filter files: filter_session.cc fills the structs with them.
#pragma once
#include "isapi.h"

namespace isapi_host {

BOOL WINAPI FcGetServerVariable(PHTTP_FILTER_CONTEXT pfc, LPSTR name, LPVOID buffer, LPDWORD size);
BOOL WINAPI FcAddResponseHeaders(PHTTP_FILTER_CONTEXT pfc, LPSTR headers, DWORD);
BOOL WINAPI FcWriteClient(PHTTP_FILTER_CONTEXT pfc, LPVOID buffer, LPDWORD bytes, DWORD);
VOID* WINAPI FcAllocMem(PHTTP_FILTER_CONTEXT pfc, DWORD size, DWORD);
#ifdef _WIN32
typedef SF_REQ_TYPE SfReqType;  // the SDK declares the request as an enum
#else
typedef DWORD SfReqType;
#endif
BOOL WINAPI FcServerSupportFunction(PHTTP_FILTER_CONTEXT pfc, SfReqType req, PVOID data, ULONG_PTR ul1, ULONG_PTR ul2);
BOOL WINAPI HdrGetHeader(PHTTP_FILTER_CONTEXT pfc, LPSTR name, LPVOID buffer, LPDWORD size);
BOOL WINAPI HdrSetHeader(PHTTP_FILTER_CONTEXT pfc, LPSTR name, LPSTR value);
BOOL WINAPI HdrAddHeader(PHTTP_FILTER_CONTEXT pfc, LPSTR name, LPSTR value);
BOOL WINAPI AcGetUserToken(PHTTP_FILTER_CONTEXT pfc, HANDLE* token);

}  // namespace isapi_host
