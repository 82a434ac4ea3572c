// Windows ISAPI types for non-Windows builds (Linux LP64 uses the Windows x64 layout).
#pragma once
#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef uint32_t DWORD;
typedef DWORD* LPDWORD;
typedef int BOOL;
typedef unsigned char BYTE;
typedef BYTE* LPBYTE;
typedef char CHAR;
typedef CHAR* LPSTR;
typedef const CHAR* LPCSTR;
typedef void VOID;
typedef void* PVOID;
typedef void* LPVOID;
typedef void* HANDLE;
typedef uint16_t WORD;
typedef uint16_t WCHAR;
typedef uintptr_t ULONG_PTR;
typedef ULONG_PTR DWORD_PTR;
typedef void* HCONN;

#ifndef TRUE
#define TRUE 1
#endif
#ifndef FALSE
#define FALSE 0
#endif
#define WINAPI
#define MAKELONG(lo, hi) ((DWORD)(((WORD)(lo)) | (((DWORD)((WORD)(hi))) << 16)))
#define LOWORD(l) ((WORD)((DWORD)(l)&0xffff))
#define HIWORD(l) ((WORD)(((DWORD)(l) >> 16) & 0xffff))
#define MAX_PATH 260

// A portable host keeps a per-thread "last error" the way Windows does; see host/last_error.
void SetLastError(DWORD err);
DWORD GetLastError(void);

#define HSE_VERSION_MAJOR 8
#define HSE_VERSION_MINOR 0
#define HSE_LOG_BUFFER_LEN 80
#define HSE_MAX_EXT_DLL_NAME_LEN 256

typedef struct _HSE_VERSION_INFO {
  DWORD dwExtensionVersion;
  CHAR lpszExtensionDesc[HSE_MAX_EXT_DLL_NAME_LEN];
} HSE_VERSION_INFO, *LPHSE_VERSION_INFO;

typedef struct _EXTENSION_CONTROL_BLOCK EXTENSION_CONTROL_BLOCK, *LPEXTENSION_CONTROL_BLOCK;

struct _EXTENSION_CONTROL_BLOCK {
  DWORD cbSize;
  DWORD dwVersion;
  HCONN ConnID;
  DWORD dwHttpStatusCode;
  CHAR lpszLogData[HSE_LOG_BUFFER_LEN];
  LPSTR lpszMethod;
  LPSTR lpszQueryString;
  LPSTR lpszPathInfo;
  LPSTR lpszPathTranslated;
  DWORD cbTotalBytes;
  DWORD cbAvailable;
  LPBYTE lpbData;
  LPSTR lpszContentType;
  BOOL(WINAPI* GetServerVariable)(HCONN hConn, LPSTR lpszVariableName, LPVOID lpvBuffer, LPDWORD lpdwSize);
  BOOL(WINAPI* WriteClient)(HCONN ConnID, LPVOID Buffer, LPDWORD lpdwBytes, DWORD dwReserved);
  BOOL(WINAPI* ReadClient)(HCONN ConnID, LPVOID lpvBuffer, LPDWORD lpdwSize);
  BOOL(WINAPI* ServerSupportFunction)
  (HCONN hConn, DWORD dwHSERequest, LPVOID lpvBuffer, LPDWORD lpdwSize, LPDWORD lpdwDataType);
};

typedef VOID(WINAPI* PFN_HSE_IO_COMPLETION)(EXTENSION_CONTROL_BLOCK* pECB, PVOID pContext, DWORD cbIO, DWORD dwError);

typedef struct _HSE_SEND_HEADER_EX_INFO {
  LPCSTR pszStatus;
  LPCSTR pszHeader;
  DWORD cchStatus;
  DWORD cchHeader;
  BOOL fKeepConn;
} HSE_SEND_HEADER_EX_INFO, *LPHSE_SEND_HEADER_EX_INFO;

typedef struct _HSE_URL_MAPEX_INFO {
  CHAR lpszPath[MAX_PATH];
  DWORD dwFlags;
  DWORD cchMatchingPath;
  DWORD cchMatchingURL;
  DWORD dwReserved1;
  DWORD dwReserved2;
} HSE_URL_MAPEX_INFO, *LPHSE_URL_MAPEX_INFO;

