# Shared helpers for scripts/run.sh and scripts/test.sh (sourced, not run): repository paths,
# ccache settings, a configure step that copes with an existing build directory, timing.
# shellcheck shell=bash

H20_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export H20_ROOT

# Parallelism: the number of cores unless JOBS says otherwise (CI machines have 2).
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

h20_log() { printf '\n==> %s\n' "$*"; }
h20_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ccache: the root CMakeLists.txt uses it as the compiler launcher when found. BASEDIR +
# NOHASHDIR let a fresh clone in another folder (as CI makes) reuse objects compiled in this
# one; the only effect is that debug info and __FILE__ in a reused object name the first
# checkout's folder. Both can be overridden from the environment.
h20_setup_ccache() {
  if command -v ccache >/dev/null 2>&1; then
    export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$H20_ROOT}
    export CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-true}
    export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-5G}
  fi
}

h20_generator() {
  if command -v ninja >/dev/null 2>&1; then echo Ninja; else echo "Unix Makefiles"; fi
}

# h20_configure BUILD_DIR [cmake args...]: configure (or re-configure) BUILD_DIR with Ninja.
# A build directory made earlier with another generator is configured afresh, not failed on.
h20_configure() {
  local dir=$1; shift
  local gen fresh=()
  gen=$(h20_generator)
  if [[ -f $dir/CMakeCache.txt ]]; then
    local old
    old=$(sed -n 's/^CMAKE_GENERATOR:INTERNAL=//p' "$dir/CMakeCache.txt")
    if [[ $old != "$gen" ]]; then
      echo "note: $dir was configured with '$old'; configuring it afresh with '$gen'"
      fresh=(--fresh)
    fi
  fi
  cmake "${fresh[@]}" -S "$H20_ROOT" -B "$dir" -G "$gen" "$@"
}

# h20_now: seconds since the epoch (for lane timings).
h20_now() { date +%s; }
