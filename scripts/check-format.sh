#!/usr/bin/env bash
# Checks that every C++ file of native/, test/native and test/fuzz is formatted as .clang-format
# says (clang-format-14 --dry-run --Werror): prints each file that is not and exits 1.
# Usage: scripts/check-format.sh [--fix] [files...]   (--fix rewrites them instead)
# Needs clang-format-14 (apt-get install -y clang-format-14).
set -euo pipefail
cd "$(dirname "$0")/.."

fix=0
if [[ "${1:-}" == "--fix" ]]; then
  fix=1
  shift
fi
if ! command -v clang-format-14 >/dev/null; then
  echo "check-format: clang-format-14 is missing (apt-get install -y clang-format-14)" >&2
  exit 2
fi
if [[ $# -gt 0 ]]; then
  files=("$@")
else
  mapfile -t files < <(git ls-files 'native/*.cc' 'native/*.h' 'native/*.c' 'test/native/*.cc' 'test/native/*.h' \
    'test/fuzz/*.cc' 'test/fuzz/*.h')
fi
if [[ $fix == 1 ]]; then
  clang-format-14 -i "${files[@]}"
  exit 0
fi
bad=()
for f in "${files[@]}"; do
  clang-format-14 --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [[ ${#bad[@]} -gt 0 ]]; then
  printf 'check-format: not formatted as .clang-format says (scripts/check-format.sh --fix <file>):\n' >&2
  printf '  %s\n' "${bad[@]}" >&2
  exit 1
fi
echo "check-format: ${#files[@]} files formatted"
