#!/usr/bin/env bash
# The install tests (tests/install/CMakeLists.txt registers one CTest test per step):
#
#   setup          cmake --install the build into WORK/staging, then move it to WORK/moved/sdk,
#                  so every later step proves the SDK does not depend on where it was installed
#   cmake-package  configure + build the samples (as installed in share/h20/samples, else the
#                  checkout's samples/) as a stand-alone project against the moved SDK
#                  (find_package(H20 CONFIG), CMAKE_PREFIX_PATH), run the vector-add sample
#   pkg-config     compile + link a C11 program with `pkg-config --cflags --libs h20`, run it
#   library        libh20rt.so: SONAME set and present; it and every other installed libh20*.so
#                  export only h20* symbols; no RUNPATH or package file names the build tree or
#                  the staging prefix
#   binaries       every tool the build made (h20-*) is installed; run the installed h20-smi, and
#                  every other tool's --help, from the moved prefix (RPATH $ORIGIN/../lib), each
#                  loading the SDK's libraries from there; h20d (--version) and its systemd
#                  user unit are installed
#
# Options (all passed by CMake): --build-dir --source-dir --work-dir --config --generator
# --make-program --c-compiler --cxx-compiler --launcher --sanitize. In a sanitizer build the
# stand-alone builds use the same -fsanitize flags (the runtime library needs the sanitizer
# runtime loaded first). Exit 77 means skipped.
set -euo pipefail

step=${1:?usage: install_test.sh STEP --build-dir=... (see the header)}
shift
build_dir="" source_dir="" work_dir="" config="" generator="" make_program=""
c_compiler=cc cxx_compiler=c++ launcher="" sanitize=""
for arg in "$@"; do
  case $arg in
    --build-dir=*) build_dir=${arg#*=} ;;
    --source-dir=*) source_dir=${arg#*=} ;;
    --work-dir=*) work_dir=${arg#*=} ;;
    --config=*) config=${arg#*=} ;;
    --generator=*) generator=${arg#*=} ;;
    --make-program=*) make_program=${arg#*=} ;;
    --c-compiler=*) c_compiler=${arg#*=} ;;
    --cxx-compiler=*) cxx_compiler=${arg#*=} ;;
    --launcher=*) launcher=${arg#*=} ;;
    --sanitize=*) sanitize=${arg#*=} ;;
    *) echo "install_test.sh: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done
[[ -n $build_dir && -n $source_dir && -n $work_dir ]] || {
  echo "install_test.sh: --build-dir, --source-dir and --work-dir are required" >&2; exit 2; }

staging=$work_dir/staging
sdk=$work_dir/moved/sdk
jobs=${JOBS:-2}
((jobs > 2)) && jobs=2

fail() { echo "FAIL: $*" >&2; exit 1; }
run() { echo "+ $*"; "$@"; }

san_flags=""
[[ -n $sanitize ]] && san_flags="-fsanitize=$sanitize -fno-omit-frame-pointer"

# libdir of the moved SDK: lib, lib64 or lib/<multiarch>, whichever holds libh20rt.
sdk_libdir() {
  local so
  so=$(find "$sdk" -name 'libh20rt.so' \( -type f -o -type l \) -print -quit 2>/dev/null || true)
  [[ -n $so ]] || fail "no libh20rt.so under $sdk (did the setup step run?)"
  dirname "$so"
}

need_setup() { [[ -d $sdk ]] || fail "$sdk does not exist: run the fixture step install.InstallIntoPrefixAndRelocate first"; }

step_setup() {
  rm -rf "$work_dir"
  mkdir -p "$work_dir/moved"
  local cfg=()
  [[ -n $config ]] && cfg=(--config "$config")
  run cmake --install "$build_dir" --prefix "$staging" "${cfg[@]}"
  run mv "$staging" "$sdk"
  [[ ! -e $staging ]] || fail "$staging still exists after the move"
  echo "installed tree (moved to $sdk):"
  (cd "$sdk" && find . \( -type f -o -type l \) | sort | sed 's/^/  /')
  [[ -f $sdk/include/h20/h20_runtime.h ]] || fail "include/h20/h20_runtime.h is not installed"
  local libdir; libdir=$(sdk_libdir)
  [[ -f $libdir/cmake/H20/H20Config.cmake ]] || fail "no H20Config.cmake in $libdir/cmake/H20"
  [[ -f $libdir/pkgconfig/h20.pc ]] || fail "no h20.pc in $libdir/pkgconfig"
}

