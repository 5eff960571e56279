#!/usr/bin/env bash
# The README's second quick-start command (and what .ci/run calls): installs the Debian packages,
# then builds and runs the test suite with CTest in up to three lanes, each in its own build tree:
#
#   default  build/       RelWithDebInfo               the whole suite
#   asan     build-asan/  H20_SANITIZE=address,undefined  the whole suite (asserts on: -O2 -g)
#   tsan     build-tsan/  H20_SANITIZE=thread           the tests labelled `concurrency` (asserts on;
#                         tools and samples are not built: single-threaded clients, slow to compile)
#
#   scripts/test.sh [--lane default|asan|tsan|all|LIST] [--jobs N] [--no-deps] [-- CTEST_ARGS...]
#
# LIST is comma-separated (--lane default,tsan). CTEST_ARGS go to every lane's ctest (e.g.
# `-- -R Stream`). Every selected lane runs even if an earlier one failed; a summary line per lane
# (result, configure/build/test seconds, ctest's tally) closes the output, and the exit status is
# non-zero if any lane failed. A lane that selects no test fails (ctest --no-tests=error), so a
# label that nobody sets any more cannot turn a lane silently empty.
#
# Environment: JOBS (build and ctest parallelism, default: cores), H20_TEST_TIMEOUT (per-test
# seconds for the default lane, default 300; the sanitizer lanes get 3x), ASAN_OPTIONS,
# UBSAN_OPTIONS, TSAN_OPTIONS (defaults below, used only if unset), H20_SKIP_DEPS=1.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

lanes_arg=all
deps=1
ctest_extra=()
while (($#)); do
  case $1 in
    --lane) [[ $# -ge 2 ]] || h20_die "--lane needs a value"; lanes_arg=$2; shift 2 ;;
    --lane=*) lanes_arg=${1#--lane=}; shift ;;
    --jobs|-j) [[ $# -ge 2 ]] || h20_die "--jobs needs a value"; JOBS=$2; shift 2 ;;
    --no-deps) deps=0; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; ctest_extra=("$@"); break ;;
    *) echo "test.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

lanes=()
IFS=, read -r -a requested <<<"$lanes_arg"
for l in "${requested[@]}"; do
  case $l in
    all) lanes+=(default asan tsan) ;;
    default|asan|tsan) lanes+=("$l") ;;
    *) echo "test.sh: unknown lane '$l' (default, asan, tsan, all)" >&2; exit 2 ;;
  esac
done

timeout_default=${H20_TEST_TIMEOUT:-300}
timeout_san=$((timeout_default * 3))

# Sanitizer run-time options (used by the build too: gtest_discover_tests runs test binaries).
# halt_on_error + non-zero exit make the first report fail its test; stack traces for UBSan;
# stack-use-after-return catches kernels reading launch arguments from a dead caller frame.
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=0:detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1:strict_string_checks=1:print_summary=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1:print_summary=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:history_size=4:print_summary=1}
# A suppressions file is used only if one exists (none is needed today; each entry there must say
# why it is a false positive).
if [[ -s $H20_ROOT/scripts/tsan.supp && $TSAN_OPTIONS != *suppressions=* ]]; then
  TSAN_OPTIONS+=":suppressions=$H20_ROOT/scripts/tsan.supp"
fi

if ((deps)); then
  h20_log "Installing dependencies"
  "$H20_ROOT/scripts/install-deps.sh"
fi
h20_setup_ccache

# GCC's TSan runtime cannot map its shadow memory when the kernel randomises mmap with more than
# 28 bits; running the TSan lane without ASLR (setarch -R, inherited by every child) avoids it.
tsan_wrap=()
rnd_bits=$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 28)
if ((rnd_bits > 28)) && setarch "$(uname -m)" -R true 2>/dev/null; then
  tsan_wrap=(setarch "$(uname -m)" -R)
fi

summary=()
failed=0
total_start=$(h20_now)

# run_lane NAME DIR TIMEOUT CMAKE_ARGS... -- CTEST_ARGS...
run_lane() {
  local name=$1 dir=$2 timeout=$3; shift 3
  local cmake_args=() ctest_args=() wrap=()
  while (($#)) && [[ $1 != -- ]]; do cmake_args+=("$1"); shift; done
  (($#)) && shift
  ctest_args=("$@" "${ctest_extra[@]}")
  [[ $name == tsan ]] && wrap=("${tsan_wrap[@]}")

  local t0 t1 t2 t3 result=PASS tally=""
  t0=$(h20_now)
  h20_log "[$name] configure $dir"
  h20_configure "$dir" "${cmake_args[@]}" || result="FAIL (configure)"
  t1=$(h20_now)
  if [[ $result == PASS ]]; then
    h20_log "[$name] build (-j$JOBS)"
    "${wrap[@]}" cmake --build "$dir" -j "$JOBS" || result="FAIL (build)"
  fi
  t2=$(h20_now)
  if [[ $result == PASS ]]; then
    h20_log "[$name] ctest ${ctest_args[*]}"
    local log=$dir/ctest-$name.log rc=0
    "${wrap[@]}" ctest --test-dir "$dir" --output-on-failure --no-tests=error -j "$JOBS" \
      --timeout "$timeout" "${ctest_args[@]}" 2>&1 | tee "$log" || rc=$?
    tally=$(grep -E 'tests passed, [0-9]+ tests? failed out of' "$log" | tail -n 1 || true)
    ((rc == 0)) || result="FAIL (tests)"
  fi
  t3=$(h20_now)
  [[ $result == PASS ]] || failed=1
  local t_cfg=$((t1 - t0)) t_build=$((t2 - t1)) t_test=$((t3 - t2))
  summary+=("$(printf 'lane %-8s %-17s configure %4ds  build %5ds  tests %5ds  total %5ds  %s' \
    "$name" "$result" "$t_cfg" "$t_build" "$t_test" "$((t3 - t0))" "${tally:+[$tally]}")")
}

san_flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo
  "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O2 -g" "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g")
for lane in "${lanes[@]}"; do
  case $lane in
    default)
      run_lane default "$H20_ROOT/build" "$timeout_default" \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DH20_SANITIZE= -- ;;
    asan)
      run_lane asan "$H20_ROOT/build-asan" "$timeout_san" \
        "${san_flags[@]}" -DH20_SANITIZE=address,undefined -- ;;
    tsan)
      run_lane tsan "$H20_ROOT/build-tsan" "$timeout_san" \
        "${san_flags[@]}" -DH20_SANITIZE=thread -DH20_BUILD_TOOLS=OFF -DH20_BUILD_SAMPLES=OFF \
        -- -L concurrency ;;
  esac
done

h20_log "Summary ($(($(h20_now) - total_start))s in all)"
printf '%s\n' "${summary[@]}"
if ((failed)); then
  echo "test.sh: FAILED"
  exit 1
fi
echo "test.sh: all lanes passed"
