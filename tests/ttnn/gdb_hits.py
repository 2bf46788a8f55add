"""gdb call counter for tt-metal: a second oracle, independent of the eBPF tracer.

    GDB_HITS_OUT=hits.json gdb -q -batch -x gdb_hits.py --args PYTHON workload.py SCENARIO ...
    (or simply: workload.py SCENARIO --oracle O.json --under-gdb hits.json)

Sets a breakpoint that never stops (a Python `stop()` returning False) on each function below and
counts its calls; on the memory functions it also reads the System V argument registers, exactly
as a uprobe would, and attributes every BankManager call to its owner:

  * Device::Device(MetalEnv*, MetalContext*, int id, ...)          rdi = Device*, ecx = chip id
  * L1BankingAllocator::L1BankingAllocator(AllocatorConfig const&)  rdi = the new allocator. Its
    owner is read off the backtrace (the tracer would use entry/return probes on the callers):
      Device::initialize_allocator  -> the chip being constructed on this thread ("chip:N")
      MeshDeviceImpl::initialize_impl -> the mesh's lock-step allocator ("mesh:K"), whose chips
                                       are the Devices constructed since the previous mesh
      RiscFirmwareInitializer::generate_device_bank_to_noc_tables -> a scratch allocator that
                                       only computes bank tables and never allocates ("scratch")
  * BankManager::BankManager(BufferType const&, ...)  both overloads (std::vector<long> banks for
    DRAM/TRACE, std::unordered_map<unsigned, long> for L1/L1_SMALL); rdi = BankManager*,
    *(int*)rsi = BufferType; it runs inside the allocator constructor on the same thread.
  * BankManager::allocate_buffer(size=rsi, page_size=rdx, ...), deallocate_buffer(addr=rsi),
    deallocate_all(), clear(): booked per (owner, buffer type) via the BankManager* in rdi.
  * GraphTracker::track_allocate_cb(CoreRangeSet const&=rsi, addr=rdx, size=rcx, bool, IDevice*=r9)
    and track_deallocate_cb(IDevice*=rsi): booked per device pointer (chip or mesh).

Output (GDB_HITS_OUT, JSON): "counts" {function: calls}, "unresolved" [functions not in the
library], "owners" {owner: {kind, chips}}, "banks" {owner: {type: {bank_managers, allocate_buffer,
sizes {size: n}, deallocate_buffer, deallocate_all, clear}}}, "cbs" {device: {allocs, bytes, clears}},
"buffers_created" {device: {allocating, at_address, at_address_bytes}} (BufferImpl::create calls).
GDB_HITS_TRACE=1 also prints one line per memory event with a short backtrace.
"""

import json
import os

import gdb

COUNTED = """
tt::tt_metal::distributed::MeshDevice::create
tt::tt_metal::distributed::MeshDevice::create_unit_mesh
tt::tt_metal::distributed::MeshDevice::create_unit_meshes
tt::tt_metal::distributed::MeshDeviceImpl::initialize_impl
tt::tt_metal::distributed::MeshDevice::close
tt::tt_metal::distributed::MeshDeviceImpl::close_impl
tt::tt_metal::Device::Device
tt::tt_metal::Device::initialize_allocator
tt::tt_metal::Device::close
tt::tt_metal::DeviceManager::initialize_fabric_and_dispatch_fw
tt::tt_metal::DeviceManager::close_devices
tt::tt_metal::Device::configure_fabric
tt::tt_metal::Device::configure_command_queue_programs
tt::llrt::write_binary_to_address
tt::tt_metal::detail::ProgramImpl::allocate_kernel_bin_buf_on_device
tt::tt_metal::distributed::MeshWorkloadImpl::load_binaries
tt::tt_metal::distributed::EnqueueMeshWorkload
tt::tt_metal::L1BankingAllocator::L1BankingAllocator
tt::tt_metal::AllocatorImpl::allocate_buffer
tt::tt_metal::AllocatorImpl::deallocate_buffer
tt::tt_metal::AllocatorImpl::deallocate_buffers
tt::tt_metal::AllocatorImpl::mirror_lockstep_allocation
tt::tt_metal::BankManager::BankManager
tt::tt_metal::BankManager::allocate_buffer
tt::tt_metal::BankManager::deallocate_buffer
tt::tt_metal::BankManager::deallocate_all
tt::tt_metal::BankManager::clear
tt::tt_metal::BankManager::mark_allocated
tt::tt_metal::MetalEnvImpl::configure_fabric
tt::tt_metal::FabricFirmwareInitializer::compile_and_configure_fabric
_ZN2tt8tt_metal10BufferImpl6createEPNS0_7IDeviceEmmNS0_10BufferTypeERKNS0_18BufferShardingArgsESt8optionalIbES8_IN4ttsl10StrongTypeIhNS0_14SubDeviceIdTagEEEE
_ZN2tt8tt_metal10BufferImpl6createEPNS0_7IDeviceEmmmNS0_10BufferTypeERKNS0_18BufferShardingArgsESt8optionalIbES8_IN4ttsl10StrongTypeIhNS0_14SubDeviceIdTagEEEE
tt::tt_metal::GraphTracker::track_allocate
tt::tt_metal::GraphTracker::track_deallocate
tt::tt_metal::GraphTracker::track_allocate_cb
tt::tt_metal::GraphTracker::track_deallocate_cb
""".split()