step_cmake_package() {
  need_setup
  # The samples as the SDK ships them (share/h20/samples), else the checkout's samples/.
  local src
  src=$(find "$sdk" -path '*/h20/samples/CMakeLists.txt' -print -quit)
  src=${src%/CMakeLists.txt}
  [[ -n $src ]] || src=$source_dir/samples
  [[ -f $src/CMakeLists.txt ]] || { echo "SKIP: samples/CMakeLists.txt does not exist yet"; exit 77; }
  echo "samples from $src"
  local bdir=$work_dir/samples-build
  rm -rf "$bdir"
  local args=(-S "$src" -B "$bdir" "-DCMAKE_PREFIX_PATH=$sdk"
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_BUILD_TYPE=Release
    "-DCMAKE_C_COMPILER=$c_compiler" "-DCMAKE_CXX_COMPILER=$cxx_compiler")
  [[ -n $generator ]] && args+=(-G "$generator")
  [[ -n $make_program ]] && args+=("-DCMAKE_MAKE_PROGRAM=$make_program")
  [[ -n $launcher ]] && args+=("-DCMAKE_C_COMPILER_LAUNCHER=$launcher" "-DCMAKE_CXX_COMPILER_LAUNCHER=$launcher")
  [[ -n $san_flags ]] && args+=("-DCMAKE_C_FLAGS=$san_flags" "-DCMAKE_CXX_FLAGS=$san_flags"
    "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=$sanitize")
  run cmake "${args[@]}"

  # The package must have come from the moved SDK, not from the build tree or the system.
  local h20_dir
  h20_dir=$(sed -n 's/^H20_DIR:PATH=//p' "$bdir/CMakeCache.txt")
  [[ $h20_dir == "$sdk"/* ]] || fail "find_package(H20) used '$h20_dir', not the installed SDK under $sdk"

  run cmake --build "$bdir" -j "$jobs"

  local sample
  sample=$(find "$bdir" -type f -perm -u+x -name '*vector_add*' -not -path '*/CMakeFiles/*' -print -quit)
  [[ -n $sample ]] || fail "no vector_add executable was built in $bdir"
  echo "+ ldd $sample"
  local deps; deps=$(ldd "$sample")
  echo "$deps"
  grep -q "libh20rt\.so.* => $sdk/" <<<"$deps" || fail "$sample does not load libh20rt from $sdk"
  run timeout 120 "$sample"
}

step_pkg_config() {
  need_setup
  command -v pkg-config >/dev/null || fail "pkg-config is not installed (scripts/install-deps.sh)"
  local libdir; libdir=$(sdk_libdir)
  export PKG_CONFIG_PATH=$libdir/pkgconfig
  local version cflags libs
  version=$(pkg-config --modversion h20) || fail "pkg-config does not find h20 in $PKG_CONFIG_PATH"
  cflags=$(pkg-config --cflags h20)
  libs=$(pkg-config --libs h20)
  echo "h20 $version: cflags '$cflags' libs '$libs'"
  # Relocated: the flags must point into the moved tree (h20.pc is relative to ${pcfiledir}).
  [[ $cflags == *"$sdk"* || $cflags == "" ]] || fail "pkg-config --cflags does not point into $sdk: $cflags"
  [[ $libs == *"-L$libdir"* || $libs == *"-L$sdk"* ]] || echo "note: --libs has no -L into $sdk: $libs"

  local dir=$work_dir/pkg-config
  rm -rf "$dir"; mkdir -p "$dir"
  cat >"$dir/use_h20.c" <<'C'
/* Built by the install test against the installed SDK through pkg-config only. */
#include <h20/h20_runtime.h>
#include <stdio.h>

int main(void) {
  int runtime = 0, count = 0;
  if (h20RuntimeGetVersion(&runtime) != h20Success) return 1;
  h20Error_t err = h20GetDeviceCount(&count);
  printf("runtime %d, %d device(s): %s\n", runtime, count, h20GetErrorName(err));
  return (err == h20Success && count > 0) ? 0 : 1;
}
C
  # shellcheck disable=SC2086  # the flags are a word list by design
  run "$c_compiler" -std=c11 -Wall -Werror $san_flags "$dir/use_h20.c" -o "$dir/use_h20" $cflags $libs
  LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} run timeout 60 "$dir/use_h20"
}

step_library() {
  need_setup
  local libdir so real soname
  libdir=$(sdk_libdir)
  so=$libdir/libh20rt.so
  real=$(readlink -f "$so")
  soname=$(readelf -d "$real" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
  [[ -n $soname ]] || fail "$real has no SONAME"
  echo "SONAME: $soname"
  [[ $soname == libh20rt.so.* ]] || fail "SONAME '$soname' is not libh20rt.so.<major>"
  [[ -e $libdir/$soname ]] || fail "$libdir/$soname (the SONAME) is not installed"

  # Exported (defined, dynamic) symbols of every installed SDK library (libh20rt, libh20kernels,
  # ...): only the C API, h20*. Version-node symbols (type A) and the linker's own markers are not
  # API; sanitizer builds add their runtime's hooks.
  local lib exported bad
  for lib in "$libdir"/libh20*.so; do
    real=$(readlink -f "$lib")
    exported=$(nm -D --defined-only "$real" | awk '$2 != "A" { print $3 }' | sort -u)
    bad=$(grep -Ev '^h20' <<<"$exported" | grep -Ev '^(_init|_fini|_edata|_end|__bss_start)$' || true)
    if [[ -n $sanitize ]]; then
      bad=$(grep -Ev '^_*(asan|odr_asan|ubsan|tsan|sanitizer|lsan)' <<<"$bad" || true)
    fi
    echo "$(basename "$real"): $(grep -c . <<<"$exported") exported symbols"
    if [[ -n $bad ]]; then
      echo "symbols exported by $real that are not h20*:"
      head -n 50 <<<"$bad" | sed 's/^/  /'
      fail "$(grep -c . <<<"$bad") non-API symbol(s) exported by $(basename "$real") (visibility/version script)"
    fi
  done

  # Nothing installed may name the build tree or the staging prefix (relocatability).
  local f rp
  while IFS= read -r f; do
    rp=$(readelf -d "$f" 2>/dev/null | sed -n 's/.*(R\(UN\)\{0,1\}PATH).*\[\(.*\)\]/\2/p')
    [[ -z $rp ]] && continue
    echo "RUNPATH ${f#"$sdk"/}: $rp"
    [[ $rp != *"$build_dir"* && $rp != *"$staging"* ]] || fail "$f has RUNPATH '$rp' into the build/staging tree"
  done < <(find "$sdk" -type f \( -perm -u+x -o -name '*.so*' \) -print)
  if grep -rlF -e "$staging" -e "$build_dir" "$sdk" --include='*.cmake' --include='*.pc' >/dev/null; then
    grep -rnF -e "$staging" -e "$build_dir" "$sdk" --include='*.cmake' --include='*.pc' >&2
    fail "an installed package file names the staging prefix or the build tree"
  fi
}

# The SDK libraries `bin` loads must all resolve into the moved SDK.
check_loads_sdk_libraries() {
  local bin=$1 deps
  deps=$(ldd "$bin")
  grep -q "libh20rt\.so.* => $sdk/" <<<"$deps" || { echo "$deps"; fail "$bin does not load libh20rt from $sdk"; }
  if grep "libh20" <<<"$deps" | grep -qv " => $sdk/"; then
    echo "$deps"; fail "$bin loads an SDK library from outside $sdk"
  fi
}

step_binaries() {
  need_setup
  # Every h20-* executable the build made must be installed (h20-ccl-bench once was not).
  local built=() missing=() name
  while IFS= read -r name; do built+=("$name"); done < <(
    find "$build_dir" -path "$work_dir" -prune -o -type f -perm -u+x -name 'h20-*' -printf '%f\n' |
      sort -u)
  for name in "${built[@]}"; do
    [[ -x $sdk/bin/$name ]] || missing+=("$name")
  done
  ((${#missing[@]} == 0)) || fail "built but not installed in bin/: ${missing[*]}"
  local smi=$sdk/bin/h20-smi
  if [[ ! -x $smi ]]; then
    echo "SKIP: $smi is not installed"
    exit 77
  fi
  # No LD_LIBRARY_PATH: the installed RUNPATH alone must find libh20rt in the moved tree.
  run env -u LD_LIBRARY_PATH timeout 60 "$smi"
  check_loads_sdk_libraries "$smi"
  for name in "${built[@]}"; do
    [[ $name == h20-smi ]] && continue
    run env -u LD_LIBRARY_PATH timeout 60 "$sdk/bin/$name" --help
    check_loads_sdk_libraries "$sdk/bin/$name"
  done
  # The device daemon and its systemd user unit.
  [[ -x $sdk/bin/h20d ]] || fail "h20d is not installed in bin/"
  run env -u LD_LIBRARY_PATH timeout 60 "$sdk/bin/h20d" --version
  [[ -f $sdk/share/h20/systemd/h20d.service ]] || fail "the systemd unit share/h20/systemd/h20d.service is not installed"
  grep -q '^ExecStart=.*/h20d ' "$sdk/share/h20/systemd/h20d.service" || fail "h20d.service has no ExecStart running h20d"
}

case $step in
  setup) step_setup ;;
  cmake-package) step_cmake_package ;;
  pkg-config) step_pkg_config ;;
  library) step_library ;;
  binaries) step_binaries ;;
  *) echo "install_test.sh: unknown step '$step'" >&2; exit 2 ;;
esac
echo "PASS: $step"
