#!/usr/bin/env bash
# tests/ttnn/setup.sh CACHE_DIR -- prepare the REAL tt-metal runtime (PyPI wheel `ttnn`, with its
# real libtt_metal.so) to run on a CPU-only machine against tt-metal's built-in mock devices.
#
# Idempotent: every step checks first and does nothing when its result is already there, so a
# second run takes about a second. Everything lands under CACHE_DIR:
#
#   CACHE_DIR/wheels/ttnn-<ver>-cp310-*.whl   the wheel, downloaded once from the Python registry
#   CACHE_DIR/venv/                           a CPython 3.10 venv with the wheel and its deps
#   CACHE_DIR/root/                           TT_METAL_RUNTIME_ROOT: symlinks into the installed
#                                             package plus a stub sfpi compiler (see below)
#   CACHE_DIR/mock/wormhole_{N150,N300,T3K}.yaml   mock cluster descriptors (1, 2 and 8 chips)
#   CACHE_DIR/ttnn.env                        KEY=VALUE lines for the workload's environment
#
# On success the last lines on stdout are, for the test harness to parse:
#   TTNN_PYTHON=<venv python>  TTNN_LIB=<libtt_metal.so>  TTNN_ENV_FILE=<file>  TTNN_MOCK_DIR=<dir>
# On failure it exits non-zero after one line "setup.sh: FAILED: <reason>" on stderr.
#
# Knobs: TTNN_VERSION (default 0.81.1), PY310=<a CPython 3.10 interpreter>.
# Needs: the Python package registry (first run), root for apt-get (binutils-riscv64-unknown-elf).
#
# Why a stub compiler is enough: tt-metal refuses to start without an sfpi toolchain
# (JitBuildEnv::init checks <root>/runtime/sfpi/compiler/bin/riscv-tt-elf-g++) and hashes the
# first line of its `--version` output into the firmware build key. If the stub prints exactly
# the version line of the sfpi that built the wheel's tt_metal/pre-compiled/<key>/ firmware, the
# key matches and tt-metal uses the pre-compiled firmware: nothing is compiled. Op kernels (e.g.
# for ttnn.add) still go through the JIT; the stub writes empty objects and links a tiny dummy
# RISC-V kernel with Debian's binutils against tt-metal's own linker script, which tt-metal's
# ELF loader accepts. Nothing runs on a mock device anyway (reads return zeros).
set -euo pipefail

die() { echo "setup.sh: FAILED: $*" >&2; exit 1; }
say() { echo "[ttnn-setup] $*"; }

[ $# -eq 1 ] || die "usage: setup.sh CACHE_DIR"
mkdir -p "$1" || die "cannot create $1"
CACHE=$(cd "$1" && pwd)
TTNN_VERSION=${TTNN_VERSION:-0.81.1}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV=$CACHE/venv
ROOT=$CACHE/root
MOCK=$CACHE/mock

# ------------------------------------------------------------------ 1. a CPython 3.10
# The wheel is cp310-only. Look where interpreters usually live; pyenv's is the common case here.
is_py310() { "$1" -c 'import sys, venv; assert sys.version_info[:2] == (3, 10) and sys.implementation.name == "cpython"' >/dev/null 2>&1; }
find_py310() {
  local pyenv_root c
  pyenv_root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  for c in ${PY310:-} "$pyenv_root"/versions/3.10*/bin/python3.10 \
           "$HOME"/.local/share/uv/python/cpython-3.10*/bin/python3.10 \
           /usr/local/bin/python3.10 /usr/bin/python3.10 "$(command -v python3.10 || true)"; do
    [ -n "$c" ] && [ -x "$c" ] && is_py310 "$c" && { echo "$c"; return 0; }
  done
  return 1
}

venv_ok() {   # the venv exists and has exactly the wanted ttnn (checked without importing ttnn)
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "$TTNN_VERSION" <<'EOF' >/dev/null 2>&1
import importlib.metadata, sys
assert importlib.metadata.version("ttnn") == sys.argv[1]
EOF
}

if ! venv_ok; then
  PY=$(find_py310 || true)
  if [ -z "$PY" ] && command -v pyenv >/dev/null; then
    # Debian 12 ships no python3.10 and pyenv builds from python.org sources; try it anyway
    # (it fails within seconds when that host is unreachable).
    say "no CPython 3.10 found; trying 'pyenv install -s 3.10'"
    pyenv install -s 3.10 >"$CACHE/pyenv-install.log" 2>&1 || true
    PY=$(find_py310 || true)
  fi
  [ -n "$PY" ] || die "no CPython 3.10 (the ttnn wheel is cp310); install one (e.g. pyenv install 3.10) or set PY310="
  say "using CPython 3.10: $PY"

  # ---------------------------------------------------------------- 2. the ttnn wheel (cached)
  mkdir -p "$CACHE/wheels"
  WHEEL=$(compgen -G "$CACHE/wheels/ttnn-$TTNN_VERSION-cp310-*.whl" | head -1 || true)
  if [ -z "$WHEEL" ]; then
    say "downloading ttnn==$TTNN_VERSION (cp310, manylinux x86_64; ~100 MB) into $CACHE/wheels"
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.10 \
        --platform manylinux_2_34_x86_64 -d "$CACHE/wheels" "ttnn==$TTNN_VERSION" \
      || die "pip could not download ttnn==$TTNN_VERSION"
    WHEEL=$(compgen -G "$CACHE/wheels/ttnn-$TTNN_VERSION-cp310-*.whl" | head -1 || true)
    [ -n "$WHEEL" ] || die "no ttnn-$TTNN_VERSION-cp310 wheel after download"
  fi

  # ---------------------------------------------------------------- 3. the venv
  say "creating venv $VENV and installing $(basename "$WHEEL") (dependencies from PyPI)"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV" || die "python3.10 -m venv failed"
  "$VENV/bin/python" -m pip install -q "$WHEEL" || die "pip install of the ttnn wheel failed"
  venv_ok || die "ttnn $TTNN_VERSION not importable from $VENV after install"
else
  say "venv with ttnn $TTNN_VERSION already present: $VENV"
fi

# Installed package directory (site-packages/ttnn): holds tt_metal/, runtime/, build/lib/...
PKG=$("$VENV/bin/python" -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("ttnn").origin))') \
  || die "cannot locate the installed ttnn package"
