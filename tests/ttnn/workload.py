#!/usr/bin/env python3
"""Run one scenario on the REAL tt-metal runtime (PyPI `ttnn`) with mock devices, and write an
ORACLE: what tt-metal itself says about device memory, obtained from inside the process through
tt-metal's own APIs. No tracer, probe or debugger is involved, so the oracle is independent of
the tracer under test.

    workload.py SCENARIO [N] --oracle OUT.json [--hold-file PATH [--hold-at WHEN]]
                [--run-dir DIR] [--under-gdb HITS.json]

Run it with the venv's python from setup.sh and the KEY=VALUE lines of its TTNN_ENV_FILE in the
environment. The script itself sets, before importing ttnn:
  * TT_METAL_SLOW_DISPATCH_MODE=1 for the *_sd scenarios (and removes it for the others);
  * TT_METAL_MOCK_CLUSTER_DESC_PATH=$TTNN_MOCK_DIR/wormhole_<board>.yaml unless already set;
  * TT_METAL_CACHE, TT_METAL_LOGS_PATH, TMPDIR and SFPI_STUB_LOG under the run directory, unless
    already set, and makes the run directory the working directory. Without --run-dir a private
    temporary directory is used and removed at exit (also before the `kill` scenario's SIGKILL),
    so nothing is left behind.

Scenarios (board = mock cluster descriptor):
  open_fd, open_sd   N150: open device 0, close (fast / slow dispatch)
  tensor             N150 with an L1_SMALL region: DRAM, L1 and L1_SMALL tensors, some freed
  add_fd, add_sd     N150: two tensors, ttnn.add, synchronize (fast / slow dispatch)
  n300               N300, 1x2 mesh: replicated tensors, some freed
  t3k                T3K, 2x4 mesh: tensors + ttnn.add
  t3k_fabric         as t3k, after ttnn.set_fabric_config(FABRIC_1D)
  kill               N150: allocate, write the oracle, then SIGKILL itself holding the buffers
  kill_n300          as kill, on an N300 1x2 mesh (each mesh buffer held on both chips)
  many_buffers N     N150: N x (ttnn.allocate_tensor_on_device of one 32x32 bf16 DRAM tile, then
                     ttnn.deallocate); ~9 us per round trip, 100,000 in ~1 s (see many_buffers)

--hold-file PATH: at the hold point the script creates PATH (content: its pid) and waits until
someone deletes it, so that a tracer can attach meanwhile. --hold-at picks the point:
before_close (default) = after the scenario's work, with its buffers still allocated (for `kill`, `kill_n300`:
after the oracle is written, just before the SIGKILL); before_open = after `import ttnn`, before
the device is opened. --hold-timeout SECONDS (default 300) bounds the wait (exit code 4).

Where the numbers come from (see README.md for the full story):
  * buffers: ttnn.graph capture. tt-metal's GraphTracker::track_allocate / track_deallocate are
    called from BufferImpl::create / deallocate for every buffer the allocator places; the
    capture gives, per buffer, its MeshDevice id, buffer type (0 DRAM, 1 L1, 2 SYSTEM_MEMORY,
    3 L1_SMALL, 4 TRACE), total size (= the `size` argument that BankManager::allocate_buffer
    receives), page size, per-bank footprint and address. Use params["buffer_type"], not
    params["type"]: the latter says "L1" for L1_SMALL buffers.
  * circular buffers: the same capture (circular_buffer_allocate nodes carry the physical chip
    id; the capture shows ONE circular_buffer_deallocate_all node per mesh program run, with the
    mesh id, while GraphTracker::track_deallocate_cb itself is called once per chip).
  * cross-checks at the hold/close point: ttnn._ttnn.reports.get_buffers(mesh) (the allocator's
    list of live buffers) and ttnn.get_memory_view(mesh, type) (allocator statistics per bank) must
    agree with the capture; the result is in "checks" and a disagreement exits with code 3.
  * attribution: a MeshDevice owns ONE lock-step allocator; each mesh buffer is placed once, at
    the same address on every chip of the mesh. So a mesh's allocations appear once under
    "meshes" (what BankManager sees) and replicated under every chip in "chips".
"""

import argparse
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
import time

