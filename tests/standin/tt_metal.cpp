// Stand-in for Tenstorrent's libtt_metal.so (tt-metal 0.81.1).
//
// Exports the real library's mangled names for the functions the tracer
// probes, with the same parameter types (hence the same System V register
// assignment), and reproduces the real call structure of device bring-up,
// kernel loading, memory allocation and teardown. No hardware is touched:
// "writes" only checksum the binary and bump counters.
//
// Every probed function is TT_PROBED and has an observable side effect, so
// the compiler can neither fold, clone, inline nor drop a call to it.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#define TT_PROBED __attribute__((noinline, noipa, used))

namespace ttsl {

// Trivially copyable, so it travels in a register like the real one.
template <typename T, typename Tag>
class StrongType {
public:
    constexpr StrongType() = default;
    constexpr explicit StrongType(T value) : value_(value) {}
    constexpr T get() const { return value_; }

private:
    T value_{};
};

}  // namespace ttsl

namespace ll_api {

class memory {
public:
    using word_t = std::uint32_t;

    // bytes must be a multiple of sizeof(word_t).
    memory(std::size_t bytes, word_t seed) : data_(bytes / sizeof(word_t)) {
        word_t w = seed;
        for (auto& d : data_) {
            w = w * 1664525u + 1013904223u;
            d = w;
        }
    }

    const std::vector<word_t>& data() const { return data_; }

private:
    // Must stay the first member: probes read the binary size as
    // (end - begin) from the vector's pointers at +8 and +0.
    std::vector<word_t> data_;
    std::uint64_t text_addr_ = 0;
};

}  // namespace ll_api

namespace tt {

struct xy_pair {
    std::size_t x;
    std::size_t y;
};

namespace tt_metal {

using DeviceAddr = std::uint64_t;

enum class BufferType { DRAM, L1, SYSTEM_MEMORY, L1_SMALL, TRACE };

struct AllocatorIDTag {};
using AllocatorID = ttsl::StrongType<std::uint32_t, AllocatorIDTag>;

class CoreRangeSet {
public:
    std::vector<std::pair<xy_pair, xy_pair>> ranges;
};

class MetalEnvImpl {
public:
    std::atomic<std::uint64_t> bytes_written{0};
    std::atomic<std::uint64_t> checksum{0};
};

class MetalEnv {
public:
    MetalEnvImpl& impl() { return impl_; }

private:
    MetalEnvImpl impl_;
};

class MetalContext {};
class DispatchCoreConfig {};
class DispatchTopology {
public:
    std::atomic<std::uint32_t> programs_configured{0};
};

class IDevice {
public:
    virtual ~IDevice() = default;
    virtual int id() const = 0;
    virtual bool close() = 0;
};

namespace {

constexpr std::size_t kFabricBinaryBytes = 56 * 1024;
constexpr std::size_t kDispatchBinaryBytes = 46 * 1024;
constexpr std::uint32_t kFabricFirmwareAddr = 0x9000;
constexpr std::uint32_t kDispatchFirmwareAddr = 0x14000;
constexpr std::uint32_t kAppKernelAddr = 0x20000;
constexpr std::uint32_t kProgramKernelAddr = 0x30000;
constexpr int kMaxDevices = 64;

MetalEnv& metal_env() {
    static MetalEnv env;
    return env;
}

MetalContext& metal_context() {
    static MetalContext ctx;
    return ctx;
}

// Chips whose Device object exists and is not closed; direct application
// writes are refused for any other chip.
std::mutex g_live_mutex;
std::unordered_set<int> g_live_chips;

// Number of Device::configure_fabric() calls that have begun, ever. Lets a
// client start work exactly while fabric bring-up is in progress.
std::atomic<std::uint64_t> g_fabric_configs_started{0};

std::atomic<std::uint32_t> g_app_core_cursor{0};

bool chip_is_live(int chip) {
    std::lock_guard<std::mutex> lock(g_live_mutex);
    return g_live_chips.count(chip) != 0;
}

}  // namespace

class BankManager {
public:
    struct AllocatorDependencies {
        std::vector<std::vector<std::uint32_t>> adjacency{{}};
    };

