#!/usr/bin/env bash
# Builds the native parts (Linux, and win-x64 with mingw-w64), then checks the Windows bridge
# DLL: it must import system DLLs only (it is loaded by IIS on servers without Node or a C++
# runtime) and export the ISAPI and Node-API entry points.
# Usage: scripts/check-win-bridge.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" != "--no-build" ]]; then
  node scripts/build-native.js
fi

dll=build/native/win-x64/out/isapi-bridge.dll
objdump=x86_64-w64-mingw32-objdump
if [[ ! -f "$dll" ]]; then
  echo "check-win-bridge: $dll was not built (is mingw-w64 installed? apt-get install -y mingw-w64)" >&2
  exit 1
fi

dump=$("$objdump" -p "$dll")
imports=$(grep -E '^\s*DLL Name:' <<<"$dump" | awk '{print $3}')
exports=$(awk '/\[Ordinal\/Name Pointer\] Table/{t=1;next} t&&/^[[:space:]]*\[/{sub(/^[[:space:]]*\[[^]]*\][[:space:]]*/,""); print; next} t{t=0}' <<<"$dump")

echo "imports of $dll:"
sed 's/^/  /' <<<"$imports"
echo "exports:"
sed 's/^/  /' <<<"$exports"

# System DLLs that exist on every supported Windows (Server 2012 / Windows 8 and later).
allowed='^(kernel32|advapi32|user32|ws2_32|bcrypt|ntdll|msvcrt|ucrtbase|shell32|ole32|secur32|crypt32|userenv|api-ms-win-[a-z0-9-]+)\.dll$'
fail=0
while read -r dll_name; do
  [[ -z "$dll_name" ]] && continue
  if ! grep -qiE "$allowed" <<<"$dll_name"; then
    echo "FAIL: imports $dll_name, which is not a system DLL (link it statically)" >&2
    fail=1
  fi
done <<<"$imports"

for sym in GetExtensionVersion HttpExtensionProc TerminateExtension GetFilterVersion HttpFilterProc TerminateFilter napi_register_module_v1 node_api_module_get_api_version_v1; do
  if ! grep -qx "$sym" <<<"$exports"; then
    echo "FAIL: does not export $sym" >&2
    fail=1
  fi
done

# Node-API must be delay-loaded: a plain NODE.EXE import would stop the DLL from loading in IIS.
if grep -qiE '^node\.exe$' <<<"$imports"; then
  echo "FAIL: imports NODE.EXE directly (Node-API must go through the delay-load import library)" >&2
  fail=1
fi

if [[ $fail -ne 0 ]]; then exit 1; fi
echo "check-win-bridge: OK"