typedef struct _HSE_TF_INFO {
  PFN_HSE_IO_COMPLETION pfnHseIO;
  PVOID pContext;
  HANDLE hFile;
  LPCSTR pszStatusCode;
  DWORD BytesToWrite;
  DWORD Offset;
  PVOID pHead;
  DWORD HeadLength;
  PVOID pTail;
  DWORD TailLength;
  DWORD dwFlags;
} HSE_TF_INFO, *LPHSE_TF_INFO;

typedef struct _HSE_EXEC_URL_USER_INFO {
  HANDLE hImpersonationToken;
  LPSTR pszCustomUserName;
  LPSTR pszCustomAuthType;
} HSE_EXEC_URL_USER_INFO, *LPHSE_EXEC_URL_USER_INFO;

typedef struct _HSE_EXEC_URL_ENTITY_INFO {
  DWORD cbAvailable;
  LPVOID lpbData;
} HSE_EXEC_URL_ENTITY_INFO, *LPHSE_EXEC_URL_ENTITY_INFO;

typedef struct _HSE_EXEC_URL_STATUS {
  uint16_t uHttpStatusCode;
  uint16_t uHttpSubStatus;
  DWORD dwWin32Error;
} HSE_EXEC_URL_STATUS, *LPHSE_EXEC_URL_STATUS;

typedef struct _HSE_EXEC_URL_INFO {
  LPSTR pszUrl;
  LPSTR pszMethod;
  LPSTR pszChildHeaders;
  LPHSE_EXEC_URL_USER_INFO pUserInfo;
  LPHSE_EXEC_URL_ENTITY_INFO pEntity;
  DWORD dwExecUrlFlags;
} HSE_EXEC_URL_INFO, *LPHSE_EXEC_URL_INFO;

typedef struct _HSE_CUSTOM_ERROR_INFO {
  CHAR* pszStatus;
  uint16_t uHttpSubError;
  BOOL fAsync;
} HSE_CUSTOM_ERROR_INFO, *LPHSE_CUSTOM_ERROR_INFO;

typedef struct _HSE_VECTOR_ELEMENT {
  DWORD ElementType;
  PVOID pvContext;
  uint64_t cbOffset;
  uint64_t cbSize;
} HSE_VECTOR_ELEMENT, *LPHSE_VECTOR_ELEMENT;

typedef struct _HSE_RESPONSE_VECTOR {
  DWORD dwFlags;
  LPSTR pszStatus;
  LPSTR pszHeaders;
  DWORD nElementCount;
  LPHSE_VECTOR_ELEMENT lpElementArray;
} HSE_RESPONSE_VECTOR, *LPHSE_RESPONSE_VECTOR;

// ---- filters (httpfilt.h) ----
#define SF_MAX_USERNAME (256 + 1)
#define SF_MAX_PASSWORD (256 + 1)
#define SF_MAX_AUTH_TYPE (32 + 1)
#define SF_MAX_FILTER_DESC_LEN (256 + 1)
#define HTTP_FILTER_MAJOR 6
#define HTTP_FILTER_MINOR 0
#define HTTP_FILTER_REVISION MAKELONG(HTTP_FILTER_MINOR, HTTP_FILTER_MAJOR)

// An enum in the Windows SDK; callers cast the SF_REQ_* values to it.
typedef DWORD SF_REQ_TYPE;

typedef struct _HTTP_FILTER_CONTEXT HTTP_FILTER_CONTEXT, *PHTTP_FILTER_CONTEXT;
struct _HTTP_FILTER_CONTEXT {
  DWORD cbSize;
  DWORD Revision;
  PVOID ServerContext;
  DWORD ulReserved;
  BOOL fIsSecurePort;
  PVOID pFilterContext;
  BOOL(WINAPI* GetServerVariable)(PHTTP_FILTER_CONTEXT pfc, LPSTR lpszVariableName, LPVOID lpvBuffer, LPDWORD lpdwSize);
  BOOL(WINAPI* AddResponseHeaders)(PHTTP_FILTER_CONTEXT pfc, LPSTR lpszHeaders, DWORD dwReserved);
  BOOL(WINAPI* WriteClient)(PHTTP_FILTER_CONTEXT pfc, LPVOID Buffer, LPDWORD lpdwBytes, DWORD dwReserved);
  VOID*(WINAPI* AllocMem)(PHTTP_FILTER_CONTEXT pfc, DWORD cbSize, DWORD dwReserved);
  BOOL(WINAPI* ServerSupportFunction)
  (PHTTP_FILTER_CONTEXT pfc, SF_REQ_TYPE sfReq, PVOID pData, ULONG_PTR ul1, ULONG_PTR ul2);
};