    BankManager(
        const BufferType& buffer_type,
        const std::vector<std::int64_t>& bank_offsets,
        DeviceAddr size_bytes,
        std::uint32_t alignment_bytes,
        std::uint32_t min_allocation_bytes,
        DeviceAddr alloc_offset,
        bool disable_interleaved,
        const AllocatorDependencies& dependencies);

    DeviceAddr allocate_buffer(
        DeviceAddr size,
        DeviceAddr page_size,
        bool bottom_up,
        const CoreRangeSet& compute_grid,
        std::optional<std::uint32_t> num_shards,
        AllocatorID allocator_id,
        const std::vector<std::pair<DeviceAddr, DeviceAddr>>& reserved_ranges,
        const std::optional<std::unordered_set<std::uint32_t>>& bank_ids);
    void deallocate_buffer(DeviceAddr address, AllocatorID allocator_id);
    void deallocate_all();

private:
    BufferType buffer_type_;
    std::size_t num_banks_;
    DeviceAddr limit_;
    std::uint32_t alignment_;
    bool interleaved_;
    std::size_t num_allocators_;
    std::mutex mutex_;
    DeviceAddr next_;  // bump allocator: addresses only ever increase
    std::unordered_set<DeviceAddr> live_;
};

TT_PROBED BankManager::BankManager(
    const BufferType& buffer_type,
    const std::vector<std::int64_t>& bank_offsets,
    DeviceAddr size_bytes,
    std::uint32_t alignment_bytes,
    std::uint32_t min_allocation_bytes,
    DeviceAddr alloc_offset,
    bool disable_interleaved,
    const AllocatorDependencies& dependencies) :
    buffer_type_(buffer_type),
    num_banks_(bank_offsets.size()),
    limit_(alloc_offset + size_bytes),
    alignment_(std::max(alignment_bytes, min_allocation_bytes)),
    interleaved_(!disable_interleaved),
    num_allocators_(dependencies.adjacency.size()),
    next_(alloc_offset) {}

TT_PROBED DeviceAddr BankManager::allocate_buffer(
    DeviceAddr size,
    DeviceAddr page_size,
    bool /*bottom_up*/,
    const CoreRangeSet& /*compute_grid*/,
    std::optional<std::uint32_t> /*num_shards*/,
    AllocatorID allocator_id,
    const std::vector<std::pair<DeviceAddr, DeviceAddr>>& /*reserved_ranges*/,
    const std::optional<std::unordered_set<std::uint32_t>>& /*bank_ids*/) {
    if (size == 0 || page_size == 0 || allocator_id.get() >= num_allocators_) {
        return 0;
    }
    const DeviceAddr per_bank = interleaved_ ? (size + num_banks_ - 1) / num_banks_ : size;
    const DeviceAddr rounded = (per_bank + alignment_ - 1) / alignment_ * alignment_;
    std::lock_guard<std::mutex> lock(mutex_);
    if (next_ + rounded > limit_) {
        return 0;
    }
    const DeviceAddr address = next_;
    next_ += rounded;
    live_.insert(address);
    return address;
}

TT_PROBED void BankManager::deallocate_buffer(DeviceAddr address, AllocatorID /*allocator_id*/) {
    std::lock_guard<std::mutex> lock(mutex_);
    live_.erase(address);
}

TT_PROBED void BankManager::deallocate_all() {
    std::lock_guard<std::mutex> lock(mutex_);
    live_.clear();
}

class GraphTracker {
public:
    static GraphTracker& instance() {
        static GraphTracker tracker;
        return tracker;
    }

