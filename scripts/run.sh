#!/usr/bin/env bash
# The README's first quick-start command: installs the Debian packages, configures and builds the
# SDK into build/ (Ninja, RelWithDebInfo), then runs the main job: `h20-smi` listing the emulated
# chips and the vector-add sample (allocate, copy, launch a kernel on a stream, verify).
#
#   scripts/run.sh
#
# Environment: H20_BUILD_DIR (default build/), H20_BUILD_TYPE (default RelWithDebInfo),
# JOBS (default: number of cores), H20_SKIP_DEPS=1 (skip the package step), and the runtime's
# own variables (H20_EMU_DEVICES, H20_VISIBLE_DEVICES, H20_LOG_LEVEL, ... see the README).
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

BUILD_DIR=${H20_BUILD_DIR:-$H20_ROOT/build}
BUILD_TYPE=${H20_BUILD_TYPE:-RelWithDebInfo}

h20_log "Installing dependencies"
"$H20_ROOT/scripts/install-deps.sh"

h20_setup_ccache
h20_log "Configuring $BUILD_DIR ($BUILD_TYPE)"
h20_configure "$BUILD_DIR" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" -DH20_SANITIZE=

# Build only what the main job runs (the test suite is scripts/test.sh's business). The targets
# are looked up by name, so the sample's target may be called 02_vector_add, sample_vector_add...
targets=()
if [[ -f $BUILD_DIR/build.ninja ]]; then
  mapfile -t phony < <(ninja -C "$BUILD_DIR" -t targets all 2>/dev/null |
    sed -n 's/^\([^/: ]*\): phony$/\1/p')
  for t in "${phony[@]}"; do
    [[ $t == h20-smi ]] && targets+=("$t")
  done
  for t in "${phony[@]}"; do
    if [[ $t == *vector_add && $t != cmake_* ]]; then targets+=("$t"); break; fi
  done
fi
((${#targets[@]} == 2)) || targets=(all)

h20_log "Building ${targets[*]} (-j$JOBS)"
cmake --build "$BUILD_DIR" -j "$JOBS" --target "${targets[@]}"

find_exe() {  # find_exe GLOB: the first executable file under the build tree with that name
  # Not under tests/: the install test stages an installed copy of the SDK there, which this run
  # did not rebuild.
  find "$BUILD_DIR" -type f -perm -u+x -name "$1" -not -path '*/CMakeFiles/*' \
    -not -path "$BUILD_DIR/tests/*" -print 2>/dev/null | sort | head -n 1
}
smi=$(find_exe h20-smi)
sample=$(find_exe '*vector_add')
[[ -n $smi ]] || h20_die "h20-smi was not built (looked under $BUILD_DIR)"
[[ -n $sample ]] || h20_die "the vector-add sample was not built (looked under $BUILD_DIR)"

h20_log "${smi#"$H20_ROOT"/}"
"$smi"

h20_log "${sample#"$H20_ROOT"/}"
"$sample"

h20_log "run.sh: done"
