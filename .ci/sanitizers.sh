#!/usr/bin/env bash
# Issue 11: the host and the bridge under sanitizers, and the fuzz targets. Run by .ci/run after
# the normal suite; also runnable alone (needs clang and libclang-rt-14-dev for the fuzzers).
#   1. ASan + UBSan build of the Linux host and bridge (build/native/linux-x64-address);
#   2. the host conformance suites, the security suite and the end-to-end extension suite against
#      it (packed extensions get the sanitized bridge; workers run with the runtime preloaded);
#      any sanitizer report fails the run, even one a test did not notice;
#   3. each libFuzzer target for FUZZ_SECONDS (60) from its seed corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
export ISAPI_SANITIZE=address
node scripts/build-native.js
reports=$(mktemp -d /tmp/isapi-sanitizer-reports.XXXXXX)
# Workers are Node: leak checking would report V8's own allocations, so it is off for everyone.
export ASAN_OPTIONS="detect_leaks=0:log_path=$reports/asan"
export UBSAN_OPTIONS="print_stacktrace=1:log_path=$reports/ubsan"
status=0
# Only what these suites serve is packed (with the sanitized bridge).
ISAPI_TEST_PACK=hello,echo,control,security npx vitest run test/host test/security/response-splitting.test.ts test/security/paths.test.ts \
  test/e2e/extension.test.ts || status=$?
if compgen -G "$reports/*" > /dev/null; then
  echo "sanitizers: reports in $reports:"
  head -c 20000 "$reports"/*
  exit 1
fi
[ "$status" -eq 0 ] || { echo "sanitizers: the suites failed under ASan + UBSan"; exit "$status"; }
echo "sanitizers: host, security and e2e extension suites clean under ASan + UBSan"
unset ISAPI_SANITIZE ASAN_OPTIONS UBSAN_OPTIONS
test/fuzz/run.sh