typedef struct _HTTP_FILTER_RAW_DATA {
  PVOID pvInData;
  DWORD cbInData;
  DWORD cbInBuffer;
  DWORD dwReserved;
} HTTP_FILTER_RAW_DATA, *PHTTP_FILTER_RAW_DATA;

typedef struct _HTTP_FILTER_PREPROC_HEADERS {
  BOOL(WINAPI* GetHeader)(PHTTP_FILTER_CONTEXT pfc, LPSTR lpszName, LPVOID lpvBuffer, LPDWORD lpdwSize);
  BOOL(WINAPI* SetHeader)(PHTTP_FILTER_CONTEXT pfc, LPSTR lpszName, LPSTR lpszValue);
  BOOL(WINAPI* AddHeader)(PHTTP_FILTER_CONTEXT pfc, LPSTR lpszName, LPSTR lpszValue);
  DWORD HttpStatus;
  DWORD dwReserved;
} HTTP_FILTER_PREPROC_HEADERS, *PHTTP_FILTER_PREPROC_HEADERS;
typedef HTTP_FILTER_PREPROC_HEADERS HTTP_FILTER_SEND_RESPONSE;
typedef HTTP_FILTER_PREPROC_HEADERS* PHTTP_FILTER_SEND_RESPONSE;

typedef struct _HTTP_FILTER_AUTHENT {
  CHAR* pszUser;
  DWORD cbUserBuff;
  CHAR* pszPassword;
  DWORD cbPasswordBuff;
} HTTP_FILTER_AUTHENT, *PHTTP_FILTER_AUTHENT;

typedef struct _HTTP_FILTER_URL_MAP {
  const CHAR* pszURL;
  CHAR* pszPhysicalPath;
  DWORD cbPathBuff;
} HTTP_FILTER_URL_MAP, *PHTTP_FILTER_URL_MAP;

typedef struct _HTTP_FILTER_URL_MAP_EX {
  const CHAR* pszURL;
  CHAR* pszPhysicalPath;
  DWORD cbPathBuff;
  DWORD dwFlags;
  DWORD cchMatchingPath;
  DWORD cchMatchingURL;
  const CHAR* pszScriptMapEntry;
} HTTP_FILTER_URL_MAP_EX, *PHTTP_FILTER_URL_MAP_EX;

typedef struct _HTTP_FILTER_ACCESS_DENIED {
  const CHAR* pszURL;
  const CHAR* pszPhysicalPath;
  DWORD dwReason;
} HTTP_FILTER_ACCESS_DENIED, *PHTTP_FILTER_ACCESS_DENIED;

typedef struct _HTTP_FILTER_LOG {
  const CHAR* pszClientHostName;
  const CHAR* pszClientUserName;
  const CHAR* pszServerName;
  const CHAR* pszOperation;
  const CHAR* pszTarget;
  const CHAR* pszParameters;
  DWORD dwHttpStatus;
  DWORD dwWin32Status;
  DWORD dwBytesSent;
  DWORD dwBytesRecvd;
  DWORD msTimeForProcessing;
} HTTP_FILTER_LOG, *PHTTP_FILTER_LOG;

typedef struct _HTTP_FILTER_AUTH_COMPLETE_INFO {
  BOOL(WINAPI* GetHeader)(PHTTP_FILTER_CONTEXT pfc, LPSTR lpszName, LPVOID lpvBuffer, LPDWORD lpdwSize);
  BOOL(WINAPI* SetHeader)(PHTTP_FILTER_CONTEXT pfc, LPSTR lpszName, LPSTR lpszValue);
  BOOL(WINAPI* AddHeader)(PHTTP_FILTER_CONTEXT pfc, LPSTR lpszName, LPSTR lpszValue);
  BOOL(WINAPI* GetUserToken)(PHTTP_FILTER_CONTEXT pfc, HANDLE* phToken);
  DWORD HttpStatus;
  BOOL fResetAuth;
  DWORD dwReserved;
} HTTP_FILTER_AUTH_COMPLETE_INFO, *PHTTP_FILTER_AUTH_COMPLETE_INFO;

typedef struct _HTTP_FILTER_VERSION {
  DWORD dwServerFilterVersion;
  DWORD dwFilterVersion;
  CHAR lpszFilterDesc[SF_MAX_FILTER_DESC_LEN];
  DWORD dwFlags;
} HTTP_FILTER_VERSION, *PHTTP_FILTER_VERSION;

#ifdef __cplusplus
}
#endif
