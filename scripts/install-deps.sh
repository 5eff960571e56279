#!/usr/bin/env bash
# Installs every Debian (bookworm) package that building and testing the H20 SDK needs.
#
# Fast when everything is present: it asks dpkg first and touches apt only for what is missing
# (then `apt-get update` once and `apt-get install -y --no-install-recommends`). Works as root,
# or through sudo otherwise; never asks questions (DEBIAN_FRONTEND=noninteractive).
#
#   scripts/install-deps.sh            install what is missing
#   scripts/install-deps.sh --check    only report; exit 1 if something is missing
#   scripts/install-deps.sh --list     print the package list, one per line
#
# H20_SKIP_DEPS=1 skips the whole step (for machines whose packages are managed otherwise).
set -euo pipefail

# One line per package, with what needs it. Keep in sync with the README's "Requirements".
PACKAGES=(
  build-essential     # gcc/g++ 12, make, libc headers; libgcc-12-dev brings libasan/libubsan/libtsan
  cmake               # >= 3.22 (bookworm: 3.25)
  ninja-build         # the generator the scripts use
  ccache              # compiler cache, picked up by the root CMakeLists.txt when present
  pkg-config          # the install test checks h20.pc with it
  binutils            # readelf/nm for the install test's SONAME and exported-symbol checks
  libfmt-dev          # formatting (messages, logs)
  libboost-dev        # Boost.Asio (execution engine, daemon transport); header-only in 1.74
  libnuma-dev         # NUMA placement of pinned host memory, topology
  nlohmann-json3-dev  # JSON output and topology files
  libcli11-dev        # command-line parsing for the tools
  googletest          # GoogleTest/GoogleMock sources
  libgtest-dev        # GoogleTest libraries + CMake package
  libgmock-dev        # GoogleMock
  libopenmpi-dev      # MPI transport of libh20ccl (find_package(MPI)); its tests run under mpirun
  openmpi-bin         # mpirun
  libdnnl-dev         # oneDNN: the projections of libh20kernels (h20kdaLinear)
  python3-dev         # Python headers for the h20 package's extension module (H20_BUILD_PYTHON)
  pybind11-dev        # pybind11 headers and CMake package: the h20 package's bindings
  python3-pybind11    # pybind11's Python module for Debian's python3 (python3 -m pybind11 --cmakedir)
  python3-numpy       # the h20 package's .numpy(), its tests and samples
  python3-pytest      # runs the h20 package's test suite (tests/python)
  python3-torch       # PyTorch (CPU): DLPack round trips and KDA from torch tensors in the tests and samples
)

mode=install
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  --list) printf '%s\n' "${PACKAGES[@]}"; exit 0 ;;
  -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
  *) echo "install-deps.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac

if [[ "${H20_SKIP_DEPS:-0}" == 1 ]]; then
  echo "install-deps: H20_SKIP_DEPS=1, skipping the package check"
  exit 0
fi

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "install-deps: dpkg-query not found (not a Debian-like system?); install these by hand:" >&2
  printf '  %s\n' "${PACKAGES[@]}" >&2
  [[ $mode == check ]] && exit 1
  exit 0
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [[ $status == installed ]] || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#PACKAGES[@]} packages are installed"
  exit 0
fi

echo "install-deps: missing: ${missing[*]}"
[[ $mode == check ]] && exit 1

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps: apt-get not found; install the packages above by hand" >&2
  exit 1
fi

# Root runs apt-get directly; anyone else goes through sudo (non-interactive unless on a tty,
# so CI fails at once instead of waiting for a password).
as_root=()
if ((EUID != 0)); then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install-deps: not root and sudo is not installed; run as root: $0" >&2
    exit 1
  fi
  if [[ -t 0 ]]; then as_root=(sudo); else as_root=(sudo -n); fi
  as_root+=(env DEBIAN_FRONTEND=noninteractive)
fi
export DEBIAN_FRONTEND=noninteractive

apt_opts=(-q -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300)
"${as_root[@]}" apt-get "${apt_opts[@]}" update
"${as_root[@]}" apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}"

# Verify, so that a half-failed install is reported here and not as a confusing CMake error.
still=()
for pkg in "${missing[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [[ $status == installed ]] || still+=("$pkg")
done
if ((${#still[@]})); then
  echo "install-deps: still missing after apt-get: ${still[*]}" >&2
  exit 1
fi
echo "install-deps: installed ${missing[*]}"