# name -> (mock board, mesh shape or None for ttnn.open_device(0), slow dispatch, fabric config)
SCENARIOS = {
    "open_fd": ("N150", None, False, None),
    "open_sd": ("N150", None, True, None),
    "tensor": ("N150", None, False, None),
    "add_fd": ("N150", None, False, None),
    "add_sd": ("N150", None, True, None),
    "n300": ("N300", (1, 2), False, None),
    "t3k": ("T3K", (2, 4), False, None),
    "t3k_fabric": ("T3K", (2, 4), False, "FABRIC_1D"),
    "kill": ("N150", None, False, None),
    "kill_n300": ("N300", (1, 2), False, None),
    "many_buffers": ("N150", None, False, None),
    "ops": ("N150", None, False, None),
    "op_loop": ("N150", None, False, None),
}

# The scenarios that end in their own SIGKILL, holding their buffers.
KILLED = ("kill", "kill_n300")

# tt::tt_metal::BufferType numbering (C++ enum); Python's ttnn.BufferType lacks SYSTEM_MEMORY.
BUFFER_TYPES = {0: "DRAM", 1: "L1", 2: "SYSTEM_MEMORY", 3: "L1_SMALL", 4: "TRACE"}

T0 = time.monotonic_ns()


def log(*parts):
    print("[workload]", *parts, flush=True)


def now():
    """Both clocks: CLOCK_MONOTONIC is what bpf_ktime_get_ns() reports, so tests can correlate."""
    return {"monotonic_ns": time.monotonic_ns(), "unix_s": time.time()}


