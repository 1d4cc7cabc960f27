#!/usr/bin/env bash
# Builds libsnapc and installs it into a prefix:
#
#   adapters/c/install.sh --prefix DIR [--debug]
#
#   DIR/include/snapc.h            the C header (C++ too)
#   DIR/include/snapc.f90          the Fortran module's source (`use snapc`)
#   DIR/lib/libsnapc.a             the static library
#   DIR/lib/libsnapc.so.1          the shared library (soname libsnapc.so.1)
#   DIR/lib/libsnapc.so            -> libsnapc.so.1
#   DIR/lib/pkgconfig/snapc.pc     for pkg-config
#
# Then, with PKG_CONFIG_PATH=DIR/lib/pkgconfig:
#   cc app.c $(pkg-config --cflags --libs snapc)
# links the shared library (the .pc file adds an rpath to DIR/lib). A
# release build unless --debug; cargo's target directory as cargo reports it.
set -euo pipefail
trap 'echo "install.sh: failed at line $LINENO" >&2' ERR
here="$(cd "$(dirname "$0")" && pwd)"
prefix=""
profile=release
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
        --prefix=*) prefix="${1#--prefix=}"; shift ;;
        --debug) profile=debug; shift ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown argument $1 (usage: install.sh --prefix DIR [--debug])" >&2; exit 2 ;;
    esac
done
[ -n "$prefix" ] || { echo "install.sh: --prefix DIR is required" >&2; exit 2; }
mkdir -p "$prefix"
prefix="$(cd "$prefix" && pwd)"

cd "$here"
if [ "$profile" = release ]; then
    cargo build --quiet --release -p snapc-c
else
    cargo build --quiet -p snapc-c
fi
target="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
built="$target/$profile"
version="$(cargo pkgid -p snapc-c | sed 's/.*[@#]//')"
abi="$(sed -n 's/^pub const SNAPC_ABI_VERSION: u32 = \([0-9]*\);/\1/p' src/runtime/mod.rs)"

# What a program linking the static library needs besides it, as rustc says
# for an empty one (built in a scratch directory: rustc renames its output
# into place, so it must never be given a device such as /dev/null).
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
native="$(printf '' | rustc --print native-static-libs --crate-type staticlib \
    --crate-name probe -o "$scratch/libprobe.a" - 2>&1 | sed -n 's/.*native-static-libs: //p')" || true
[ -n "$native" ] || native="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"

install -d "$prefix/include" "$prefix/lib/pkgconfig"
install -m 0644 include/snapc.h include/snapc.f90 "$prefix/include/"
install -m 0644 "$built/libsnapc.a" "$prefix/lib/libsnapc.a"
install -m 0755 "$built/libsnapc.so" "$prefix/lib/libsnapc.so.$abi"
ln -sfn "libsnapc.so.$abi" "$prefix/lib/libsnapc.so"
cat >"$prefix/lib/pkgconfig/snapc.pc" <<PC
prefix=$prefix
exec_prefix=\${prefix}
libdir=\${exec_prefix}/lib
includedir=\${prefix}/include
native_libs=$native

Name: snapc
Description: checkpoint coordination for HPC applications and runtimes (Open MPI snapc full protocol)
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -Wl,-rpath,\${libdir} -lsnapc
Libs.private: $native
PC
chmod 0644 "$prefix/lib/pkgconfig/snapc.pc"
echo "installed libsnapc $version (ABI $abi, $profile) into $prefix"