    void track_allocate_cb(
        const CoreRangeSet& core_range_set,
        std::uint64_t addr,
        std::uint64_t size,
        bool is_globally_allocated,
        const IDevice* device);
    void track_deallocate_cb(const IDevice* device);

private:
    std::mutex mutex_;
    std::unordered_map<const IDevice*, std::vector<std::pair<std::uint64_t, std::uint64_t>>> cbs_;
};

TT_PROBED void GraphTracker::track_allocate_cb(
    const CoreRangeSet& /*core_range_set*/,
    std::uint64_t addr,
    std::uint64_t size,
    bool /*is_globally_allocated*/,
    const IDevice* device) {
    std::lock_guard<std::mutex> lock(mutex_);
    cbs_[device].emplace_back(addr, size);
}

TT_PROBED void GraphTracker::track_deallocate_cb(const IDevice* device) {
    std::lock_guard<std::mutex> lock(mutex_);
    cbs_.erase(device);
}

class Device;

}  // namespace tt_metal

namespace llrt {

TT_PROBED void write_binary_to_address(
    tt::tt_metal::MetalEnvImpl& env,
    const ll_api::memory& mem,
    int chip_id,
    const tt::xy_pair& core,
    std::uint32_t address) {
    std::uint64_t sum = static_cast<std::uint64_t>(chip_id) ^ (core.x << 8) ^ (core.y << 16) ^ address;
    for (const auto word : mem.data()) {
        sum = sum * 31 + word;
    }
    env.checksum.fetch_xor(sum, std::memory_order_relaxed);
    env.bytes_written.fetch_add(mem.data().size() * sizeof(ll_api::memory::word_t), std::memory_order_relaxed);
}

}  // namespace llrt

namespace tt_metal {

class Device : public IDevice {
public:
    Device(
        MetalEnv* env,
        MetalContext* context,
        int device_id,
        std::uint8_t num_hw_cqs,
        std::size_t l1_small_size,
        std::size_t trace_region_size,
        std::span<const std::uint32_t> l1_bank_remap,
        bool minimal,
        std::uint32_t worker_thread_core,
        std::uint32_t completion_queue_reader_core,
        std::size_t worker_l1_size);

    int id() const override { return id_; }
    bool close() override;
    void configure_fabric();
    void configure_command_queue_programs(DispatchTopology* topology);

