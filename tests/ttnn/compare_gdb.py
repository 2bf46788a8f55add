#!/usr/bin/env python3
"""Compare a workload oracle with gdb_hits.py's call counts: compare_gdb.py ORACLE.json HITS.json

The two come from independent sources -- ttnn.graph capture and allocator queries inside the
process (oracle) versus breakpoints on the BankManager / GraphTracker functions that the tracer
probes (gdb) -- so agreement means the oracle says what a probe on those functions must see.

Checked, per buffer type:
  * the mesh's lock-step allocator (gdb owner "mesh:K" whose chips are the oracle mesh's chips):
    BankManager::allocate_buffer calls and their `size` multiset == the oracle's mesh allocations;
    BankManager::deallocate_buffer calls == the oracle's frees;
  * every other allocator (each chip's own, the firmware-init scratch ones) allocates nothing;
  * per chip: BufferImpl::create(IDevice* chip, address, size, ...) -- the chip's view of each
    lock-step mesh buffer -- is called once per mesh allocation with the same total bytes;
  * circular buffers: GraphTracker::track_allocate_cb calls and bytes per chip == the oracle's;
  * at close (not for `kill`): BankManager::deallocate_all once per mesh bank manager.
Prints one line per check and exits non-zero if any fails.
"""

import json
import sys


def main():
    oracle = json.load(open(sys.argv[1]))
    hits = json.load(open(sys.argv[2]))
    results = []

    def check(what, ok, detail=""):
        results.append(ok)
        print("%s  %s%s" % ("ok  " if ok else "FAIL", what, ("  (" + detail + ")") if detail else ""))

    (mesh_id, mesh), = oracle["meshes"].items()
    owners = {k: v for k, v in hits["owners"].items() if v["kind"] == "mesh"}
    mesh_owner = next((k for k, v in owners.items() if sorted(v["chips"]) == sorted(mesh["chips"])), None)
    check("gdb found the mesh allocator of chips %s" % sorted(mesh["chips"]), mesh_owner is not None,
          "gdb owners: %s" % hits["owners"])
    if mesh_owner is None:
        return 1
    banks = hits["banks"]
    for btype, o in sorted(mesh["buffers"].items()):
        g = banks.get(mesh_owner, {}).get(btype)
        if g is None:
            check("%s: no BankManager in gdb and no oracle allocations" % btype, o["allocs"] == 0)
            continue
        check("%-8s allocate_buffer calls %d == oracle allocs %d" % (btype, g["allocate_buffer"], o["allocs"]),
              g["allocate_buffer"] == o["allocs"])
        check("%-8s allocate_buffer sizes == oracle sizes" % btype, g["sizes"] == o["alloc_sizes"],
              "gdb %s oracle %s" % (g["sizes"], o["alloc_sizes"]))
        check("%-8s deallocate_buffer calls %d == oracle frees %d" % (btype, g["deallocate_buffer"], o["frees"]),
              g["deallocate_buffer"] == o["frees"])
        if not oracle.get("killed"):
            check("%-8s deallocate_all at close == 1" % btype, g["deallocate_all"] == 1,
                  "got %d" % g["deallocate_all"])
    others = {(k, t): v["allocate_buffer"] for k, per in banks.items() if k != mesh_owner
              for t, v in per.items()}
    check("no other allocator allocates (chip-own, scratch)", not any(others.values()),
          ", ".join("%s/%s=%d" % (k, t, n) for (k, t), n in others.items() if n))
    n_alloc = hits["counts"].get("tt::tt_metal::L1BankingAllocator::L1BankingAllocator", 0)
    n_bank = hits["counts"].get("tt::tt_metal::BankManager::BankManager", 0)
    check("BankManager ctors %d == 4 x allocators %d" % (n_bank, n_alloc), n_bank == 4 * n_alloc)
    total_allocs = sum(o["allocs"] for o in mesh["buffers"].values())
    total_bytes = sum(o["alloc_bytes"] for o in mesh["buffers"].values())
    created = hits.get("buffers_created", {})
    for chip in sorted(mesh["chips"]):
        g = created.get("chip:%d" % chip, {"at_address": 0, "at_address_bytes": 0})
        check("chip %d per-chip views (BufferImpl::create at address) %d / %d B == mesh allocs %d / %d B"
              % (chip, g["at_address"], g["at_address_bytes"], total_allocs, total_bytes),
              (g["at_address"], g["at_address_bytes"]) == (total_allocs, total_bytes))
    for chip, c in sorted(oracle["chips"].items(), key=lambda kv: int(kv[0])):
        g = hits["cbs"].get("chip:%s" % chip, {"allocs": 0, "bytes": 0})
        o = c["circular_buffers"]
        check("chip %s circular buffers %d / %d B == oracle %d / %d B" % (chip, g["allocs"], g["bytes"], o["allocs"], o["bytes"]),
              (g["allocs"], g["bytes"]) == (o["allocs"], o["bytes"]))
    print("gdb vs oracle: %d checks ok, %d failed" % (sum(results), len(results) - sum(results)))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
