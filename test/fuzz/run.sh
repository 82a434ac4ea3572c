#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for $FUZZ_SECONDS (default
# 60) from its seed corpus in corpus/<target>/. New inputs go to a scratch copy of the corpus,
# so the checked-in seeds stay small. Exits non-zero on the first crash, leak or UB report;
# prints each target's execution count.
#   test/fuzz/run.sh                 all four targets
#   test/fuzz/run.sh chunked_fuzz    one
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
out=$root/build/fuzz
mkdir -p "$out"
seconds=${FUZZ_SECONDS:-60}
CXX=${CXX_FUZZ:-clang++}
flags=(-std=c++17 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
  -I "$root/native/host" -I "$root/native/channel" -I "$root/native/include")
host_src=("$root/native/host/http_parser.cc" "$root/native/host/http_util.cc" "$root/native/host/url_path.cc"
  "$root/native/host/platform/system_posix.cc")

declare -A sources=(
  [request_parser_fuzz]="${host_src[*]}"
  [chunked_fuzz]="$root/native/host/http_parser.cc"
  [response_headers_fuzz]="${host_src[*]}"
  [frame_decoder_fuzz]="$root/native/channel/wire.cc"
)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(request_parser_fuzz chunked_fuzz response_headers_fuzz frame_decoder_fuzz)

for t in "${targets[@]}"; do
  # shellcheck disable=SC2086
  $CXX "${flags[@]}" -o "$out/$t" "$t.cc" ${sources[$t]}
done
for t in "${targets[@]}"; do
  work=$out/corpus-$t
  rm -rf "$work" && mkdir -p "$work" && cp corpus/$t/* "$work/"
  log=$out/$t.log
  if ! UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 "$out/$t" -max_total_time="$seconds" -print_final_stats=1 \
      -artifact_prefix="$out/$t-" "$work" > "$log" 2>&1; then
    tail -60 "$log"
    echo "fuzz: $t FAILED (crash input in $out/$t-*)"
    exit 1
  fi
  echo "fuzz: $t ok, $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') executions in ${seconds} s"
done