    BankManager* bank_manager(BufferType type);
    std::uint64_t next_cb_address(std::uint64_t size);
    void reset_cb_addresses();

private:
    MetalEnv* env_;
    MetalContext* context_;
    int id_;
    std::uint8_t num_hw_cqs_;
    bool closed_ = false;
    std::atomic<bool> fabric_configured_{false};
    std::unique_ptr<BankManager> dram_;
    std::unique_ptr<BankManager> l1_;
    std::unique_ptr<BankManager> l1_small_;
    std::unique_ptr<BankManager> trace_;
    std::mutex cb_mutex_;
    std::uint64_t cb_cursor_;
};

namespace {

constexpr std::uint64_t kCbRegionBase = 0x40000;

std::unique_ptr<BankManager> make_bank_manager(
    BufferType type, std::size_t banks, DeviceAddr size, std::uint32_t alignment, DeviceAddr offset) {
    const std::vector<std::int64_t> offsets(banks, 0);
    const BankManager::AllocatorDependencies deps;
    return std::make_unique<BankManager>(type, offsets, size, alignment, alignment, offset, false, deps);
}

}  // namespace

TT_PROBED Device::Device(
    MetalEnv* env,
    MetalContext* context,
    int device_id,
    std::uint8_t num_hw_cqs,
    std::size_t l1_small_size,
    std::size_t trace_region_size,
    std::span<const std::uint32_t> /*l1_bank_remap*/,
    bool /*minimal*/,
    std::uint32_t /*worker_thread_core*/,
    std::uint32_t /*completion_queue_reader_core*/,
    std::size_t worker_l1_size) :
    env_(env), context_(context), id_(device_id), num_hw_cqs_(num_hw_cqs), cb_cursor_(kCbRegionBase) {
    // Allocators are built while the device is constructed, as in the real
    // library. Their ranges are disjoint, so an address is unique per device.
    dram_ = make_bank_manager(BufferType::DRAM, 8, DeviceAddr{1} << 30, 64, DeviceAddr{1} << 30);
    l1_ = make_bank_manager(BufferType::L1, 64, worker_l1_size, 16, 0x100000);
    l1_small_ = make_bank_manager(BufferType::L1_SMALL, 64, l1_small_size, 16, 0x80000);
    trace_ = make_bank_manager(BufferType::TRACE, 8, trace_region_size, 64, 0x10000000);
    std::lock_guard<std::mutex> lock(g_live_mutex);
    g_live_chips.insert(id_);
}

TT_PROBED bool Device::close() {
    if (closed_) {
        return false;
    }
    for (BankManager* bm : {dram_.get(), l1_.get(), l1_small_.get(), trace_.get()}) {
        bm->deallocate_all();
    }
    closed_ = true;
    std::lock_guard<std::mutex> lock(g_live_mutex);
    g_live_chips.erase(id_);
    return true;
}

TT_PROBED void Device::configure_fabric() {
    g_fabric_configs_started.fetch_add(1);
    // Two ethernet cores per chip get the fabric router firmware. The pause
    // keeps the call open long enough for other threads' writes to overlap it.
    const ll_api::memory router0(kFabricBinaryBytes, 0xFAB0 + id_);
    llrt::write_binary_to_address(env_->impl(), router0, id_, xy_pair{25, 0}, kFabricFirmwareAddr);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    const ll_api::memory router1(kFabricBinaryBytes, 0xFAB1 + id_);
    llrt::write_binary_to_address(env_->impl(), router1, id_, xy_pair{18, 0}, kFabricFirmwareAddr);
    fabric_configured_ = true;
}

TT_PROBED void Device::configure_command_queue_programs(DispatchTopology* topology) {
    // Prefetcher and dispatcher firmware for the command queue.
    const ll_api::memory prefetch(kDispatchBinaryBytes, 0xD150 + id_);
    llrt::write_binary_to_address(env_->impl(), prefetch, id_, xy_pair{1, 9}, kDispatchFirmwareAddr);
    const ll_api::memory dispatch(kDispatchBinaryBytes, 0xD151 + id_);
    llrt::write_binary_to_address(env_->impl(), dispatch, id_, xy_pair{2, 9}, kDispatchFirmwareAddr);
    topology->programs_configured.fetch_add(1);
}

BankManager* Device::bank_manager(BufferType type) {
    switch (type) {
        case BufferType::DRAM: return dram_.get();
        case BufferType::L1: return l1_.get();
        case BufferType::L1_SMALL: return l1_small_.get();
        case BufferType::TRACE: return trace_.get();
        case BufferType::SYSTEM_MEMORY: break;
    }
    return nullptr;
}

std::uint64_t Device::next_cb_address(std::uint64_t size) {
    std::lock_guard<std::mutex> lock(cb_mutex_);
    const std::uint64_t address = cb_cursor_;
    cb_cursor_ += (size + 15) / 16 * 16;
    return address;
}

void Device::reset_cb_addresses() {
    std::lock_guard<std::mutex> lock(cb_mutex_);
    cb_cursor_ = kCbRegionBase;
}

class DeviceManager {
public:
    void adopt(std::vector<Device*> devices) { devices_ = std::move(devices); }
    void initialize_fabric_and_dispatch_fw();
    bool close_devices(const std::vector<IDevice*>& devices, bool skip_synchronize);

private:
    std::vector<Device*> devices_;
    DispatchTopology topology_;
};

TT_PROBED void DeviceManager::initialize_fabric_and_dispatch_fw() {
    // Fabric bring-up runs on worker threads, one per device, as in 0.81.1.
    std::vector<std::future<void>> pending;
    pending.reserve(devices_.size());
    for (Device* dev : devices_) {
        pending.push_back(std::async(std::launch::async, [dev] { dev->configure_fabric(); }));
    }
    for (auto& f : pending) {
        f.get();
    }
    for (Device* dev : devices_) {
        dev->configure_command_queue_programs(&topology_);
    }
}

TT_PROBED bool DeviceManager::close_devices(const std::vector<IDevice*>& devices, bool /*skip_synchronize*/) {
    bool all_closed = true;
    for (IDevice* dev : devices) {
        all_closed = dev->close() && all_closed;
    }
    return all_closed;
}

namespace detail {

class ProgramImpl {
public:
    explicit ProgramImpl(ll_api::memory binary) : binary_(std::move(binary)) {}
    void allocate_kernel_bin_buf_on_device(IDevice* device);

private:
    ll_api::memory binary_;
    std::uint32_t devices_loaded_ = 0;
};

TT_PROBED void ProgramImpl::allocate_kernel_bin_buf_on_device(IDevice* device) {
    llrt::write_binary_to_address(metal_env().impl(), binary_, device->id(), xy_pair{1, 1}, kProgramKernelAddr);
    ++devices_loaded_;
}

}  // namespace detail

namespace distributed {

struct MeshDeviceConfig {
    std::size_t num_devices;
};

class MeshDevice {
public:
    static std::shared_ptr<MeshDevice> create(
        const MeshDeviceConfig& config,
        std::size_t l1_small_size,
        std::size_t trace_region_size,
        std::size_t num_command_queues,
        const DispatchCoreConfig& dispatch_core_config,
        std::span<const std::uint32_t> l1_bank_remap,
        std::size_t worker_l1_size);