# BufferImpl::create overloads (static, return shared_ptr<Buffer>: sret in rdi, IDevice* in rsi):
# (IDevice*, size, page_size, BufferType, ...) allocates; (IDevice*, address, size, ...) places a
# buffer at a given address without allocating -- a mesh's per-chip views of a lock-step buffer.
CREATE_ALLOC = "_ZN2tt8tt_metal10BufferImpl6createEPNS0_7IDeviceEmmNS0_10BufferTypeERKNS0_18BufferShardingArgsESt8optionalIbES8_IN4ttsl10StrongTypeIhNS0_14SubDeviceIdTagEEEE"
CREATE_AT = "_ZN2tt8tt_metal10BufferImpl6createEPNS0_7IDeviceEmmmNS0_10BufferTypeERKNS0_18BufferShardingArgsESt8optionalIbES8_IN4ttsl10StrongTypeIhNS0_14SubDeviceIdTagEEEE"

BUFFER_TYPES = {0: "DRAM", 1: "L1", 2: "SYSTEM_MEMORY", 3: "L1_SMALL", 4: "TRACE"}
TRACE = os.environ.get("GDB_HITS_TRACE") == "1"

counts = dict.fromkeys(COUNTED, 0)
device_chip = {}        # Device* -> chip id
thread_chip = {}        # gdb thread number -> chip of the last Device::Device on that thread
thread_allocator = {}   # gdb thread number -> allocator under construction on that thread
allocator_owner = {}    # AllocatorImpl* -> owner key
owners = {}             # owner key -> {"kind", "chips"}
mesh_ptrs = {}          # MeshDevice* -> owner key
bank = {}               # BankManager* -> (owner key, buffer type name)
books = {}              # owner -> type -> counters
cbs = {}                # device key -> {"allocs", "bytes", "clears"}
buffers_created = {}    # device key -> {"allocating": n, "at_address": n, "at_address_bytes": n}
chips_since_mesh = []   # chips constructed since the last mesh allocator


def reg(name):
    return int(gdb.parse_and_eval("$" + name)) & 0xFFFFFFFFFFFFFFFF


def tid():
    return gdb.selected_thread().num


def frames(depth):
    names, f = [], gdb.newest_frame().older()
    while f is not None and len(names) < depth:
        names.append(f.name() or hex(f.pc()))
        f = f.older()
    return names


def trace(msg, depth=3):
    if TRACE:
        print("[gdb_hits] %s  <- %s" % (msg, " <- ".join(n[:90] for n in frames(depth))), flush=True)


def book(owner, btype):
    per = books.setdefault(owner, {})
    return per.setdefault(btype, {"bank_managers": 0, "allocate_buffer": 0, "sizes": {},
                                  "deallocate_buffer": 0, "deallocate_all": 0, "clear": 0})


def device_key(ptr):
    if ptr in device_chip:
        return "chip:%d" % device_chip[ptr]
    return mesh_ptrs.get(ptr, "device@%x" % ptr)


# ----------------------------------------------------------------------------- handlers
def on_device_ctor():
    this, chip = reg("rdi"), reg("rcx") & 0xFFFFFFFF
    device_chip[this] = chip
    thread_chip[tid()] = chip
    chips_since_mesh.append(chip)
    trace("Device::Device this=%x chip=%d" % (this, chip), 12)


def on_mesh_init():
    # MeshDeviceImpl::initialize_impl(MeshDevice* rsi, ...): remember the MeshDevice* so that
    # track_deallocate_cb(IDevice*) on it can be named.
    key = "mesh:%d" % sum(1 for o in owners.values() if o["kind"] == "mesh")
    mesh_ptrs[reg("rsi")] = key
    thread_allocator[("mesh_key", tid())] = key


def on_allocator_ctor():
    this, callers = reg("rdi"), frames(4)
    joined = " ".join(callers)
    if "Device::initialize_allocator" in joined:
        owner = "chip:%d" % thread_chip.get(tid(), -1)
        owners.setdefault(owner, {"kind": "chip", "chips": [thread_chip.get(tid(), -1)]})
    elif "MeshDeviceImpl::initialize_impl" in joined:
        owner = thread_allocator.pop(("mesh_key", tid()), "mesh:?")
        owners[owner] = {"kind": "mesh", "chips": list(chips_since_mesh)}
        chips_since_mesh.clear()
    elif "generate_device_bank_to_noc_tables" in joined:
        owner = "scratch"
        owners.setdefault(owner, {"kind": "scratch", "chips": []})
    else:
        owner = "other:" + (callers[0][:80] if callers else "?")
        owners.setdefault(owner, {"kind": "other", "chips": []})
    allocator_owner[this] = owner
    thread_allocator[tid()] = this
    trace("L1BankingAllocator this=%x owner=%s" % (this, owner), 3)


