#!/usr/bin/env bash
# Builds the ELF seeds of the `resolve` fuzz corpus, and the ELF the `catalog` target embeds:
#   bash elf.sh OUTDIR  ->  OUTDIR/tiny_tt_metal.so (its copy is ../fixtures/tiny_tt_metal.so),
#                           OUTDIR/tiny_tt_metal-stripped.so, OUTDIR/libtt_metal-standin-stripped.so
# The committed corpus holds what these produced, minimised with `cargo fuzz cmin`; rerun only to
# refresh the seeds.
set -euo pipefail

if [[ $# -ne 1 || -z "$1" ]]; then
    echo "usage: bash $0 OUTDIR" >&2
    exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$1"
out="$(cd "$1" && pwd)"

# -O0 -fno-ipa-icf: every function stays a distinct symbol; -nostdlib, no unwind tables, one
# page-aligned code segment: a few KiB.
gcc -O0 -fno-ipa-icf -fno-asynchronous-unwind-tables -fPIC -shared -nostdlib \
    -Wl,-soname,libtt_metal.so -Wl,-z,noseparate-code -Wl,-z,norelro \
    -Wl,--build-id -o "$out/tiny_tt_metal.so" "$here/tiny_tt_metal.c"
strip --strip-all -o "$out/tiny_tt_metal-stripped.so" "$out/tiny_tt_metal.so"

# The project's stand-in (a C++ library with the real symbols), stripped to .dynsym: the
# unstripped build carries megabytes of debug info the resolver never reads.
bash "$here/../../tests/standin/build.sh" "$out/standin"
strip --strip-all -o "$out/libtt_metal-standin-stripped.so" "$out/standin/libtt_metal.so"
rm -rf "$out/standin"