    ~MeshDevice();
    bool close();

    std::size_t num_devices() const { return devices_.size(); }
    Device* device(std::size_t index) const { return devices_.at(index).get(); }

private:
    MeshDevice() = default;

    std::vector<std::unique_ptr<Device>> devices_;
    DeviceManager manager_;
    bool closed_ = false;
};

TT_PROBED std::shared_ptr<MeshDevice> MeshDevice::create(
    const MeshDeviceConfig& config,
    std::size_t l1_small_size,
    std::size_t trace_region_size,
    std::size_t num_command_queues,
    const DispatchCoreConfig& /*dispatch_core_config*/,
    std::span<const std::uint32_t> l1_bank_remap,
    std::size_t worker_l1_size) {
    std::shared_ptr<MeshDevice> mesh(new MeshDevice());
    std::vector<Device*> raw;
    for (std::size_t i = 0; i < config.num_devices; ++i) {
        mesh->devices_.push_back(std::make_unique<Device>(
            &metal_env(),
            &metal_context(),
            static_cast<int>(i),
            static_cast<std::uint8_t>(num_command_queues),
            l1_small_size,
            trace_region_size,
            l1_bank_remap,
            false,
            0,
            0,
            worker_l1_size));
        raw.push_back(mesh->devices_.back().get());
    }
    mesh->manager_.adopt(std::move(raw));
    mesh->manager_.initialize_fabric_and_dispatch_fw();
    return mesh;
}

TT_PROBED bool MeshDevice::close() {
    if (closed_) {
        return false;
    }
    std::vector<IDevice*> devices;
    for (auto& d : devices_) {
        devices.push_back(d.get());
    }
    closed_ = true;
    return manager_.close_devices(devices, false);
}

MeshDevice::~MeshDevice() {
    if (!closed_) {
        close();
    }
}

}  // namespace distributed
}  // namespace tt_metal
}  // namespace tt

// ---------------------------------------------------------------------------
// C-callable helpers for the driver program.

using tt::tt_metal::BufferType;
using tt::tt_metal::Device;
using tt::tt_metal::distributed::MeshDevice;

struct standin_mesh {
    std::shared_ptr<MeshDevice> mesh;
};

namespace {

Device* mesh_device(standin_mesh* h, int index) {
    if (h == nullptr || index < 0 || static_cast<std::size_t>(index) >= h->mesh->num_devices()) {
        return nullptr;
    }
    return h->mesh->device(static_cast<std::size_t>(index));
}

bool valid_binary_size(std::size_t bytes) {
    return bytes > 0 && bytes % sizeof(ll_api::memory::word_t) == 0;
}

}  // namespace