def on_bank_ctor():
    this = reg("rdi")
    btype = BUFFER_TYPES.get(int(gdb.parse_and_eval("*(int*)$rsi")), "?")
    owner = allocator_owner.get(thread_allocator.get(tid()), "unknown")
    bank[this] = (owner, btype)
    book(owner, btype)["bank_managers"] += 1
    trace("BankManager this=%x type=%s owner=%s" % (this, btype, owner), 2)


def on_allocate():
    this, size = reg("rdi"), reg("rsi")
    owner, btype = bank.get(this, ("unknown", "?"))
    b = book(owner, btype)
    b["allocate_buffer"] += 1
    b["sizes"][str(size)] = b["sizes"].get(str(size), 0) + 1
    trace("allocate_buffer bank=%x %s/%s size=%d page=%d" % (this, owner, btype, size, reg("rdx")))


def on_deallocate():
    this = reg("rdi")
    owner, btype = bank.get(this, ("unknown", "?"))
    book(owner, btype)["deallocate_buffer"] += 1
    trace("deallocate_buffer bank=%x %s/%s addr=%#x" % (this, owner, btype, reg("rsi")))


def on_deallocate_all():
    this = reg("rdi")
    owner, btype = bank.get(this, ("unknown", "?"))
    book(owner, btype)["deallocate_all"] += 1
    trace("deallocate_all bank=%x %s/%s" % (this, owner, btype))


def on_clear():
    this = reg("rdi")
    owner, btype = bank.get(this, ("unknown", "?"))
    book(owner, btype)["clear"] += 1
    trace("clear bank=%x %s/%s" % (this, owner, btype), 4)


def on_cb_alloc():
    key = device_key(reg("r9"))
    cb = cbs.setdefault(key, {"allocs": 0, "bytes": 0, "clears": 0})
    cb["allocs"] += 1
    cb["bytes"] += reg("rcx")


def on_cb_clear():
    key = device_key(reg("rsi"))
    cbs.setdefault(key, {"allocs": 0, "bytes": 0, "clears": 0})["clears"] += 1


def on_create(at_address):
    def handler():
        key = device_key(reg("rsi"))
        c = buffers_created.setdefault(key, {"allocating": 0, "at_address": 0, "at_address_bytes": 0})
        if at_address:
            c["at_address"] += 1
            c["at_address_bytes"] += reg("rcx")
        else:
            c["allocating"] += 1
    return handler


HANDLERS = {
    CREATE_ALLOC: on_create(False),
    CREATE_AT: on_create(True),
    "tt::tt_metal::Device::Device": on_device_ctor,
    "tt::tt_metal::distributed::MeshDeviceImpl::initialize_impl": on_mesh_init,
    "tt::tt_metal::L1BankingAllocator::L1BankingAllocator": on_allocator_ctor,
    "tt::tt_metal::BankManager::BankManager": on_bank_ctor,
    "tt::tt_metal::BankManager::allocate_buffer": on_allocate,
    "tt::tt_metal::BankManager::deallocate_buffer": on_deallocate,
    "tt::tt_metal::BankManager::deallocate_all": on_deallocate_all,
    "tt::tt_metal::BankManager::clear": on_clear,
    "tt::tt_metal::GraphTracker::track_allocate_cb": on_cb_alloc,
    "tt::tt_metal::GraphTracker::track_deallocate_cb": on_cb_clear,
}
errors = []


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
        return False


def report(_event=None):
    out = {
        "counts": counts,
        "unresolved": [b.fname for b in bps if not b.locations],
        "owners": owners,
        "banks": books,
        "cbs": cbs,
        "buffers_created": buffers_created,
        "errors": errors[:20],
        "exit_code": getattr(_event, "exit_code", None),
    }
    path = os.environ.get("GDB_HITS_OUT")
    if path:
        with open(path + ".tmp", "w") as f:
            json.dump(out, f, indent=1, sort_keys=True)
        os.replace(path + ".tmp", path)
    else:
        print(json.dumps(out, indent=1, sort_keys=True))


for cmd in ("set breakpoint pending on", "set pagination off", "set confirm off",
            "set print thread-events off", "set print inferior-events off",
            "handle SIGUSR1 SIGUSR2 SIGPIPE SIGCHLD SIGALRM SIGPROF nostop noprint pass"):
    gdb.execute(cmd)
bps = [Counter(f) for f in COUNTED]
gdb.events.exited.connect(report)
gdb.execute("run")
