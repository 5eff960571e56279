#!/usr/bin/env bash
# tests/fuzz/soak.sh - runs the API fuzzer over random seeds for a while (the test suite runs only
# its fixed seeds). Builds the two fuzz binaries in a build directory, then runs the
# single-threaded and the multi-threaded soak tests for SECONDS each; every failing seed is
# printed with its shrunk trace and the command line that replays it.
#
#   tests/fuzz/soak.sh [SECONDS] [--build DIR] [--single|--threaded] [--ops N] [--seed-base B]
#
#   SECONDS        time for each of the two soaks (default 300)
#   --build DIR    build directory (default build/; configured if missing, e.g. build-asan/
#                  configured by scripts/test.sh gives a sanitizer soak)
#   --single       only the single-threaded soak (faults, resets, every copy kind)
#   --threaded     only the multi-threaded soak (H20_FUZZ_THREADS host threads, default 3)
#   --ops N        ops per sequence (per thread; default as the fixed seeds: 5000 / 1500)
#   --seed-base B  first seed (default: random); seeds B, B+1, ... are run
#
# Every H20_FUZZ_* variable of tests/fuzz/fuzzer.hpp is passed through (e.g. H20_FUZZ_DEVICES,
# H20_FUZZ_DISABLE, H20_FUZZ_SHRINK_SECONDS). Exit status: non-zero if any seed failed.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/common.sh
source "$root/scripts/common.sh"

seconds=300
build=$root/build
which=both
ops=
base=
while (($#)); do
  case $1 in
    --build) build=$2; shift 2 ;;
    --single) which=single; shift ;;
    --threaded) which=threaded; shift ;;
    --ops) ops=$2; shift 2 ;;
    --seed-base) base=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    [0-9]*) seconds=$1; shift ;;
    *) echo "soak.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done

h20_setup_ccache
[[ -f $build/CMakeCache.txt ]] || h20_configure "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" -j "$JOBS" --target h20_fuzz_tests h20_fuzz_mt_tests

export H20_LOG_LEVEL=${H20_LOG_LEVEL:-off}
export H20_FUZZ_SECONDS=$seconds
[[ -n $ops ]] && export H20_FUZZ_OPS=$ops
[[ -n $base ]] && export H20_FUZZ_SEED_BASE=$base
status=0
if [[ $which != threaded ]]; then
  h20_log "single-threaded soak, ${seconds}s"
  "$build/tests/fuzz/h20_fuzz_tests" --gtest_filter='FuzzSoak.*' || status=1
fi
if [[ $which != single ]]; then
  h20_log "multi-threaded soak, ${seconds}s"
  "$build/tests/fuzz/h20_fuzz_mt_tests" --gtest_filter='FuzzThreadsSoak.*' || status=1
fi
exit $status