extern "C" {

// Opens a mesh of num_devices chips (ids 0..num_devices-1); NULL on bad input.
standin_mesh* standin_open_mesh(int num_devices) {
    if (num_devices < 1 || num_devices > tt::tt_metal::kMaxDevices) {
        return nullptr;
    }
    const tt::tt_metal::distributed::MeshDeviceConfig config{static_cast<std::size_t>(num_devices)};
    const tt::tt_metal::DispatchCoreConfig dispatch_core_config;
    auto mesh = MeshDevice::create(config, 32 * 1024, 1 << 20, 1, dispatch_core_config, {}, 1 << 20);
    return new standin_mesh{std::move(mesh)};
}

int standin_num_devices(standin_mesh* h) { return h == nullptr ? 0 : static_cast<int>(h->mesh->num_devices()); }

// Count of Device::configure_fabric() calls begun so far (monotonic).
unsigned long long standin_fabric_configs_started(void) { return tt::tt_metal::g_fabric_configs_started.load(); }

// Application kernel written straight through write_binary_to_address, outside
// any runtime context. Returns the bytes written, or -1 (bad size, chip has no
// open Device).
long long standin_write_app_kernel(int chip, unsigned long long bytes) {
    if (!valid_binary_size(bytes) || !tt::tt_metal::chip_is_live(chip)) {
        return -1;
    }
    const std::uint32_t n = tt::tt_metal::g_app_core_cursor.fetch_add(1);
    const ll_api::memory binary(bytes, 0xA000 + n);
    tt::llrt::write_binary_to_address(
        tt::tt_metal::metal_env().impl(), binary, chip, tt::xy_pair{1 + n % 8, 2 + (n / 8) % 8},
        tt::tt_metal::kAppKernelAddr);
    return static_cast<long long>(bytes);
}

// Application kernel written through ProgramImpl::allocate_kernel_bin_buf_on_device.
long long standin_write_program_kernel(standin_mesh* h, int device, unsigned long long bytes) {
    Device* dev = mesh_device(h, device);
    if (dev == nullptr || !valid_binary_size(bytes)) {
        return -1;
    }
    tt::tt_metal::detail::ProgramImpl program(ll_api::memory(bytes, 0xB000 + device));
    program.allocate_kernel_bin_buf_on_device(dev);
    return static_cast<long long>(bytes);
}

// buffer_type is a tt::tt_metal::BufferType value. Returns the address, 0 on failure.
unsigned long long standin_alloc_buffer(standin_mesh* h, int device, int buffer_type, unsigned long long size) {
    Device* dev = mesh_device(h, device);
    tt::tt_metal::BankManager* bm = dev == nullptr ? nullptr : dev->bank_manager(static_cast<BufferType>(buffer_type));
    if (bm == nullptr) {
        return 0;
    }
    const tt::tt_metal::CoreRangeSet grid{{{tt::xy_pair{0, 0}, tt::xy_pair{7, 7}}}};
    const std::vector<std::pair<tt::tt_metal::DeviceAddr, tt::tt_metal::DeviceAddr>> reserved;
    const std::optional<std::unordered_set<std::uint32_t>> bank_ids;
    return bm->allocate_buffer(
        size, std::min<unsigned long long>(size, 2048), true, grid, std::nullopt, tt::tt_metal::AllocatorID{0},
        reserved, bank_ids);
}

int standin_free_buffer(standin_mesh* h, int device, int buffer_type, unsigned long long address) {
    Device* dev = mesh_device(h, device);
    tt::tt_metal::BankManager* bm = dev == nullptr ? nullptr : dev->bank_manager(static_cast<BufferType>(buffer_type));
    if (bm == nullptr) {
        return -1;
    }
    bm->deallocate_buffer(address, tt::tt_metal::AllocatorID{0});
    return 0;
}

// Circular buffer of size bytes; returns its L1 address, 0 on failure.
unsigned long long standin_alloc_cb(standin_mesh* h, int device, unsigned long long size) {
    Device* dev = mesh_device(h, device);
    if (dev == nullptr || size == 0) {
        return 0;
    }
    const std::uint64_t address = dev->next_cb_address(size);
    const tt::tt_metal::CoreRangeSet cores{{{tt::xy_pair{0, 0}, tt::xy_pair{7, 7}}}};
    tt::tt_metal::GraphTracker::instance().track_allocate_cb(cores, address, size, false, dev);
    return address;
}

// Releases every circular buffer of the device.
int standin_free_cbs(standin_mesh* h, int device) {
    Device* dev = mesh_device(h, device);
    if (dev == nullptr) {
        return -1;
    }
    tt::tt_metal::GraphTracker::instance().track_deallocate_cb(dev);
    dev->reset_cb_addresses();
    return 0;
}

// MeshDevice::close(), then releases the handle. Returns 0 if every device closed.
int standin_close_mesh(standin_mesh* h) {
    if (h == nullptr) {
        return -1;
    }
    const bool ok = h->mesh->close();
    delete h;
    return ok ? 0 : -1;
}

}  // extern "C"
