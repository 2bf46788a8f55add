"""gdb oracle for the simulator check (`cargo xtask sim`): which binaries tt-metal writes, and where.

    SIM_HITS_OUT=hits.json gdb -q -batch -x gdb_sim.py --args PYTHON open_device.py ...

Independent of the eBPF tracer: non-stopping breakpoints (a Python `stop()` returning False) on

  * tt::llrt::write_binary_to_address(MetalEnvImpl&, ll_api::memory const&, int chip,
    xy_pair const& core, unsigned address)                    -- a kernel binary to one core
  * tt::llrt::test_load_write_read_risc_binary(MetalEnvImpl&, ll_api::memory const&, int chip,
    xy_pair const& core, unsigned core_type, unsigned processor_class, unsigned processor_type)
  * tt::llrt::test_load_multicast_write_risc_binary(MetalEnvImpl&, ll_api::memory const&, int chip,
    xy_pair const& start, xy_pair const& end, unsigned core_type, ...)   -- firmware
  * Device::configure_command_queue_programs, Device::configure_fabric (counted)

Which bring-up a binary belongs to is read off the writing thread's BACKTRACE (a frame named
Device::configure_command_queue_programs -> "dispatch", Device::configure_fabric -> "fabric",
else "none"); the tracer uses entry/return probes instead. The binary's size is the byte length
of ll_api::memory's word vector (its first member: end - begin), read from rsi as a uprobe would;
xy_pair is {size_t x, y}. Signatures are tt-metal 0.80+ (a leading MetalEnvImpl&).

Output (SIM_HITS_OUT, JSON, rewritten after every hit so that a SIGKILLed inferior loses
nothing): "counts" {function: calls}, "unresolved" [functions not found], "kernels" [{chip, core,
address, bytes, context, tid}], "firmware" [{chip, core, end, core_type, bytes}], "errors".
"""

import json
import os

import gdb

WRITE = "tt::llrt::write_binary_to_address"
FW_ONE = "tt::llrt::test_load_write_read_risc_binary"
FW_MCAST = "tt::llrt::test_load_multicast_write_risc_binary"
DISPATCH = "tt::tt_metal::Device::configure_command_queue_programs"
FABRIC = "tt::tt_metal::Device::configure_fabric"
COUNTED = [WRITE, FW_ONE, FW_MCAST, DISPATCH, FABRIC,
           "tt::tt_metal::Device::Device", "tt::tt_metal::Device::close"]
# tt-metal's HalProgrammableCoreType
CORE_TYPES = {0: "tensix", 1: "active_eth", 2: "idle_eth"}

counts = dict.fromkeys(COUNTED, 0)
kernels, firmware, errors = [], [], []


def reg(name):
    return int(gdb.parse_and_eval("$" + name)) & 0xFFFFFFFFFFFFFFFF


def u64(addr):
    return int(gdb.parse_and_eval("*(unsigned long*)%d" % addr)) & 0xFFFFFFFFFFFFFFFF


def vec_bytes(addr):
    return u64(addr + 8) - u64(addr)


def xy(addr):
    return [u64(addr), u64(addr + 8)]


def context():
    f = gdb.newest_frame().older()
    while f is not None:
        name = f.name() or ""
        if name.startswith(DISPATCH + "("):
            return "dispatch"
        if name.startswith(FABRIC + "("):
            return "fabric"
        f = f.older()
    return "none"


def on_write():
    kernels.append({"chip": reg("rdx") & 0xFFFFFFFF, "core": xy(reg("rcx")),
                    "address": reg("r8") & 0xFFFFFFFF, "bytes": vec_bytes(reg("rsi")),
                    "context": context(), "tid": gdb.selected_thread().ptid[1]})


def on_fw(multicast):
    def handler():
        ct = (reg("r9") if multicast else reg("r8")) & 0xFFFFFFFF
        firmware.append({"chip": reg("rdx") & 0xFFFFFFFF, "core": xy(reg("rcx")),
                         "end": xy(reg("r8")) if multicast else None,
                         "core_type": CORE_TYPES.get(ct, "other"), "bytes": vec_bytes(reg("rsi")),
                         "context": context()})
    return handler


HANDLERS = {WRITE: on_write, FW_ONE: on_fw(False), FW_MCAST: on_fw(True)}


def dump(_event=None):
    out = {"counts": counts, "unresolved": [b.fname for b in bps if not b.locations],
           "kernels": kernels, "firmware": firmware, "errors": errors[:20]}
    path = os.environ.get("SIM_HITS_OUT")
    if path:
        with open(path + ".tmp", "w") as f:
            json.dump(out, f, indent=1, sort_keys=True)
        os.replace(path + ".tmp", path)
    else:
        print(json.dumps(out, indent=1, sort_keys=True))


class Counter(gdb.Breakpoint):
    def __init__(self, name):
        super().__init__(name, internal=True)
        self.fname = name

    def stop(self):
        counts[self.fname] += 1
        handler = HANDLERS.get(self.fname)
        if handler is not None:
            try:
                handler()
            except Exception as e:  # never let a reading error stop the inferior
                errors.append("%s: %s" % (self.fname, e))
        dump()
        return False


for cmd in ("set breakpoint pending on", "set pagination off", "set confirm off",
            "set print thread-events off", "set print inferior-events off",
            "handle SIGUSR1 SIGUSR2 SIGPIPE SIGCHLD SIGALRM SIGPROF nostop noprint pass"):
    gdb.execute(cmd)
bps = [Counter(f) for f in COUNTED]
dump()
gdb.events.exited.connect(dump)
gdb.execute("run")
