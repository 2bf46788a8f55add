#!/usr/bin/env bash
# tests/ttnn/run_scenarios.sh CACHE_DIR [scenario ...] -- run workload.py scenarios on the real
# tt-metal (mock devices) and print what each oracle says. A smoke test of the harness itself and
# the way to look at the numbers by hand; the tracer's integration tests drive workload.py directly.
#
#   default scenarios: open_fd open_sd tensor add_fd add_sd n300 t3k t3k_fabric kill kill_n300 many_buffers
#   env: GDB=1     also run each scenario under gdb (gdb_hits.py) and compare with compare_gdb.py
#        KEEP=DIR  keep oracles, gdb counts and logs in DIR (default: a temporary dir, removed)
#        MANY=N    iterations for many_buffers (default 100000)
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: run_scenarios.sh CACHE_DIR [scenario ...]" >&2; exit 2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=$1; shift
SETUP_OUT=$(bash "$HERE/setup.sh" "$CACHE") || { echo "setup.sh failed" >&2; exit 1; }
PY=$(sed -n 's/^TTNN_PYTHON=//p' <<<"$SETUP_OUT")
ENV_FILE=$(sed -n 's/^TTNN_ENV_FILE=//p' <<<"$SETUP_OUT")
set -a; . "$ENV_FILE"; set +a

SCEN=${*:-open_fd open_sd tensor add_fd add_sd n300 t3k t3k_fabric kill kill_n300 many_buffers}
OUT=${KEEP:-$(mktemp -d "${TMPDIR:-/tmp}/ttnn-scenarios.XXXXXX")}
mkdir -p "$OUT"
pass=0; fail=0
for s in $SCEN; do
  args=("$s"); [ "$s" = many_buffers ] && args+=("${MANY:-100000}")
  rm -rf "$OUT/$s.run"
  # (in a subshell whose stderr is dropped, so bash's "Killed" notice for `kill` stays quiet)
  ( "$PY" "$HERE/workload.py" "${args[@]}" --oracle "$OUT/$s.json" --run-dir "$OUT/$s.run" >"$OUT/$s.log" 2>&1; exit $? ) 2>/dev/null
  rc=$?
  rm -rf "$OUT/$s.run"
  want=0; case $s in kill*) want=137;; esac   # the kill scenarios end in their own SIGKILL
  if [ $rc = $want ] && [ -s "$OUT/$s.json" ]; then pass=$((pass+1)); st=ok; else fail=$((fail+1)); st="FAILED rc=$rc"; fi
  echo "=== $s: $st"
  [ -s "$OUT/$s.json" ] && "$PY" - "$OUT/$s.json" <<'PYEOF'
import json, sys
o = json.load(open(sys.argv[1]))
t = o["timing"]
print("    total %s s (import %.2f, open %.3f, work %.3f, close %s), max RSS %d MiB, checks %s" % (
    "%.2f" % t["total_s"] if "total_s" in t else "-", t["import_s"], t["open_s"], t["work_s"],
    "%.3f" % t["close_s"] if "close_s" in t else "-", o["max_rss_kib"] // 1024,
    "ok" if all(o["checks"].values()) else o["checks"]))
for mid, m in o["meshes"].items():
    print("    mesh %s shape %s chips %s" % (mid, m["shape"], m["chips"]))
    for bt, s in m["buffers"].items():
        if s["allocs"] or s["frees"]:
            print("      %-8s allocs %d (%d B, sizes %s) frees %d (%d B) outstanding %d (%d B, %d B/bank)" % (
                bt, s["allocs"], s["alloc_bytes"], s["alloc_sizes"], s["frees"], s["free_bytes"],
                s["outstanding"], s["outstanding_bytes"], s["outstanding_bytes_per_bank"]))
cbs = {c: v["circular_buffers"] for c, v in o["chips"].items() if v["circular_buffers"]["allocs"]}
if cbs:
    print("    circular buffers per chip: %s" % ", ".join("%s: %d/%d B" % (c, v["allocs"], v["bytes"]) for c, v in cbs.items()))
pe = {c: v["program_executions"] for c, v in o["chips"].items() if v["program_executions"]}
if pe:
    print("    programs enqueued per chip: %s" % pe)
if o["extra"]:
    print("    extra: %s" % o["extra"])
PYEOF
  if [ "${GDB:-0}" = 1 ]; then
    rm -rf "$OUT/$s.grun"
    "$PY" "$HERE/workload.py" "${args[@]}" --oracle "$OUT/$s.gdb-oracle.json" --run-dir "$OUT/$s.grun" \
        --under-gdb "$OUT/$s.hits.json" >"$OUT/$s.gdb.log" 2>&1
    rm -rf "$OUT/$s.grun"
    if "$PY" "$HERE/compare_gdb.py" "$OUT/$s.gdb-oracle.json" "$OUT/$s.hits.json" >"$OUT/$s.compare.txt" 2>&1; then
      echo "    gdb: $(tail -1 "$OUT/$s.compare.txt")"
    else
      echo "    gdb: DISAGREES"; sed 's/^/      /' "$OUT/$s.compare.txt"; fail=$((fail+1))
    fi
  fi
done
[ -n "${KEEP:-}" ] || rm -rf "$OUT"
echo "$pass passed, $fail failed"
[ $fail = 0 ]