def max_rss_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# --------------------------------------------------------------------------- environment
def prepare_environment(args, slow, board):
    """Everything tt-metal reads from the environment must be set before `import ttnn`."""
    if slow:
        os.environ["TT_METAL_SLOW_DISPATCH_MODE"] = "1"
    else:
        os.environ.pop("TT_METAL_SLOW_DISPATCH_MODE", None)
    if "TT_METAL_MOCK_CLUSTER_DESC_PATH" not in os.environ:
        mock_dir = os.environ.get("TTNN_MOCK_DIR")
        if not mock_dir:
            sys.exit("workload.py: neither TT_METAL_MOCK_CLUSTER_DESC_PATH nor TTNN_MOCK_DIR is set "
                     "(source setup.sh's TTNN_ENV_FILE)")
        os.environ["TT_METAL_MOCK_CLUSTER_DESC_PATH"] = os.path.join(mock_dir, f"wormhole_{board}.yaml")
    if "TT_METAL_RUNTIME_ROOT" not in os.environ:
        sys.exit("workload.py: TT_METAL_RUNTIME_ROOT is not set (source setup.sh's TTNN_ENV_FILE)")

    own_dir = args.run_dir is None
    run_dir = tempfile.mkdtemp(prefix="ttnn-run-") if own_dir else os.path.abspath(args.run_dir)
    os.makedirs(os.path.join(run_dir, "tmp"), exist_ok=True)
    defaults = {
        "TT_METAL_CACHE": os.path.join(run_dir, "cache") + "/",  # JIT build cache (~/.cache/tt-metal-cache)
        "TT_METAL_LOGS_PATH": os.path.join(run_dir, "logs"),     # generated/ reports (default: CWD)
        "TMPDIR": os.path.join(run_dir, "tmp"),                   # Open MPI session dir, tempfiles
        "SFPI_STUB_LOG": os.path.join(run_dir, "sfpi_stub.log"),  # one line per stub compiler call
        "TT_METAL_SHM_TRACKING_DISABLED": "1",                    # else /dev/shm/tt_device_*_memory
        "OMPI_MCA_btl": "self",                                   # else /dev/shm/sm_segment.* stays
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    if args.shm_tracking:
        # tt-metal's own per-chip counters in /dev/shm/tt_device_*_memory: on, as tt-metal's default.
        os.environ.pop("TT_METAL_SHM_TRACKING_DISABLED", None)
    os.chdir(run_dir)
    return run_dir, own_dir


# --------------------------------------------------------------------------- oracle ledger
def empty_stats():
    return {
        "allocs": 0, "frees": 0, "alloc_bytes": 0, "free_bytes": 0,
        "alloc_sizes": {},      # size as BankManager::allocate_buffer sees it -> count
        "outstanding": 0, "outstanding_bytes": 0, "outstanding_bytes_per_bank": 0,
    }


class Ledger:
    """Folds ttnn.graph capture nodes into per-mesh buffer and per-chip circular-buffer books."""

    def __init__(self):
        self.meshes = {}        # mesh id -> {buffer type name -> stats}
        self.live = {}          # (mesh id, type, address) -> graph params of the live buffer
        self.cbs = {}           # chip id -> {"allocs", "bytes"}
        self.cb_clears = {}     # mesh id -> number of track_deallocate_cb (clear-all) calls
        self.functions = {}     # ttnn/tt-metal function name -> calls (graph function_start)
        self.program_executions = {}   # physical chip id -> programs enqueued
        self.unmatched_frees = 0
        # Device operations: graph capture names each one's span after the operation type
        # (function_start "BinaryNgDeviceOperation"); the ttnn / tt-metal functions it also
        # records are qualified ("ttnn::add", "Tensor::deallocate"). Buffers and circular
        # buffers made inside a span are that operation's (the innermost one's).
        self.op_stack = []
        self.ops = {}           # operation -> {"launches", "buffers": {type: {count, bytes}}, "cbs"}
        self.op_sequence = []   # operations launched from outside any other, in order

    def op_books(self, name):
        return self.ops.setdefault(name, {"launches": 0, "buffers": {}, "cbs": {"count": 0, "bytes": 0}})

    @staticmethod
    def is_operation(name):
        return "::" not in name

    def stats(self, mesh, btype):
        books = self.meshes.setdefault(mesh, {})
        return books.setdefault(BUFFER_TYPES.get(btype, str(btype)), empty_stats())

    def feed(self, nodes):
        for node in nodes:
            kind, p = node["node_type"], node.get("params") or {}
            if kind == "buffer_allocate":
                mesh, btype, size = int(p["device_id"]), int(p["buffer_type"]), int(p["size"])
                s = self.stats(mesh, btype)
                s["allocs"] += 1
                s["alloc_bytes"] += size
                s["alloc_sizes"][str(size)] = s["alloc_sizes"].get(str(size), 0) + 1
                p = dict(p)
                p["_op"] = self.op_stack[-1] if self.op_stack else None
                self.live[(mesh, btype, int(p["address"]))] = p
                if self.op_stack:
                    by = self.op_books(self.op_stack[-1])["buffers"]
                    t = by.setdefault(BUFFER_TYPES.get(btype, str(btype)), {"count": 0, "bytes": 0})
                    t["count"] += 1
                    t["bytes"] += size
            elif kind == "buffer_deallocate":
                mesh, btype, size = int(p["device_id"]), int(p["buffer_type"]), int(p["size"])
                s = self.stats(mesh, btype)
                s["frees"] += 1
                s["free_bytes"] += size
                if self.live.pop((mesh, btype, int(p["address"])), None) is None:
                    self.unmatched_frees += 1
            elif kind == "circular_buffer_allocate":
                cb = self.cbs.setdefault(int(p["device_id"]), {"allocs": 0, "bytes": 0})
                cb["allocs"] += 1
                cb["bytes"] += int(p["size"])
                if self.op_stack:
                    c = self.op_books(self.op_stack[-1])["cbs"]
                    c["count"] += 1
                    c["bytes"] += int(p["size"])
            elif kind == "circular_buffer_deallocate_all":
                mesh = int(p["device_id"])
                self.cb_clears[mesh] = self.cb_clears.get(mesh, 0) + 1
            elif kind == "function_start":
                name = p.get("name", "?")
                self.functions[name] = self.functions.get(name, 0) + 1
                if self.is_operation(name):
                    self.op_books(name)["launches"] += 1
                    if not self.op_stack:
                        self.op_sequence.append(name)
                    self.op_stack.append(name)
            elif kind == "function_end":
                name = p.get("name", "?")
                if self.is_operation(name) and self.op_stack and self.op_stack[-1] == name:
                    self.op_stack.pop()
            elif kind == "program_execution":
                chip = int(p.get("physical_device_id", p.get("device_id", -1)))
                self.program_executions[chip] = self.program_executions.get(chip, 0) + 1

    def close_books(self):
        """Fill the outstanding fields from the live set; returns it as a sorted list."""
        for books in self.meshes.values():
            for s in books.values():
                s["outstanding"] = s["outstanding_bytes"] = s["outstanding_bytes_per_bank"] = 0
        out = []
        for (mesh, btype, addr), p in sorted(self.live.items()):
            s = self.stats(mesh, btype)
            s["outstanding"] += 1
            s["outstanding_bytes"] += int(p["size"])
            s["outstanding_bytes_per_bank"] += int(p["max_size_per_bank"])
            out.append({"mesh_id": mesh, "type": BUFFER_TYPES.get(btype, str(btype)), "address": addr,
                        "size": int(p["size"]), "page_size": int(p["page_size"]),
                        "size_per_bank": int(p["max_size_per_bank"]), "layout": p.get("layout"),
                        "op": p.get("_op")})
        return out


class Capture:
    """ttnn.graph capture that can be drained into the ledger mid-run, keeping memory bounded."""

    def __init__(self, ledger):
        from ttnn._ttnn import graph
        self.graph, self.ledger, self.active = graph, ledger, False

    def start(self):
        self.graph.begin_graph_capture(self.graph.RunMode.NORMAL)
        self.active = True

    def drain(self, restart=True):
        if self.active:
            self.ledger.feed(self.graph.end_graph_capture())
            self.active = False
        if restart:
            self.start()


# --------------------------------------------------------------------------- tt-metal queries
def memory_view(ttnn, dev):
    """ttnn.get_memory_view: the mesh allocator's own statistics, per buffer type, per bank."""
    out = {}
    for name in ("DRAM", "L1", "L1_SMALL", "TRACE"):
        mv = ttnn.get_memory_view(dev, getattr(ttnn.BufferType, name))
        out[name] = {
            "num_banks": mv.num_banks,
            "bytes_per_bank": mv.total_bytes_per_bank,
            "allocated_bytes_per_bank": mv.total_bytes_allocated_per_bank,
            # An interleaved buffer reserves its per-bank range in EVERY bank of its type:
            "allocated_bytes_all_banks": mv.total_bytes_allocated_per_bank * mv.num_banks,
            "free_bytes_per_bank": mv.total_bytes_free_per_bank,
            "largest_free_block_per_bank": mv.largest_contiguous_bytes_free_per_bank,
        }
    return out


def reported_buffers(ttnn, dev):
    """ttnn._ttnn.reports.get_buffers: the allocator's list of live buffers."""
    out = []
    for b in ttnn._ttnn.reports.get_buffers(dev):
        out.append({"mesh_id": int(b.device_id), "type": str(b.buffer_type).split(".")[-1],
                    "address": int(b.address), "size_per_bank": int(b.max_size_per_bank)})
    return sorted(out, key=lambda b: (b["mesh_id"], b["type"], b["address"]))


def cross_check(ledger_live, reported, view):
    """tt-metal's three views of the live buffers must agree, else the oracle is not trustworthy."""
    from_graph = sorted((b["mesh_id"], b["type"], b["address"], b["size_per_bank"]) for b in ledger_live)
    from_reports = sorted((b["mesh_id"], b["type"], b["address"], b["size_per_bank"]) for b in reported)
    per_bank = {}
    for b in ledger_live:
        per_bank[b["type"]] = per_bank.get(b["type"], 0) + b["size_per_bank"]
    view_ok = all(view[t]["allocated_bytes_per_bank"] == per_bank.get(t, 0) for t in view)
    return {
        "graph_live_equals_reports_get_buffers": from_graph == from_reports,
        "graph_live_per_bank_equals_memory_view": view_ok,
    }


# --------------------------------------------------------------------------- scenarios
def tile(ttnn, dev, rows, cols, mem=None, value=None):
    kw = {"dtype": ttnn.bfloat16, "layout": ttnn.TILE_LAYOUT, "device": dev}
    if mem is not None:
        kw["memory_config"] = mem
    return (ttnn.ones if value == 1 else ttnn.zeros)((1, 1, rows, cols), **kw)


def l1_small_sharded(ttnn):
    # L1_SMALL only takes sharded buffers (interleaved ones fail: "num_cores.has_value()").
    base = ttnn.create_sharded_memory_config((32, 32), core_grid=ttnn.CoreGrid(y=1, x=1),
                                             strategy=ttnn.ShardStrategy.HEIGHT,
                                             use_height_and_width_as_shard_shape=True)
    return ttnn.MemoryConfig(base.memory_layout, ttnn.BufferType.L1_SMALL, base.shard_spec)


CALIBRATION_ITERATIONS = 1000


def many_buffers(ttnn, dev, n, capture, full_capture):
    """N allocate/free round trips, as fast as the public API allows.

    ttnn.allocate_tensor_on_device(spec, device) places one device buffer without writing data
    (4-9 us per round trip with ttnn.deallocate on this VM; ttnn.empty costs 9-14 us).
    Graph capture costs about 150 us per iteration (mostly converting nodes to Python), so by
    default only the first CALIBRATION_ITERATIONS are captured: they must show exactly one
    buffer_allocate and one buffer_deallocate of the same size per iteration, and the rest is
    booked as that many more of the same ("extrapolated"). --full-capture captures every one.
    """
    spec = ttnn.TensorSpec((1, 1, 32, 32), ttnn.bfloat16, ttnn.TILE_LAYOUT)   # DRAM interleaved
    alloc, dealloc = ttnn.allocate_tensor_on_device, ttnn.deallocate
    ledger = capture.ledger
    captured = n if full_capture else min(n, CALIBRATION_ITERATIONS)
    capture.drain()                                   # books so far; start the calibration
    t = time.perf_counter()
    for i in range(captured):
        dealloc(alloc(spec, dev))
        if full_capture and i % 1000 == 999:
            capture.drain()                           # keep the node list small
    capture.drain(restart=False)
    calib = {(m, b): (s["allocs"], s["frees"], dict(s["alloc_sizes"]))
             for m, books in ledger.meshes.items() for b, s in books.items() if s["allocs"]}
    t_fast = time.perf_counter()
    # CPU time of this thread: uprobe traps and their programs are charged to it, time taken by
    # other work on a busy machine is not (the benchmark's steadier measure).
    cpu_fast = time.thread_time()
    for i in range(n - captured):
        dealloc(alloc(spec, dev))
    fast_cpu_s = time.thread_time() - cpu_fast
    dt_s = time.perf_counter() - t
    fast_s = time.perf_counter() - t_fast
    rest = n - captured
    if rest:
        # The calibration must be exactly: one mesh, one type, `captured` allocs and frees, one size.
        (key, (allocs, frees, sizes)), = calib.items()
        (size, count), = sizes.items()
        assert allocs == frees == count == captured, calib
        books = ledger.meshes[key[0]][key[1]]
        books["allocs"] += rest
        books["frees"] += rest
        books["alloc_bytes"] += rest * int(size)
        books["free_bytes"] += rest * int(size)
        books["alloc_sizes"][size] += rest
        ledger.functions["(extrapolated round trips)"] = rest
    capture.start()
    log(f"{n} allocate+free round trips in {dt_s:.3f} s; the {rest} uncaptured ones took "
        f"{fast_s:.3f} s ({fast_s / max(rest, 1) * 1e6:.1f} us each)")
    return {"iterations": n, "captured_iterations": captured, "extrapolated_iterations": rest,
            "loop_s": dt_s, "uncaptured_loop_s": fast_s, "uncaptured_loop_cpu_s": fast_cpu_s,
            "us_per_uncaptured_iteration": fast_s / max(rest, 1) * 1e6}


def run_work(name, ttnn, dev, n, capture, keep, full_capture=False):
    """The scenario's work; objects appended to `keep` stay allocated until close (or the kill)."""
    if name in ("open_fd", "open_sd"):
        return {}
    if name == "tensor":
        keep.append(tile(ttnn, dev, 32, 32, value=1))                          # DRAM, 1 tile
        gone = tile(ttnn, dev, 64, 64)                                         # DRAM, 4 tiles
        l1 = tile(ttnn, dev, 320, 320, ttnn.L1_MEMORY_CONFIG)                  # L1, 100 tiles
        keep.append(tile(ttnn, dev, 32, 32, ttnn.L1_MEMORY_CONFIG))            # L1, 1 tile
        keep.append(tile(ttnn, dev, 32, 32, l1_small_sharded(ttnn)))           # L1_SMALL, 1 tile
        host = ttnn.from_device(keep[0])                                       # read back
        ttnn.deallocate(gone)
        ttnn.deallocate(l1)
        return {"read_back": str(host.storage_type())}
    if name in ("add_fd", "add_sd", "t3k", "t3k_fabric"):
        a = tile(ttnn, dev, 32, 32, value=1)
        b = tile(ttnn, dev, 64, 64, value=1)
        keep.append(a)
        c = ttnn.add(a, a)
        ttnn.synchronize_device(dev)
        keep.append(c)
        ttnn.deallocate(b)
        return {"add_shape": str(c.shape)}
    if name == "n300":
        keep.append(tile(ttnn, dev, 32, 32, value=1))
        gone = tile(ttnn, dev, 64, 64)
        keep.append(tile(ttnn, dev, 64, 64, ttnn.L1_MEMORY_CONFIG))
        ttnn.deallocate(gone)
        return {}
    if name in KILLED:
        keep.append(tile(ttnn, dev, 32, 32, value=1))
        keep.append(tile(ttnn, dev, 64, 64))
        keep.append(tile(ttnn, dev, 320, 320, ttnn.L1_MEMORY_CONFIG))
        return {}
    if name == "many_buffers":
        return many_buffers(ttnn, dev, n, capture, full_capture)
    if name == "ops":
        return operations(ttnn, dev, keep)
    if name == "op_loop":
        return op_loop(ttnn, dev, n, capture)
    raise AssertionError(name)


OP_LOOP_WARMUP = 50


def op_loop(ttnn, dev, n, capture):
    """N launches of one operation on a warm program cache (ttnn.add of a 1-tile tensor, its
    output freed): the launch path's cost per operation. The loop's thread CPU time is the
    figure (a traced launch's traps are charged to it; other load on the machine is not). Not
    graph-captured: the capture would cost more than the launches."""
    capture.drain(restart=False)
    a = tile(ttnn, dev, 32, 32, value=1)
    for _ in range(OP_LOOP_WARMUP):
        ttnn.deallocate(ttnn.add(a, a))
    ttnn.synchronize_device(dev)
    t0, cpu0 = time.perf_counter(), time.thread_time()
    for _ in range(n):
        ttnn.deallocate(ttnn.add(a, a))
    ttnn.synchronize_device(dev)
    cpu_s, loop_s = time.thread_time() - cpu0, time.perf_counter() - t0
    ttnn.deallocate(a)
    capture.start()
    log(f"op_loop: {n} launches in {loop_s:.3f} s, {cpu_s / max(n, 1) * 1e6:.1f} µs CPU each")
    return {"launches": n, "warmup": OP_LOOP_WARMUP, "loop_s": loop_s, "loop_cpu_s": cpu_s}


# Operations that run on mock devices, each launched twice with the same shapes: the first
# launch builds its program (program-cache miss), the second finds it (hit).
OPERATIONS = [
    ("add", lambda ttnn, a, b: ttnn.add(a, a)),
    ("matmul", lambda ttnn, a, b: ttnn.matmul(b, b)),
    ("softmax", lambda ttnn, a, b: ttnn.softmax(b, dim=-1)),
    ("typecast", lambda ttnn, a, b: ttnn.typecast(a, ttnn.float32)),
    ("transpose", lambda ttnn, a, b: ttnn.transpose(b, -2, -1)),
    ("reshape", lambda ttnn, a, b: ttnn.reshape(b, (1, 1, 32, 128))),
    ("relu", lambda ttnn, a, b: ttnn.relu(a)),
    ("multiply", lambda ttnn, a, b: ttnn.multiply(a, a)),
]


def operations(ttnn, dev, keep):
    """Each operation twice; program-cache hits and misses from the cache's own entry count
    (a launch that adds an entry built its program). The last add's output and a tensor made
    by no operation stay allocated until close."""
    a = tile(ttnn, dev, 32, 32, value=1)
    b = tile(ttnn, dev, 64, 64, value=1)
    keep.append(a)
    launches = []
    for what, op in OPERATIONS:
        for _ in range(2):
            before = dev.num_program_cache_entries()
            out = op(ttnn, a, b)
            ttnn.synchronize_device(dev)
            launches.append({"call": what, "miss": dev.num_program_cache_entries() > before})
            ttnn.deallocate(out)
    keep.append(ttnn.add(a, a))
    ttnn.synchronize_device(dev)
    launches.append({"call": "add", "miss": False})
    ttnn.deallocate(b)
    return {"launches": launches}


# --------------------------------------------------------------------------- main
def hold(path, timeout, cleanup):
    with open(path + ".tmp", "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(path + ".tmp", path)
    log(f"holding: delete {path} to continue (pid {os.getpid()})")
    deadline = time.monotonic() + timeout
    while os.path.exists(path):
        if time.monotonic() > deadline:
            log("hold timed out")
            try:
                os.unlink(path)
            except OSError:
                pass
            cleanup()
            os._exit(4)
        time.sleep(0.01)


def write_json(path, data):
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(path + ".tmp", path)


def build_oracle(name, args, ttnn, mesh_info, ledger, live, reported, view, checks, timing, extra):
    mesh_id, chips = mesh_info["mesh_id"], mesh_info["chips"]
    books = ledger.meshes.get(mesh_id, {})
    for btype in BUFFER_TYPES.values():
        books.setdefault(btype, empty_stats())
    # Lock-step: every chip of the mesh holds each mesh buffer at the same address.
    chips_out = {}
    for chip in chips:
        chips_out[str(chip)] = {
            "mesh_id": mesh_id,
            "buffers": books,
            "circular_buffers": ledger.cbs.get(chip, {"allocs": 0, "bytes": 0}),
            "program_executions": ledger.program_executions.get(chip, 0),
        }
    bank_calls = {
        "allocate_buffer": sum(s["allocs"] for b in ledger.meshes.values() for s in b.values()),
        "deallocate_buffer": sum(s["frees"] for b in ledger.meshes.values() for s in b.values()),
    }
    return {
        "scenario": name,
        "argument": args.n,
        "ttnn_version": getattr(ttnn, "__version__", None) or _dist_version(),
        "pid": os.getpid(),
        "mock_cluster_desc": os.environ.get("TT_METAL_MOCK_CLUSTER_DESC_PATH"),
        "slow_dispatch": os.environ.get("TT_METAL_SLOW_DISPATCH_MODE") == "1",
        "fabric": SCENARIOS[name][3],
        "killed": name in KILLED,
        "meshes": {str(mesh_id): {
            "shape": mesh_info["shape"],
            "chips": chips,
            "buffers": books,
            "outstanding": live,
            "circular_buffer_clears": ledger.cb_clears.get(mesh_id, 0),
            "memory_view": view,
            "reports_get_buffers": reported,
        }},
        "chips": chips_out,
        # What probes on BankManager::allocate_buffer / deallocate_buffer must count in total
        # (mesh allocators only; each chip's own allocator is not used for these buffers):
        "bank_manager_calls_expected": bank_calls,
        "graph_unmatched_frees": ledger.unmatched_frees,
        "functions": ledger.functions,
        # Per device operation: launches, and the buffers and circular buffers made inside.
        "operations": ledger.ops,
        "op_sequence": ledger.op_sequence,
        "checks": checks,
        "timing": timing,
        "max_rss_kib": max_rss_kib(),
        "extra": extra,
    }


def _dist_version():
    try:
        import importlib.metadata
        return importlib.metadata.version("ttnn")
    except Exception:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("n", nargs="?", type=int, default=None, help="iterations (many_buffers)")
    ap.add_argument("--oracle", required=True, help="where to write the oracle JSON")
    ap.add_argument("--shm-tracking", action="store_true",
                    help="leave tt-metal's shared-memory memory counters on (/dev/shm/tt_device_*_memory)")
    ap.add_argument("--hold-file")
    ap.add_argument("--hold-at", choices=("before_open", "before_close"), default="before_close")
    ap.add_argument("--hold-timeout", type=float, default=300.0)
    ap.add_argument("--full-capture", action="store_true",
                    help="many_buffers: graph-capture every iteration (slow) instead of calibrating")
    ap.add_argument("--run-dir", help="per-run directory (default: a private temporary one)")
    ap.add_argument("--under-gdb", metavar="HITS.json",
                    help="re-run this command under gdb with gdb_hits.py, writing call counts here")
    args = ap.parse_args()
    if args.scenario == "many_buffers" and args.n is None:
        ap.error("many_buffers needs N")
    args.oracle = os.path.abspath(args.oracle)
    if args.hold_file:
        args.hold_file = os.path.abspath(args.hold_file)

    if args.under_gdb:
        return rerun_under_gdb(args)

    board, shape, slow, fabric = SCENARIOS[args.scenario]
    run_dir, own_dir = prepare_environment(args, slow, board)

    def cleanup():
        """Remove the private run directory (a --run-dir given by the caller is the caller's)."""
        if own_dir:
            os.chdir("/")
            shutil.rmtree(run_dir, ignore_errors=True)

    timing = {"start": now()}
    t = time.perf_counter()
    import ttnn  # noqa: E402 -- only after the environment is final
    timing["import_s"] = time.perf_counter() - t
    log(f"{args.scenario}: ttnn imported in {timing['import_s']:.2f} s, pid {os.getpid()}")

    if args.hold_file and args.hold_at == "before_open":
        hold(args.hold_file, args.hold_timeout, cleanup)

    ledger = Ledger()
    capture = Capture(ledger)
    if not args.shm_tracking:
        capture.start()                  # before open: device bring-up allocations count too
    if fabric:
        ttnn.set_fabric_config(getattr(ttnn.FabricConfig, fabric))
    timing["open_begin"] = now()
    t = time.perf_counter()
    if shape is None:
        kw = {"l1_small_size": 16384} if args.scenario == "tensor" else {}
        dev = ttnn.open_device(device_id=0, **kw)
    else:
        dev = ttnn.open_mesh_device(ttnn.MeshShape(*shape))
    timing["open_s"] = time.perf_counter() - t
    timing["open_end"] = now()
    if args.shm_tracking:
        # Opening a device pushes tt-metal's ShmTrackingProcessor onto GraphTracker's processor
        # stack for good; a capture begun before the open would end by popping that one instead
        # (end_graph_capture() returns None). Mock mode allocates nothing at open, so begin here.
        capture.start()
    mesh_info = {"mesh_id": int(dev.id()), "chips": [int(c) for c in dev.get_device_ids()],
                 "shape": [int(x) for x in dev.shape]}
    log(f"opened mesh {mesh_info['mesh_id']} chips {mesh_info['chips']} in {timing['open_s']:.3f} s")

    keep = []
    t = time.perf_counter()
    extra = run_work(args.scenario, ttnn, dev, args.n or 0, capture, keep, args.full_capture)
    timing["work_s"] = time.perf_counter() - t

    # The books close here: whatever is live now is what the device holds at close (or the kill).
    capture.drain(restart=False)
    live = ledger.close_books()
    reported = reported_buffers(ttnn, dev)
    view = memory_view(ttnn, dev)
    checks = cross_check(live, reported, view)
    checks["graph_frees_all_matched"] = ledger.unmatched_frees == 0
    ok = all(checks.values())
    log(f"live at close: {len(live)} buffers; tt-metal views agree: {ok}")

    oracle = build_oracle(args.scenario, args, ttnn, mesh_info, ledger, live, reported, view,
                          checks, timing, extra)
    if args.scenario in KILLED:
        write_json(args.oracle, oracle)
        if args.hold_file and args.hold_at == "before_close":
            hold(args.hold_file, args.hold_timeout, cleanup)
        cleanup()
        log("SIGKILL to self with buffers allocated")
        os.kill(os.getpid(), signal.SIGKILL)

    if args.hold_file and args.hold_at == "before_close":
        hold(args.hold_file, args.hold_timeout, cleanup)

    timing["close_begin"] = now()
    t = time.perf_counter()
    (ttnn.close_device if shape is None else ttnn.close_mesh_device)(dev)
    timing["close_s"] = time.perf_counter() - t
    timing["close_end"] = now()
    timing["total_s"] = (time.monotonic_ns() - T0) / 1e9
    # CPU time of the whole process (all threads, user + kernel): uprobe hits are charged here,
    # and it is far less noisy than wall time on a shared machine.
    ru = resource.getrusage(resource.RUSAGE_SELF)
    timing["cpu_s"] = ru.ru_utime + ru.ru_stime
    oracle["max_rss_kib"] = max_rss_kib()
    write_json(args.oracle, oracle)
    log(f"closed in {timing['close_s']:.3f} s; total {timing['total_s']:.2f} s; "
        f"max RSS {oracle['max_rss_kib'] / 1024:.0f} MiB")
    cleanup()
    return 0 if ok else 3


def rerun_under_gdb(args):
    """Same command without --under-gdb, as the inferior of gdb running gdb_hits.py."""
    import subprocess
    gdb = shutil.which("gdb")
    if gdb is None:
        sys.exit("workload.py: --under-gdb needs gdb")
    here = os.path.dirname(os.path.abspath(__file__))
    argv = [args.scenario] + ([str(args.n)] if args.n is not None else []) + ["--oracle", args.oracle]
    if args.hold_file:
        argv += ["--hold-file", args.hold_file, "--hold-at", args.hold_at,
                 "--hold-timeout", str(args.hold_timeout)]
    if args.run_dir:
        argv += ["--run-dir", os.path.abspath(args.run_dir)]
    if args.full_capture:
        argv += ["--full-capture"]
    if args.shm_tracking:
        argv += ["--shm-tracking"]
    env = dict(os.environ, GDB_HITS_OUT=os.path.abspath(args.under_gdb))
    cmd = [gdb, "-q", "-batch", "-x", os.path.join(here, "gdb_hits.py"),
           "--args", sys.executable, os.path.abspath(__file__)] + argv
    return subprocess.call(cmd, env=env)


if __name__ == "__main__":
    sys.exit(main())