LIB=$PKG/build/lib/libtt_metal.so
[ -f "$LIB" ] || die "no libtt_metal.so at $LIB"

# ------------------------------------------------------------------ 4. RISC-V binutils
# Used only by the sfpi stub to link dummy kernels for ops that JIT (ttnn.add, fabric).
if ! command -v riscv64-unknown-elf-ld >/dev/null || ! command -v riscv64-unknown-elf-as >/dev/null; then
  [ "$(id -u)" = 0 ] || die "binutils-riscv64-unknown-elf missing and not root to apt-get it"
  say "installing binutils-riscv64-unknown-elf with apt-get"
  if ! apt-get install -y -qq binutils-riscv64-unknown-elf >"$CACHE/apt.log" 2>&1; then
    say "apt-get install failed; running apt-get update first"
    { apt-get update -qq && apt-get install -y -qq binutils-riscv64-unknown-elf; } >>"$CACHE/apt.log" 2>&1 \
      || die "apt-get could not install binutils-riscv64-unknown-elf (see $CACHE/apt.log)"
  fi
fi

# ------------------------------------------------------------------ 5. runtime-root overlay
# tt-metal finds its kernels, firmware, hw headers and the sfpi toolchain below
# TT_METAL_RUNTIME_ROOT. We point it at an overlay that is the installed package (symlinks)
# except for runtime/sfpi, which is our stub.
mkdir -p "$ROOT/runtime/sfpi/compiler/bin"
for e in "$PKG"/*; do
  b=$(basename "$e")
  [ "$b" = runtime ] && continue
  ln -sfn "$e" "$ROOT/$b"
done
for e in "$PKG"/runtime/*; do               # runtime/hw (and anything else) except sfpi
  b=$(basename "$e")
  [ "$b" = sfpi ] && continue
  ln -sfn "$e" "$ROOT/runtime/$b"
done

# The sfpi version line is in the .comment section of every pre-compiled firmware ELF, e.g.
# "GCC: (tenstorrent/sfpi:7.89.0[1050]) 15.1.0"; --version must print "riscv-tt-elf-g++ (...) 15.1.0".
SFPI_VERSION_LINE=$("$VENV/bin/python" - "$PKG" <<'EOF'
import glob, re, sys
for f in sorted(glob.glob(sys.argv[1] + "/tt_metal/pre-compiled/*/*/*.elf")):
    m = re.search(rb"GCC: (\([^)]*\) [0-9.]+)", open(f, "rb").read())
    if m:
        print("riscv-tt-elf-g++ " + m.group(1).decode())
        break
EOF
) || true
[ -n "$SFPI_VERSION_LINE" ] || die "cannot recover the sfpi version from $PKG/tt_metal/pre-compiled/*"

# A minimal RISC-V kernel: one intra-text call and one absolute data reference, so that
# `ld --emit-relocs` produces the .rela.text that tt-metal's XIP relocation pass expects.
cat > "$ROOT/runtime/sfpi/dummy_kernel.S" <<'EOF'
    .option norelax
    .section .start,"ax",@progbits
    .globl _start
_start:
    call kernel_stub_fn
    lui  a0, %hi(kernel_stub_data)
    lw   a0, %lo(kernel_stub_data)(a0)
    ret
    .text
    .globl kernel_stub_fn
kernel_stub_fn:
    ret
    .data
    .globl kernel_stub_data
kernel_stub_data: .word 0
EOF
riscv64-unknown-elf-as -march=rv32i -mabi=ilp32 -o "$ROOT/runtime/sfpi/dummy_kernel.o.tmp" \
    "$ROOT/runtime/sfpi/dummy_kernel.S" || die "riscv64-unknown-elf-as cannot assemble the dummy kernel"
mv -f "$ROOT/runtime/sfpi/dummy_kernel.o.tmp" "$ROOT/runtime/sfpi/dummy_kernel.o"

STUB=$ROOT/runtime/sfpi/compiler/bin/riscv-tt-elf-g++
{
  echo '#!/bin/bash'
  echo '# Stub of Tenstorrent sfpi riscv-tt-elf-g++, for tt-metal MOCK devices only (see tests/ttnn/setup.sh).'
  echo "VERSION_LINE='$SFPI_VERSION_LINE'"
  cat <<'EOF'
# SFPI_STUB_LOG=<file> records every invocation (the test harness uses it to count JIT builds).
[ -n "${SFPI_STUB_LOG:-}" ] && echo "$(date +%s.%N) cwd=$PWD :: $*" >> "$SFPI_STUB_LOG"
if [ "${1:-}" = "--version" ]; then
  echo "$VERSION_LINE"      # hashed into the firmware key -> tt_metal/pre-compiled/<key>/ is used
  exit 0
fi
out= ; dep= ; just= ; lds= ; compile=0 ; header=0 ; prev= ; libdirs=()
for a in "$@"; do
  case "$prev" in -o) out=$a ;; -MF) dep=$a ;; esac
  case "$a" in
    -c) compile=1 ;;
    c++-header) header=1 ;;
    -Wl,--just-symbols=*) just=${a#-Wl,--just-symbols=} ;;
    -T*) lds=${a#-T} ;;
    -L*) libdirs+=("$a") ;;
  esac
  prev=$a
done
if [ $compile = 1 ] || [ $header = 1 ]; then        # compile or precompiled header:
  : > "$out"                                        # an empty object and an empty dep file
  [ -n "$dep" ] && printf '%s:\n' "$out" > "$dep"
  exit 0
fi
if [ -n "$out" ] && [ -n "$lds" ]; then             # link: dummy kernel + tt-metal's linker script
  obj=$(cd "$(dirname "$0")/../.." && pwd)/dummy_kernel.o
  args=(-m elf32lriscv --no-relax -z max-page-size=16 -z common-page-size=16 "${libdirs[@]}" -T "$lds" "$obj" -o "$out")
  [ -n "$just" ] && args+=(--emit-relocs "--just-symbols=$just")
  exec riscv64-unknown-elf-ld "${args[@]}"
fi
echo "sfpi stub: unsupported invocation: $*" >&2
exit 1
EOF
} > "$STUB.tmp"
chmod +x "$STUB.tmp"
mv -f "$STUB.tmp" "$STUB"
[ "$("$STUB" --version)" = "$SFPI_VERSION_LINE" ] || die "sfpi stub does not run"

# ------------------------------------------------------------------ 6. mock cluster descriptors
mkdir -p "$MOCK"
"$VENV/bin/python" "$HERE/mock_clusters.py" "$MOCK" || die "cannot write mock cluster descriptors"

# ------------------------------------------------------------------ 7. environment file
# Only what is the same for every run. The test adds per run: TT_METAL_MOCK_CLUSTER_DESC_PATH
# (or lets workload.py pick it from TTNN_MOCK_DIR), and per-run dirs TT_METAL_CACHE,
# TT_METAL_LOGS_PATH, TMPDIR (workload.py --run-dir sets those).
cat > "$CACHE/ttnn.env.tmp" <<EOF
TT_METAL_RUNTIME_ROOT=$ROOT
TTNN_MOCK_DIR=$MOCK
TT_METAL_SHM_TRACKING_DISABLED=1
OMPI_MCA_btl=self
EOF
mv -f "$CACHE/ttnn.env.tmp" "$CACHE/ttnn.env"

say "ready: ttnn $TTNN_VERSION, sfpi stub '$SFPI_VERSION_LINE'"
echo "TTNN_PYTHON=$VENV/bin/python"
echo "TTNN_LIB=$LIB"
echo "TTNN_ENV_FILE=$CACHE/ttnn.env"
echo "TTNN_MOCK_DIR=$MOCK"
