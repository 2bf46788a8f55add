// Stand-in for Tenstorrent's libtt_metal.so (tt-metal 0.81.1).
//
// Exports the real library's mangled names for the functions the tracer
// probes, with the same parameter types (hence the same System V register
// assignment), and reproduces the real call structure of device bring-up,
// firmware, allocator construction, kernel loading (fast and slow dispatch),
// memory allocation and teardown. No hardware is touched: "writes" only
// checksum the binary and bump counters.
//
// Every probed function is TT_PROBED and has an observable side effect, so
// the compiler can neither fold, clone, inline nor drop a call to it. The
// unprobed functions of the real call path that keep their real names
// (ConfigureDeviceWithProgram, the kernels' configure, ...) are TT_REAL_PATH.

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#define TT_PROBED __attribute__((noinline, noipa, used))
#define TT_REAL_PATH __attribute__((noinline, noipa, used))

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
    std::size_t size_bytes() const { return data_.size() * sizeof(word_t); }

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

    bool operator==(const xy_pair&) const = default;
};

namespace llrt {

// What tt-metal reads from the environment once per process (tt::llrt::RunTimeOptions).
class RunTimeOptions {
public:
    // Slow dispatch when TT_METAL_SLOW_DISPATCH_MODE is set at all, as tt-metal tests it.
    RunTimeOptions() : fast_dispatch_(std::getenv("TT_METAL_SLOW_DISPATCH_MODE") == nullptr) {}
    bool get_fast_dispatch() const { return fast_dispatch_; }

private:
    bool fast_dispatch_;
};

}  // namespace llrt

namespace tt_metal {

using DeviceAddr = std::uint64_t;

enum class BufferType { DRAM, L1, SYSTEM_MEMORY, L1_SMALL, TRACE };

struct AllocatorIDTag {};
using AllocatorID = ttsl::StrongType<std::uint32_t, AllocatorIDTag>;

class CoreRangeSet {
public:
    std::vector<std::pair<xy_pair, xy_pair>> ranges;
};

// tt-metal's HalProgrammableCoreType (0.77+ values) and HalProcessorClassType.
enum class HalProgrammableCoreType { TENSIX = 0, ACTIVE_ETH = 1, IDLE_ETH = 2, DRAM = 3, DISPATCH = 4, COUNT = 5 };
enum class HalProcessorClassType : std::uint8_t { DM = 0, COMPUTE = 1 };

constexpr int kMaxDevices = 64;
constexpr std::size_t kCoreTypes = static_cast<std::size_t>(HalProgrammableCoreType::COUNT);

struct WriteTally {
    std::atomic<std::uint64_t> count{0};
    std::atomic<std::uint64_t> bytes{0};

    void add(std::uint64_t b) {
        count.fetch_add(1, std::memory_order_relaxed);
        bytes.fetch_add(b, std::memory_order_relaxed);
    }
};

class MetalEnvImpl {
public:
    const llrt::RunTimeOptions& get_rtoptions() const { return rtoptions_; }

    std::atomic<std::uint64_t> bytes_written{0};
    std::atomic<std::uint64_t> checksum{0};
    // The library's own account of what it wrote, per chip id: kernel binaries
    // (write_binary_to_address) and firmware per core type. The driver's oracle.
    std::array<WriteTally, kMaxDevices> binaries_by_chip;
    std::array<std::array<WriteTally, kCoreTypes>, kMaxDevices> firmware_by_chip;

private:
    llrt::RunTimeOptions rtoptions_;
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

class AllocatorImpl;

class IDevice {
public:
    virtual ~IDevice() = default;
    virtual int id() const = 0;
    virtual bool close() = 0;
    virtual AllocatorImpl* allocator_impl() const = 0;
};

}  // namespace tt_metal

// The host's writes of binaries to a core's L1 (tt_metal/llrt/llrt.cpp), defined below.
namespace llrt {

void write_binary_to_address(
    tt_metal::MetalEnvImpl& env, const ll_api::memory& mem, int chip_id, const xy_pair& core, std::uint32_t address);
void test_load_write_read_risc_binary(
    tt_metal::MetalEnvImpl& env,
    const ll_api::memory& mem,
    int chip_id,
    const xy_pair& core,
    std::uint32_t core_type_idx,
    std::uint32_t processor_class_idx,
    std::uint32_t processor_type_idx);
void test_load_multicast_write_risc_binary(
    tt_metal::MetalEnvImpl& env,
    const ll_api::memory& mem,
    int chip_id,
    const xy_pair& start_core,
    const xy_pair& end_core,
    std::uint32_t core_type_idx,
    std::uint32_t processor_class_idx,
    std::uint32_t processor_type_idx);

}  // namespace llrt

namespace tt_metal {

namespace {

// System kernels: a fabric router per active ethernet core, a prefetcher and a dispatcher.
constexpr std::size_t kFabricBinaryBytes = 56 * 1024;
constexpr std::size_t kDispatchBinaryBytes = 46 * 1024;
constexpr std::uint32_t kFabricKernelAddr = 0x9000;
constexpr std::uint32_t kDispatchKernelAddr = 0x14000;
constexpr std::uint32_t kAppKernelAddr = 0x20000;
constexpr std::uint32_t kProgramKernelAddr = 0x30000;
constexpr xy_pair kActiveEthCores[] = {{25, 0}, {18, 0}};
constexpr xy_pair kDispatchCores[] = {{1, 9}, {2, 9}};

// Firmware, one binary per RISC processor, as the HAL's firmware ELFs would give it.
struct RiscFirmware {
    HalProcessorClassType processor_class;
    std::uint32_t processor_type;
    std::size_t bytes;
};
// A Tensix core's five RISCs: BRISC, NCRISC (data movement), TRISC0..2 (compute).
constexpr RiscFirmware kTensixFirmware[] = {
    {HalProcessorClassType::DM, 0, 6144},
    {HalProcessorClassType::DM, 1, 4608},
    {HalProcessorClassType::COMPUTE, 0, 3072},
    {HalProcessorClassType::COMPUTE, 1, 3584},
    {HalProcessorClassType::COMPUTE, 2, 2560},
};
// An active ethernet core's ERISC.
constexpr RiscFirmware kActiveEthFirmware{HalProcessorClassType::DM, 0, 5120};
// Tensix firmware is multicast over the worker grid.
constexpr xy_pair kWorkerGridStart{1, 1};
constexpr xy_pair kWorkerGridEnd{8, 8};

// The stand-in chip's memory, as its soc descriptor and HAL would give it.
constexpr std::size_t kDramChannels = 8;
constexpr DeviceAddr kDramChannelBytes = DeviceAddr{1} << 30;
constexpr std::uint32_t kDramUnreservedBase = 0x10000;
constexpr std::uint32_t kDramAlignment = 64;
constexpr std::size_t kWorkerL1Bytes = 1536 * 1024;
constexpr std::uint32_t kL1Alignment = 16;
constexpr std::size_t kComputeCores = 64;  // 8 x 8 grid: one L1 bank each
// Bank tables need no L1_SMALL or trace region (as tt-metal's DEFAULT_* sizes).
constexpr std::size_t kDefaultL1SmallSize = 0;
constexpr std::size_t kDefaultTraceRegionSize = 0;
// Kernel binary buffers are paged at this size.
constexpr DeviceAddr kProgramPageSize = 2048;

constexpr std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

// Where allocatable worker L1 starts when worker_l1_size bytes are left to buffers.
std::size_t worker_l1_unreserved_start(std::size_t worker_l1_size) {
    return align_up(kWorkerL1Bytes - std::min(worker_l1_size, kWorkerL1Bytes), std::max(kDramAlignment, kL1Alignment));
}

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

// One buffer type's banks of one allocator. A bump allocator: addresses only
// ever increase and are never reused.
class BankManager {
public:
    struct AllocatorDependencies {
        std::vector<std::vector<std::uint32_t>> adjacency{{}};
    };

    // One bank per DRAM channel (DRAM, TRACE).
    BankManager(
        const BufferType& buffer_type,
        const std::vector<std::int64_t>& bank_offsets,
        DeviceAddr size_bytes,
        std::uint32_t alignment_bytes,
        std::uint32_t min_allocation_bytes,
        DeviceAddr alloc_offset,
        bool disable_interleaved,
        const AllocatorDependencies& dependencies);
    // Banks by id (L1, L1_SMALL: one per compute-and-storage core).
    BankManager(
        const BufferType& buffer_type,
        const std::unordered_map<std::uint32_t, std::int64_t>& bank_id_to_bank_offset,
        DeviceAddr size_bytes,
        DeviceAddr interleaved_address_limit,
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
    // Forgets every buffer without freeing them one by one (allocator teardown).
    void clear();

    std::size_t num_banks() const { return bank_offsets_.size(); }
    std::int64_t bank_offset(std::uint32_t bank_id) const {
        const auto it = bank_offsets_.find(bank_id);
        return it == bank_offsets_.end() ? 0 : it->second;
    }

private:
    BufferType buffer_type_;
    std::unordered_map<std::uint32_t, std::int64_t> bank_offsets_;
    DeviceAddr limit_;
    DeviceAddr interleaved_address_limit_;
    std::uint32_t alignment_;
    bool interleaved_;
    std::size_t num_allocators_;
    std::mutex mutex_;
    DeviceAddr next_;
    std::unordered_set<DeviceAddr> live_;
};

namespace {

std::unordered_map<std::uint32_t, std::int64_t> banks_by_id(const std::vector<std::int64_t>& offsets) {
    std::unordered_map<std::uint32_t, std::int64_t> by_id;
    for (std::uint32_t id = 0; id < offsets.size(); ++id) {
        by_id.emplace(id, offsets[id]);
    }
    return by_id;
}

}  // namespace

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
    bank_offsets_(banks_by_id(bank_offsets)),
    limit_(alloc_offset + size_bytes),
    interleaved_address_limit_(0),
    alignment_(std::max(alignment_bytes, min_allocation_bytes)),
    interleaved_(!disable_interleaved),
    num_allocators_(dependencies.adjacency.size()),
    next_(alloc_offset) {}

TT_PROBED BankManager::BankManager(
    const BufferType& buffer_type,
    const std::unordered_map<std::uint32_t, std::int64_t>& bank_id_to_bank_offset,
    DeviceAddr size_bytes,
    DeviceAddr interleaved_address_limit,
    std::uint32_t alignment_bytes,
    std::uint32_t min_allocation_bytes,
    DeviceAddr alloc_offset,
    bool disable_interleaved,
    const AllocatorDependencies& dependencies) :
    buffer_type_(buffer_type),
    bank_offsets_(bank_id_to_bank_offset),
    limit_(alloc_offset + size_bytes),
    interleaved_address_limit_(interleaved_address_limit),
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
    const std::size_t banks = num_banks();
    if (size == 0 || page_size == 0 || banks == 0 || allocator_id.get() >= num_allocators_) {
        return 0;
    }
    const DeviceAddr per_bank = interleaved_ ? (size + banks - 1) / banks : size;
    const DeviceAddr rounded = align_up(per_bank, alignment_);
    std::lock_guard<std::mutex> lock(mutex_);
    if (next_ + rounded > limit_ || next_ < interleaved_address_limit_) {
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

TT_PROBED void BankManager::clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    live_.clear();
}

// What an allocator manages on one chip (from the soc descriptor and HAL).
struct AllocatorConfig {
    std::size_t num_dram_channels = 0;
    DeviceAddr dram_bank_size = 0;
    std::vector<std::int64_t> dram_bank_offsets;
    std::uint32_t dram_unreserved_base = 0;
    std::uint32_t dram_alignment = 0;
    std::uint32_t l1_unreserved_base = 0;
    std::size_t num_l1_banks = 0;
    std::size_t worker_l1_size = 0;
    std::size_t l1_small_size = 0;
    std::size_t trace_region_size = 0;
    std::uint32_t l1_alignment = 0;
    bool disable_interleaved = false;
    std::vector<std::uint32_t> l1_bank_remap;
};

// An allocator: four bank managers, one per buffer type it places.
class AllocatorImpl {
public:
    explicit AllocatorImpl(const AllocatorConfig& config) : config_(config) {}
    virtual ~AllocatorImpl();

    const AllocatorConfig& get_config() const { return config_; }
    BankManager* bank_manager(BufferType type) const;
    std::size_t get_num_banks(BufferType type) const;
    std::int64_t get_bank_offset(BufferType type, std::uint32_t bank_id) const;

    DeviceAddr allocate_buffer(BufferType type, DeviceAddr size, DeviceAddr page_size);
    bool deallocate_buffer(BufferType type, DeviceAddr address);
    // Every buffer of every bank released at once (the allocator is going away).
    void deallocate_buffers();

protected:
    void init_one_bank_per_channel();
    void init_compute_and_storage_l1_bank_manager();

private:
    AllocatorConfig config_;
    std::unique_ptr<BankManager> dram_manager_;
    std::unique_ptr<BankManager> trace_buffer_manager_;
    std::unique_ptr<BankManager> l1_manager_;
    std::unique_ptr<BankManager> l1_small_manager_;
};

AllocatorImpl::~AllocatorImpl() {
    for (BankManager* bm : {dram_manager_.get(), trace_buffer_manager_.get(), l1_manager_.get(), l1_small_manager_.get()}) {
        if (bm != nullptr) {
            bm->clear();
        }
    }
}

BankManager* AllocatorImpl::bank_manager(BufferType type) const {
    switch (type) {
        case BufferType::DRAM: return dram_manager_.get();
        case BufferType::L1: return l1_manager_.get();
        case BufferType::L1_SMALL: return l1_small_manager_.get();
        case BufferType::TRACE: return trace_buffer_manager_.get();
        case BufferType::SYSTEM_MEMORY: break;
    }
    return nullptr;
}

std::size_t AllocatorImpl::get_num_banks(BufferType type) const {
    const BankManager* bm = bank_manager(type);
    return bm == nullptr ? 0 : bm->num_banks();
}

std::int64_t AllocatorImpl::get_bank_offset(BufferType type, std::uint32_t bank_id) const {
    const BankManager* bm = bank_manager(type);
    return bm == nullptr ? 0 : bm->bank_offset(bank_id);
}

DeviceAddr AllocatorImpl::allocate_buffer(BufferType type, DeviceAddr size, DeviceAddr page_size) {
    BankManager* bm = bank_manager(type);
    if (bm == nullptr) {
        return 0;
    }
    const CoreRangeSet grid{{{xy_pair{0, 0}, xy_pair{7, 7}}}};
    const std::vector<std::pair<DeviceAddr, DeviceAddr>> reserved;
    const std::optional<std::unordered_set<std::uint32_t>> bank_ids;
    return bm->allocate_buffer(size, page_size, true, grid, std::nullopt, AllocatorID{0}, reserved, bank_ids);
}

bool AllocatorImpl::deallocate_buffer(BufferType type, DeviceAddr address) {
    BankManager* bm = bank_manager(type);
    if (bm == nullptr) {
        return false;
    }
    bm->deallocate_buffer(address, AllocatorID{0});
    return true;
}

void AllocatorImpl::deallocate_buffers() {
    for (BankManager* bm : {dram_manager_.get(), trace_buffer_manager_.get(), l1_manager_.get(), l1_small_manager_.get()}) {
        bm->deallocate_all();
    }
}

// DRAM: one bank per channel, from the unreserved base up to the trace region,
// which takes the top of every channel.
void AllocatorImpl::init_one_bank_per_channel() {
    const DeviceAddr dram_bank_size =
        config_.dram_bank_size - config_.dram_unreserved_base - config_.trace_region_size;
    const BankManager::AllocatorDependencies dependencies;
    dram_manager_ = std::unique_ptr<BankManager>(new BankManager(
        BufferType::DRAM,
        config_.dram_bank_offsets,
        dram_bank_size,
        config_.dram_alignment,
        config_.dram_alignment,
        config_.dram_unreserved_base,
        config_.disable_interleaved,
        dependencies));
    trace_buffer_manager_ = std::unique_ptr<BankManager>(new BankManager(
        BufferType::TRACE,
        config_.dram_bank_offsets,
        config_.trace_region_size,
        config_.dram_alignment,
        config_.dram_alignment,
        config_.dram_unreserved_base + dram_bank_size,
        false,
        dependencies));
}

// L1: one bank per compute-and-storage core, from the unreserved base up to
// L1_SMALL, which takes the top of every core's L1.
void AllocatorImpl::init_compute_and_storage_l1_bank_manager() {
    std::unordered_map<std::uint32_t, std::int64_t> bank_id_to_bank_offset;
    std::unordered_map<std::uint32_t, std::int64_t> small_bank_id_to_bank_offset;
    for (std::uint32_t bank_id = 0; bank_id < config_.num_l1_banks; ++bank_id) {
        const std::uint32_t remapped =
            bank_id < config_.l1_bank_remap.size() ? config_.l1_bank_remap[bank_id] : bank_id;
        bank_id_to_bank_offset.emplace(remapped, 0);
        if (config_.l1_small_size > 0) {
            small_bank_id_to_bank_offset.emplace(remapped, 0);
        }
    }
    const DeviceAddr allocatable_l1_size =
        config_.worker_l1_size - config_.l1_unreserved_base - config_.l1_small_size;
    const BankManager::AllocatorDependencies dependencies;
    l1_manager_ = std::unique_ptr<BankManager>(new BankManager(
        BufferType::L1,
        bank_id_to_bank_offset,
        allocatable_l1_size,
        config_.l1_unreserved_base,
        config_.l1_alignment,
        config_.l1_alignment,
        config_.l1_unreserved_base,
        config_.disable_interleaved,
        dependencies));
    l1_small_manager_ = std::unique_ptr<BankManager>(new BankManager(
        BufferType::L1_SMALL,
        small_bank_id_to_bank_offset,
        config_.l1_small_size,
        config_.worker_l1_size - config_.l1_small_size,
        config_.l1_alignment,
        config_.l1_alignment,
        config_.l1_unreserved_base + allocatable_l1_size,
        config_.disable_interleaved,
        dependencies));
}

// The only allocator scheme: DRAM banked per channel, L1 per core.
class L1BankingAllocator : public AllocatorImpl {
public:
    explicit L1BankingAllocator(const AllocatorConfig& config) : AllocatorImpl(config) {
        init_one_bank_per_channel();
        init_compute_and_storage_l1_bank_manager();
    }

    static AllocatorConfig generate_config(
        int device_id,
        std::uint8_t num_hw_cqs,
        std::size_t l1_small_size,
        std::size_t trace_region_size,
        std::size_t worker_l1_unreserved_start,
        std::vector<std::uint32_t> l1_bank_remap);
};

AllocatorConfig L1BankingAllocator::generate_config(
    int /*device_id*/,
    std::uint8_t /*num_hw_cqs*/,
    std::size_t l1_small_size,
    std::size_t trace_region_size,
    std::size_t worker_l1_unreserved_start,
    std::vector<std::uint32_t> l1_bank_remap) {
    AllocatorConfig config;
    config.num_dram_channels = kDramChannels;
    config.dram_bank_size = kDramChannelBytes;
    config.dram_bank_offsets.assign(kDramChannels, 0);
    config.dram_unreserved_base = kDramUnreservedBase;
    config.dram_alignment = kDramAlignment;
    config.l1_unreserved_base = static_cast<std::uint32_t>(align_up(worker_l1_unreserved_start, kDramAlignment));
    config.num_l1_banks = kComputeCores;
    config.worker_l1_size = kWorkerL1Bytes;
    config.l1_small_size = align_up(l1_small_size, kDramAlignment);
    config.trace_region_size = align_up(trace_region_size, kDramAlignment);
    config.l1_alignment = kL1Alignment;
    config.l1_bank_remap = std::move(l1_bank_remap);
    return config;
}

// Firmware bring-up. Its build phase computes every chip's bank-to-NOC tables
// from a throw-away allocator, on worker threads; its launch phase then writes
// every chip's firmware. Both run before the devices exist.
class RiscFirmwareInitializer {
public:
    RiscFirmwareInitializer(
        std::uint8_t num_hw_cqs, std::size_t worker_l1_unreserved_start, std::vector<std::uint32_t> l1_bank_remap) :
        num_hw_cqs_(num_hw_cqs),
        worker_l1_unreserved_start_(worker_l1_unreserved_start),
        l1_bank_remap_(std::move(l1_bank_remap)) {}

    void run_async_build_phase(const std::set<int>& device_ids);
    void run_launch_phase(const std::set<int>& device_ids);
    void initialize_and_launch_firmware(int device_id);
    void generate_device_bank_to_noc_tables(
        int device_id,
        std::vector<std::int32_t>& dram_bank_offset_map,
        std::vector<std::int32_t>& l1_bank_offset_map,
        std::vector<std::uint16_t>& dram_bank_to_noc_xy,
        std::vector<std::uint16_t>& l1_bank_to_noc_xy);

private:
    // The real one also takes the launch and go messages it writes next to the firmware.
    void initialize_firmware(
        int device_id,
        const HalProgrammableCoreType& core_type,
        xy_pair virtual_core,
        std::optional<xy_pair> end_core);

    struct Tables {
        std::vector<std::int32_t> dram_bank_offset_map;
        std::vector<std::int32_t> l1_bank_offset_map;
        std::vector<std::uint16_t> dram_bank_to_noc_xy;
        std::vector<std::uint16_t> l1_bank_to_noc_xy;
    };

    std::uint8_t num_hw_cqs_;
    std::size_t worker_l1_unreserved_start_;
    std::vector<std::uint32_t> l1_bank_remap_;
    std::map<int, Tables> tables_;
};

void RiscFirmwareInitializer::run_async_build_phase(const std::set<int>& device_ids) {
    // The per-chip tables are created here, single-threaded; each worker fills its own.
    std::vector<std::pair<int, Tables*>> refs;
    for (const int id : device_ids) {
        refs.emplace_back(id, &tables_[id]);
    }
    std::vector<std::future<void>> pending;
    pending.reserve(refs.size());
    for (const auto& [id, t] : refs) {
        pending.push_back(std::async(std::launch::async, [this, id, t] {
            generate_device_bank_to_noc_tables(
                id, t->dram_bank_offset_map, t->l1_bank_offset_map, t->dram_bank_to_noc_xy, t->l1_bank_to_noc_xy);
        }));
    }
    for (auto& f : pending) {
        f.get();
    }
}

TT_REAL_PATH void RiscFirmwareInitializer::run_launch_phase(const std::set<int>& device_ids) {
    // One chip after the other, on the calling thread.
    for (const int id : device_ids) {
        initialize_and_launch_firmware(id);
    }
}

TT_REAL_PATH void RiscFirmwareInitializer::initialize_and_launch_firmware(int device_id) {
    // Tensix firmware once, multicast over the worker grid; then each active ethernet core.
    initialize_firmware(device_id, HalProgrammableCoreType::TENSIX, kWorkerGridStart, kWorkerGridEnd);
    for (const xy_pair& eth : kActiveEthCores) {
        initialize_firmware(device_id, HalProgrammableCoreType::ACTIVE_ETH, eth, std::nullopt);
    }
}

TT_REAL_PATH void RiscFirmwareInitializer::initialize_firmware(
    int device_id, const HalProgrammableCoreType& core_type, xy_pair virtual_core, std::optional<xy_pair> end_core) {
    // Hal::get_programmable_core_type_index: the enum's value.
    const auto core_type_idx = static_cast<std::uint32_t>(core_type);
    MetalEnvImpl& env = metal_env().impl();
    switch (core_type) {
        case HalProgrammableCoreType::TENSIX:
            // One multicast per RISC processor.
            for (const RiscFirmware& fw : kTensixFirmware) {
                const ll_api::memory binary(fw.bytes, 0xF000 + fw.processor_type);
                llrt::test_load_multicast_write_risc_binary(
                    env, binary, device_id, virtual_core, end_core.value_or(virtual_core), core_type_idx,
                    static_cast<std::uint32_t>(fw.processor_class), fw.processor_type);
            }
            break;
        case HalProgrammableCoreType::ACTIVE_ETH: {
            const RiscFirmware& fw = kActiveEthFirmware;
            const ll_api::memory binary(fw.bytes, 0xE000 + fw.processor_type);
            llrt::test_load_write_read_risc_binary(
                env, binary, device_id, virtual_core, core_type_idx, static_cast<std::uint32_t>(fw.processor_class),
                fw.processor_type);
            break;
        }
        default:
            break;
    }
}

TT_PROBED void RiscFirmwareInitializer::generate_device_bank_to_noc_tables(
    int device_id,
    std::vector<std::int32_t>& dram_bank_offset_map,
    std::vector<std::int32_t>& l1_bank_offset_map,
    std::vector<std::uint16_t>& dram_bank_to_noc_xy,
    std::vector<std::uint16_t>& l1_bank_to_noc_xy) {
    const AllocatorConfig config = L1BankingAllocator::generate_config(
        device_id, num_hw_cqs_, kDefaultL1SmallSize, kDefaultTraceRegionSize, worker_l1_unreserved_start_,
        l1_bank_remap_);
    const L1BankingAllocator allocator(config);
    const std::size_t num_dram_banks = allocator.get_num_banks(BufferType::DRAM);
    const std::size_t num_l1_banks = allocator.get_num_banks(BufferType::L1);
    dram_bank_offset_map.assign(num_dram_banks, 0);
    dram_bank_to_noc_xy.clear();
    for (std::uint32_t bank_id = 0; bank_id < num_dram_banks; ++bank_id) {
        dram_bank_offset_map[bank_id] = static_cast<std::int32_t>(allocator.get_bank_offset(BufferType::DRAM, bank_id));
        dram_bank_to_noc_xy.push_back(static_cast<std::uint16_t>((bank_id % 2 == 0 ? 0 : 5) << 6 | bank_id));
    }
    l1_bank_offset_map.assign(num_l1_banks, 0);
    l1_bank_to_noc_xy.clear();
    for (std::uint32_t bank_id = 0; bank_id < num_l1_banks; ++bank_id) {
        l1_bank_offset_map[bank_id] = static_cast<std::int32_t>(allocator.get_bank_offset(BufferType::L1, bank_id));
        l1_bank_to_noc_xy.push_back(static_cast<std::uint16_t>((1 + bank_id / 8) << 6 | (1 + bank_id % 8)));
    }
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

namespace {

// "Writes" a binary: checksums it and counts it as the hardware would have seen it.
std::uint64_t checksum_binary(const ll_api::memory& mem, int chip_id, const tt::xy_pair& core, std::uint64_t salt) {
    std::uint64_t sum = static_cast<std::uint64_t>(chip_id) ^ (core.x << 8) ^ (core.y << 16) ^ salt;
    for (const auto word : mem.data()) {
        sum = sum * 31 + word;
    }
    return sum;
}

bool chip_in_range(int chip_id) { return chip_id >= 0 && chip_id < tt::tt_metal::kMaxDevices; }

void account_firmware(tt::tt_metal::MetalEnvImpl& env, const ll_api::memory& mem, int chip_id, std::uint32_t core_type_idx) {
    env.bytes_written.fetch_add(mem.size_bytes(), std::memory_order_relaxed);
    if (chip_in_range(chip_id) && core_type_idx < tt::tt_metal::kCoreTypes) {
        env.firmware_by_chip[chip_id][core_type_idx].add(mem.size_bytes());
    }
}

}  // namespace

// A kernel binary written to one core's L1 (slow dispatch, and the system kernels).
TT_PROBED void write_binary_to_address(
    tt::tt_metal::MetalEnvImpl& env,
    const ll_api::memory& mem,
    int chip_id,
    const tt::xy_pair& core,
    std::uint32_t address) {
    env.checksum.fetch_xor(checksum_binary(mem, chip_id, core, address), std::memory_order_relaxed);
    env.bytes_written.fetch_add(mem.size_bytes(), std::memory_order_relaxed);
    if (chip_in_range(chip_id)) {
        env.binaries_by_chip[chip_id].add(mem.size_bytes());
    }
}

// A RISC's firmware written to one core, then read back.
TT_PROBED void test_load_write_read_risc_binary(
    tt::tt_metal::MetalEnvImpl& env,
    const ll_api::memory& mem,
    int chip_id,
    const tt::xy_pair& core,
    std::uint32_t core_type_idx,
    std::uint32_t processor_class_idx,
    std::uint32_t processor_type_idx) {
    const std::uint64_t salt = (std::uint64_t{core_type_idx} << 32) ^ (processor_class_idx << 8) ^ processor_type_idx;
    const std::uint64_t written = checksum_binary(mem, chip_id, core, salt);
    // Read back and compared, as the real function does.
    if (checksum_binary(mem, chip_id, core, salt) != written) {
        return;
    }
    env.checksum.fetch_xor(written, std::memory_order_relaxed);
    account_firmware(env, mem, chip_id, core_type_idx);
}

// A RISC's firmware multicast to every core of [start_core, end_core]: one write.
TT_PROBED void test_load_multicast_write_risc_binary(
    tt::tt_metal::MetalEnvImpl& env,
    const ll_api::memory& mem,
    int chip_id,
    const tt::xy_pair& start_core,
    const tt::xy_pair& end_core,
    std::uint32_t core_type_idx,
    std::uint32_t processor_class_idx,
    std::uint32_t processor_type_idx) {
    const std::uint64_t salt = (std::uint64_t{core_type_idx} << 32) ^ (processor_class_idx << 8) ^ processor_type_idx ^
                               (end_core.x << 40) ^ (end_core.y << 48);
    env.checksum.fetch_xor(checksum_binary(mem, chip_id, start_core, salt), std::memory_order_relaxed);
    account_firmware(env, mem, chip_id, core_type_idx);
}

}  // namespace llrt

namespace tt_metal {

// A kernel: its binaries (one per RISC it runs on) and the logical cores it is placed on.
class Kernel {
public:
    Kernel(std::vector<ll_api::memory> binaries, std::vector<xy_pair> logical_cores) :
        binaries_(std::move(binaries)), logical_cores_(std::move(logical_cores)) {}
    virtual ~Kernel() = default;
    Kernel(const Kernel&) = delete;
    Kernel& operator=(const Kernel&) = delete;

    // Slow dispatch: writes the kernel's binaries to one core, at base_address + the
    // offset of each processor's kernel text.
    virtual void configure(
        IDevice* device, const xy_pair& logical_core, std::uint32_t base_address, const std::uint32_t offsets[]) const = 0;

    const std::vector<ll_api::memory>& binaries() const { return binaries_; }
    const std::vector<xy_pair>& logical_cores() const { return logical_cores_; }
    bool is_on_core(const xy_pair& core) const {
        return std::find(logical_cores_.begin(), logical_cores_.end(), core) != logical_cores_.end();
    }
    std::size_t binary_size_bytes() const {
        std::size_t total = 0;
        for (const auto& b : binaries_) {
            total += b.size_bytes();
        }
        return total;
    }

protected:
    // The binaries of a kernel that has one (data movement, ethernet).
    static std::vector<ll_api::memory> single(ll_api::memory binary) {
        std::vector<ll_api::memory> v;
        v.push_back(std::move(binary));
        return v;
    }

private:
    std::vector<ll_api::memory> binaries_;
    std::vector<xy_pair> logical_cores_;
};

// A data-movement kernel: one binary, for one of a Tensix core's data-movement RISCs.
class DataMovementKernel final : public Kernel {
public:
    DataMovementKernel(ll_api::memory binary, std::vector<xy_pair> logical_cores, std::uint32_t processor = 0) :
        Kernel(single(std::move(binary)), std::move(logical_cores)), processor_(processor) {}

    void configure(
        IDevice* device,
        const xy_pair& logical_core,
        std::uint32_t base_address,
        const std::uint32_t offsets[]) const override;

private:

    std::uint32_t processor_;
};

// An ethernet kernel: one binary, for an ethernet core's RISC.
class EthernetKernel final : public Kernel {
public:
    EthernetKernel(ll_api::memory binary, std::vector<xy_pair> logical_cores, bool idle = false) :
        Kernel(single(std::move(binary)), std::move(logical_cores)), idle_(idle) {}

    void configure(
        IDevice* device,
        const xy_pair& logical_core,
        std::uint32_t base_address,
        const std::uint32_t offsets[]) const override;

private:
    bool idle_;
};

TT_REAL_PATH void DataMovementKernel::configure(
    IDevice* device, const xy_pair& logical_core, std::uint32_t base_address, const std::uint32_t offsets[]) const {
    // The stand-in chip has no coordinate translation: the logical core is the one written.
    llrt::write_binary_to_address(
        metal_env().impl(), binaries().front(), device->id(), logical_core, base_address + offsets[processor_]);
}

TT_REAL_PATH void EthernetKernel::configure(
    IDevice* device, const xy_pair& logical_core, std::uint32_t base_address, const std::uint32_t offsets[]) const {
    // As in tt-metal: an idle ethernet core gets its kernel through the RISC loader (core type
    // IDLE_ETH); an active one, the fabric routers here, in its kernel-config buffer.
    if (idle_) {
        llrt::test_load_write_read_risc_binary(
            metal_env().impl(), binaries().front(), device->id(), logical_core,
            static_cast<std::uint32_t>(HalProgrammableCoreType::IDLE_ETH), 0, 0);
        return;
    }
    llrt::write_binary_to_address(
        metal_env().impl(), binaries().front(), device->id(), logical_core, base_address + offsets[0]);
}

namespace detail {

// A program: its kernels and where their binaries go. In fast dispatch the binaries
// are read from the device buffer its mesh workload placed them in.
class ProgramImpl {
public:
    explicit ProgramImpl(std::uint32_t kernel_config_base) : kernel_config_base_(kernel_config_base) {}

    void add_kernel(std::shared_ptr<Kernel> kernel) { kernels_.push_back(std::move(kernel)); }

    // Every core some kernel is placed on, in placement order.
    std::vector<xy_pair> logical_cores() const {
        std::vector<xy_pair> cores;
        for (const auto& k : kernels_) {
            for (const xy_pair& c : k->logical_cores()) {
                if (std::find(cores.begin(), cores.end(), c) == cores.end()) {
                    cores.push_back(c);
                }
            }
        }
        return cores;
    }
    std::vector<const Kernel*> kernels_on_core(const xy_pair& core) const {
        std::vector<const Kernel*> on;
        for (const auto& k : kernels_) {
            if (k->is_on_core(core)) {
                on.push_back(k.get());
            }
        }
        return on;
    }
    // The program's binaries as packed into a kernel-binary buffer: each kernel's once.
    std::size_t binary_size_bytes() const {
        std::size_t total = 0;
        for (const auto& k : kernels_) {
            total += k->binary_size_bytes();
        }
        return total;
    }

    std::uint32_t kernel_config_base() const { return kernel_config_base_; }
    const std::uint32_t* kernel_text_offsets() const { return kernel_text_offsets_.data(); }
    // A view of the buffer its binaries were placed in (it owns no memory).
    void set_kernels_bin_buffer(DeviceAddr address) { kernels_bin_buffer_ = address; }
    DeviceAddr kernels_bin_buffer() const { return kernels_bin_buffer_; }

private:
    std::vector<std::shared_ptr<Kernel>> kernels_;
    std::uint32_t kernel_config_base_;
    // Per processor (BRISC, NCRISC, TRISC0..2): where its kernel text starts.
    std::array<std::uint32_t, 5> kernel_text_offsets_{0x0, 0x4000, 0x8000, 0xA000, 0xC000};
    DeviceAddr kernels_bin_buffer_ = 0;
};

}  // namespace detail

class Program {
public:
    explicit Program(std::uint32_t kernel_config_base = kProgramKernelAddr) :
        pimpl_(std::make_shared<detail::ProgramImpl>(kernel_config_base)) {}

    detail::ProgramImpl& impl() { return *pimpl_; }
    const detail::ProgramImpl& impl() const { return *pimpl_; }

private:
    std::shared_ptr<detail::ProgramImpl> pimpl_;
};

namespace slow_dispatch {

// Writes every kernel of the program to every core it is placed on, from the host.
TT_REAL_PATH void ConfigureDeviceWithProgram(IDevice& device, Program& program, bool /*force_slow_dispatch*/) {
    const detail::ProgramImpl& impl = program.impl();
    for (const xy_pair& core : impl.logical_cores()) {
        for (const Kernel* kernel : impl.kernels_on_core(core)) {
            kernel->configure(&device, core, impl.kernel_config_base(), impl.kernel_text_offsets());
        }
    }
}

// Configures the program on the device, then (on hardware) sends the cores their go signal.
TT_REAL_PATH void LaunchProgramAsync(IDevice& device, Program& program, bool /*wait_until_cores_done*/) {
    ConfigureDeviceWithProgram(device, program, false);
}

}  // namespace slow_dispatch

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
    AllocatorImpl* allocator_impl() const override { return allocator_.get(); }

    bool initialize(
        std::uint8_t num_hw_cqs,
        std::size_t l1_small_size,
        std::size_t trace_region_size,
        std::size_t worker_l1_size,
        std::span<const std::uint32_t> l1_bank_remap,
        bool minimal);
    std::unique_ptr<AllocatorImpl> initialize_allocator(
        std::size_t l1_small_size,
        std::size_t trace_region_size,
        std::size_t worker_l1_unreserved_start,
        std::span<const std::uint32_t> l1_bank_remap);
    void configure_fabric();
    void configure_command_queue_programs(DispatchTopology* topology);

    std::uint8_t num_hw_cqs() const { return num_hw_cqs_; }
    std::uint64_t next_cb_address(std::uint64_t size);
    void reset_cb_addresses();

private:
    MetalEnv* env_;
    MetalContext* context_;
    int id_;
    std::uint8_t num_hw_cqs_;
    bool closed_ = false;
    std::atomic<bool> fabric_configured_{false};
    std::unique_ptr<AllocatorImpl> allocator_;
    std::mutex cb_mutex_;
    std::uint64_t cb_cursor_;
};

namespace {

constexpr std::uint64_t kCbRegionBase = 0x40000;

}  // namespace

TT_PROBED Device::Device(
    MetalEnv* env,
    MetalContext* context,
    int device_id,
    std::uint8_t num_hw_cqs,
    std::size_t l1_small_size,
    std::size_t trace_region_size,
    std::span<const std::uint32_t> l1_bank_remap,
    bool minimal,
    std::uint32_t /*worker_thread_core*/,
    std::uint32_t /*completion_queue_reader_core*/,
    std::size_t worker_l1_size) :
    env_(env), context_(context), id_(device_id), num_hw_cqs_(num_hw_cqs), cb_cursor_(kCbRegionBase) {
    this->initialize(num_hw_cqs, l1_small_size, trace_region_size, worker_l1_size, l1_bank_remap, minimal);
}

TT_PROBED bool Device::initialize(
    std::uint8_t /*num_hw_cqs*/,
    std::size_t l1_small_size,
    std::size_t trace_region_size,
    std::size_t worker_l1_size,
    std::span<const std::uint32_t> l1_bank_remap,
    bool /*minimal*/) {
    // The chip's own allocator, built while the device is initialised.
    allocator_ = this->initialize_allocator(
        l1_small_size, trace_region_size, worker_l1_unreserved_start(worker_l1_size), l1_bank_remap);
    std::lock_guard<std::mutex> lock(g_live_mutex);
    g_live_chips.insert(id_);
    return true;
}

TT_PROBED std::unique_ptr<AllocatorImpl> Device::initialize_allocator(
    std::size_t l1_small_size,
    std::size_t trace_region_size,
    std::size_t worker_l1_unreserved_start,
    std::span<const std::uint32_t> l1_bank_remap) {
    const AllocatorConfig config = L1BankingAllocator::generate_config(
        this->id(), this->num_hw_cqs(), l1_small_size, trace_region_size, worker_l1_unreserved_start,
        {l1_bank_remap.begin(), l1_bank_remap.end()});
    // Constructed in place, as tt-metal's code compiles to (no make_unique call between).
    return std::unique_ptr<AllocatorImpl>(new L1BankingAllocator(config));
}

TT_PROBED bool Device::close() {
    if (closed_) {
        return false;
    }
    // The chip's allocator goes with it: its banks are cleared, not freed buffer by buffer.
    allocator_.reset();
    closed_ = true;
    std::lock_guard<std::mutex> lock(g_live_mutex);
    g_live_chips.erase(id_);
    return true;
}

TT_PROBED void Device::configure_fabric() {
    g_fabric_configs_started.fetch_add(1);
    // The fabric program: a router kernel on each active ethernet core.
    Program fabric(kFabricKernelAddr);
    for (std::size_t i = 0; i < std::size(kActiveEthCores); ++i) {
        fabric.impl().add_kernel(std::make_shared<EthernetKernel>(
            ll_api::memory(kFabricBinaryBytes, 0xFAB0 + static_cast<std::uint32_t>(i) + id_),
            std::vector<xy_pair>{kActiveEthCores[i]}));
    }
    // The pause keeps the call open long enough for other threads' writes to overlap it.
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    slow_dispatch::ConfigureDeviceWithProgram(*this, fabric, true);
    fabric_configured_ = true;
}

TT_PROBED void Device::configure_command_queue_programs(DispatchTopology* topology) {
    // The command queue's program: a prefetcher and a dispatcher kernel on the dispatch cores.
    Program command_queue(kDispatchKernelAddr);
    for (std::size_t i = 0; i < std::size(kDispatchCores); ++i) {
        command_queue.impl().add_kernel(std::make_shared<DataMovementKernel>(
            ll_api::memory(kDispatchBinaryBytes, 0xD150 + static_cast<std::uint32_t>(i) + id_),
            std::vector<xy_pair>{kDispatchCores[i]}));
    }
    slow_dispatch::ConfigureDeviceWithProgram(*this, command_queue, true);
    topology->programs_configured.fetch_add(1);
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

namespace distributed {

struct MeshDeviceConfig {
    std::size_t num_devices;
};

class MeshDevice;
class MeshWorkload;

// A mesh's command queue: fast dispatch (the dispatch firmware runs programs from
// device memory) or slow dispatch (the host writes every kernel to every core).
class MeshCommandQueue {
public:
    explicit MeshCommandQueue(MeshDevice* mesh) : mesh_(mesh) {}
    virtual ~MeshCommandQueue() = default;
    MeshCommandQueue(const MeshCommandQueue&) = delete;
    MeshCommandQueue& operator=(const MeshCommandQueue&) = delete;

    virtual void enqueue_mesh_workload(MeshWorkload& mesh_workload, bool blocking) = 0;
    MeshDevice* device() const { return mesh_; }
    std::uint64_t workloads_enqueued() const { return enqueued_.load(); }

protected:
    MeshDevice* mesh_;
    std::atomic<std::uint64_t> enqueued_{0};
};

class FDMeshCommandQueue final : public MeshCommandQueue {
public:
    using MeshCommandQueue::MeshCommandQueue;
    void enqueue_mesh_workload(MeshWorkload& mesh_workload, bool blocking) override;

private:
    std::mutex mutex_;
    // Where each launched program's binaries are, as its dispatch commands name them.
    std::vector<DeviceAddr> launched_binaries_;
};

class SDMeshCommandQueue final : public MeshCommandQueue {
public:
    using MeshCommandQueue::MeshCommandQueue;
    void enqueue_mesh_workload(MeshWorkload& mesh_workload, bool blocking) override;
};

// The mesh's state: its devices and its lock-step allocator, which places
// every mesh buffer once, at the same address on all of its chips.
class MeshDeviceImpl {
public:
    explicit MeshDeviceImpl(std::vector<std::unique_ptr<Device>> devices);

    bool initialize_impl(
        MeshDevice* pimpl_wrapper,
        std::uint8_t num_hw_cqs,
        std::size_t l1_small_size,
        std::size_t trace_region_size,
        std::size_t worker_l1_size,
        std::span<const std::uint32_t> l1_bank_remap,
        bool minimal);
    bool close_impl(MeshDevice* pimpl_wrapper);

    AllocatorImpl* allocator_impl() const { return allocator_.get(); }
    MeshCommandQueue& mesh_command_queue() const { return *command_queue_; }
    Device* reference_device() const { return devices_.at(0).get(); }
    std::size_t num_devices() const { return devices_.size(); }
    Device* device(std::size_t index) const { return devices_.at(index).get(); }
    DeviceManager& device_manager() { return manager_; }

private:
    std::vector<std::unique_ptr<Device>> devices_;
    DeviceManager manager_;
    std::unique_ptr<AllocatorImpl> allocator_;
    std::unique_ptr<MeshCommandQueue> command_queue_;
    MeshDevice* initialized_for_ = nullptr;
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

    MeshDeviceImpl& impl() { return *pimpl_; }
    std::size_t num_devices() const { return pimpl_->num_devices(); }
    Device* device(std::size_t index) const { return pimpl_->device(index); }
    AllocatorImpl* allocator_impl() const { return pimpl_->allocator_impl(); }
    MeshCommandQueue& mesh_command_queue() const { return pimpl_->mesh_command_queue(); }

private:
    explicit MeshDevice(std::unique_ptr<MeshDeviceImpl> pimpl) : pimpl_(std::move(pimpl)) {}

    std::unique_ptr<MeshDeviceImpl> pimpl_;
    bool closed_ = false;
};

MeshDeviceImpl::MeshDeviceImpl(std::vector<std::unique_ptr<Device>> devices) : devices_(std::move(devices)) {
    std::vector<Device*> raw;
    for (auto& d : devices_) {
        raw.push_back(d.get());
    }
    manager_.adopt(std::move(raw));
}

TT_PROBED bool MeshDeviceImpl::initialize_impl(
    MeshDevice* pimpl_wrapper,
    std::uint8_t /*num_hw_cqs*/,
    std::size_t /*l1_small_size*/,
    std::size_t /*trace_region_size*/,
    std::size_t /*worker_l1_size*/,
    std::span<const std::uint32_t> /*l1_bank_remap*/,
    bool /*minimal*/) {
    if (devices_.empty() || allocator_ != nullptr) {
        return false;
    }
    // The lock-step allocator manages what the reference device's allocator does.
    allocator_ = std::unique_ptr<AllocatorImpl>(new L1BankingAllocator(reference_device()->allocator_impl()->get_config()));
    // The command queue of the dispatch mode the runtime options name.
    if (metal_env().impl().get_rtoptions().get_fast_dispatch()) {
        command_queue_ = std::make_unique<FDMeshCommandQueue>(pimpl_wrapper);
    } else {
        command_queue_ = std::make_unique<SDMeshCommandQueue>(pimpl_wrapper);
    }
    initialized_for_ = pimpl_wrapper;
    return true;
}

bool MeshDeviceImpl::close_impl(MeshDevice* pimpl_wrapper) {
    if (pimpl_wrapper != initialized_for_) {
        return false;
    }
    // The mesh's allocator first: every mesh buffer still allocated is released.
    if (allocator_ != nullptr) {
        allocator_->deallocate_buffers();
        allocator_.reset();
    }
    // Then the devices it opened.
    std::vector<IDevice*> devices;
    for (auto& d : devices_) {
        devices.push_back(d.get());
    }
    return manager_.close_devices(devices, true);
}

TT_PROBED std::shared_ptr<MeshDevice> MeshDevice::create(
    const MeshDeviceConfig& config,
    std::size_t l1_small_size,
    std::size_t trace_region_size,
    std::size_t num_command_queues,
    const DispatchCoreConfig& /*dispatch_core_config*/,
    std::span<const std::uint32_t> l1_bank_remap,
    std::size_t worker_l1_size) {
    const auto num_hw_cqs = static_cast<std::uint8_t>(num_command_queues);
    std::set<int> device_ids;
    for (std::size_t i = 0; i < config.num_devices; ++i) {
        device_ids.insert(static_cast<int>(i));
    }
    // MetalContext::initialize: the firmware's build phase (bank tables per chip),
    // then its launch phase (every chip's firmware), before any Device exists.
    RiscFirmwareInitializer firmware(
        num_hw_cqs, worker_l1_unreserved_start(worker_l1_size), {l1_bank_remap.begin(), l1_bank_remap.end()});
    firmware.run_async_build_phase(device_ids);
    firmware.run_launch_phase(device_ids);
    // The devices (each with its own allocator).
    std::vector<std::unique_ptr<Device>> devices;
    for (const int id : device_ids) {
        devices.push_back(std::make_unique<Device>(
            &metal_env(),
            &metal_context(),
            id,
            num_hw_cqs,
            l1_small_size,
            trace_region_size,
            l1_bank_remap,
            false,
            0,
            0,
            worker_l1_size));
    }
    // The mesh over them, and its lock-step allocator.
    std::shared_ptr<MeshDevice> mesh(new MeshDevice(std::make_unique<MeshDeviceImpl>(std::move(devices))));
    mesh->pimpl_->initialize_impl(
        mesh.get(), num_hw_cqs, l1_small_size, trace_region_size, worker_l1_size, l1_bank_remap, false);
    mesh->pimpl_->device_manager().initialize_fabric_and_dispatch_fw();
    return mesh;
}

TT_PROBED bool MeshDevice::close() {
    if (closed_) {
        return false;
    }
    closed_ = true;
    return pimpl_->close_impl(this);
}

MeshDevice::~MeshDevice() {
    if (!closed_) {
        close();
    }
}

// A buffer of the mesh: placed once by its lock-step allocator, at the same
// address on every chip.
class MeshBuffer {
public:
    static std::shared_ptr<MeshBuffer> create(DeviceAddr size, DeviceAddr page_size, BufferType type, MeshDevice* mesh) {
        AllocatorImpl* allocator = mesh->allocator_impl();
        const DeviceAddr address = allocator == nullptr ? 0 : allocator->allocate_buffer(type, size, page_size);
        if (address == 0) {
            return nullptr;
        }
        return std::shared_ptr<MeshBuffer>(new MeshBuffer(mesh, type, address, size));
    }
    ~MeshBuffer() { deallocate(); }
    MeshBuffer(const MeshBuffer&) = delete;
    MeshBuffer& operator=(const MeshBuffer&) = delete;

    // Freed on the mesh's allocator while the mesh is open; after its close the
    // allocator already released everything (deallocate_all), so nothing is freed.
    void deallocate() {
        if (address_ == 0) {
            return;
        }
        if (AllocatorImpl* allocator = mesh_->allocator_impl(); allocator != nullptr) {
            allocator->deallocate_buffer(type_, address_);
        }
        address_ = 0;
    }
    DeviceAddr address() const { return address_; }
    DeviceAddr size() const { return size_; }

private:
    MeshBuffer(MeshDevice* mesh, BufferType type, DeviceAddr address, DeviceAddr size) :
        mesh_(mesh), type_(type), address_(address), size_(size) {}

    MeshDevice* mesh_;
    BufferType type_;
    DeviceAddr address_;
    DeviceAddr size_;
};

// A workload: a program over the whole mesh. In fast dispatch its binaries are
// placed in one kernel-binary buffer (DRAM, on the mesh's lock-step allocator), which
// lives as long as the workload.
class MeshWorkloadImpl {
public:
    explicit MeshWorkloadImpl(Program program) : program_(std::move(program)) {}
    MeshWorkloadImpl(const MeshWorkloadImpl&) = delete;
    MeshWorkloadImpl& operator=(const MeshWorkloadImpl&) = delete;

    void load_binaries(MeshCommandQueue& mesh_cq);
    Program& program() { return program_; }
    const MeshBuffer* kernel_bin_buf() const { return kernel_bin_buf_.get(); }

private:
    Program program_;
    std::shared_ptr<MeshBuffer> kernel_bin_buf_;
};

class MeshWorkload {
public:
    explicit MeshWorkload(Program program) : pimpl_(std::make_unique<MeshWorkloadImpl>(std::move(program))) {}
    MeshWorkloadImpl& impl() { return *pimpl_; }

private:
    std::unique_ptr<MeshWorkloadImpl> pimpl_;
};

TT_PROBED void MeshWorkloadImpl::load_binaries(MeshCommandQueue& mesh_cq) {
    if (kernel_bin_buf_ != nullptr) {
        return;  // placed by an earlier enqueue
    }
    // One buffer for the whole mesh, as large as the program's binaries.
    kernel_bin_buf_ = MeshBuffer::create(
        program_.impl().binary_size_bytes(), kProgramPageSize, BufferType::DRAM, mesh_cq.device());
    if (kernel_bin_buf_ == nullptr) {
        return;
    }
    // The binaries are then written into it through the command queue (not
    // write_binary_to_address), and the program gets a view of it.
    program_.impl().set_kernels_bin_buffer(kernel_bin_buf_->address());
}

// The dispatch commands name the program's binary buffer; the dispatch firmware
// copies the binaries from there to the cores: the host writes none.
TT_PROBED void FDMeshCommandQueue::enqueue_mesh_workload(MeshWorkload& mesh_workload, bool /*blocking*/) {
    std::lock_guard<std::mutex> lock(mutex_);
    launched_binaries_.push_back(mesh_workload.impl().program().impl().kernels_bin_buffer());
    enqueued_.fetch_add(1);
}

// The host configures the program on every device of the mesh, kernel by kernel, core by core.
TT_PROBED void SDMeshCommandQueue::enqueue_mesh_workload(MeshWorkload& mesh_workload, bool /*blocking*/) {
    for (std::size_t i = 0; i < mesh_->num_devices(); ++i) {
        slow_dispatch::LaunchProgramAsync(*mesh_->device(i), mesh_workload.impl().program(), false);
    }
    enqueued_.fetch_add(1);
}

TT_REAL_PATH void EnqueueMeshWorkload(MeshCommandQueue& mesh_cq, MeshWorkload& mesh_workload, bool blocking) {
    // Fast dispatch first places the binaries in device memory.
    if (metal_env().impl().get_rtoptions().get_fast_dispatch()) {
        mesh_workload.impl().load_binaries(mesh_cq);
    }
    mesh_cq.enqueue_mesh_workload(mesh_workload, blocking);
}

}  // namespace distributed
}  // namespace tt_metal
}  // namespace tt

// ---------------------------------------------------------------------------
// C-callable helpers for the driver program.

using tt::tt_metal::BufferType;
using tt::tt_metal::Device;
using tt::tt_metal::Program;
using tt::tt_metal::distributed::MeshDevice;
using tt::tt_metal::distributed::MeshWorkload;

struct standin_mesh {
    std::shared_ptr<MeshDevice> mesh;
    // Workloads enqueued through this handle, kept (as a program cache keeps them)
    // until the handle is closed; in fast dispatch each holds its kernel-binary buffer.
    std::vector<std::unique_ptr<MeshWorkload>> workloads;
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
    return new standin_mesh{std::move(mesh), {}};
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

// 1 in fast dispatch, 0 in slow dispatch (TT_METAL_SLOW_DISPATCH_MODE, as the library read it).
int standin_fast_dispatch(void) {
    return tt::tt_metal::metal_env().impl().get_rtoptions().get_fast_dispatch() ? 1 : 0;
}

// Firmware the library wrote to chip's cores of core_type (a HalProgrammableCoreType
// value) so far: writes (a multicast is one) and bytes. -1 on bad input.
int standin_firmware_written(int chip, int core_type, unsigned long long* count, unsigned long long* bytes) {
    if (chip < 0 || chip >= tt::tt_metal::kMaxDevices || core_type < 0 ||
        static_cast<std::size_t>(core_type) >= tt::tt_metal::kCoreTypes || count == nullptr || bytes == nullptr) {
        return -1;
    }
    const auto& t = tt::tt_metal::metal_env().impl().firmware_by_chip[chip][core_type];
    *count = t.count.load();
    *bytes = t.bytes.load();
    return 0;
}

// Enqueues a workload on the whole mesh through EnqueueMeshWorkload: one program with
// one data-movement kernel of `bytes` on two worker cores. The workload is kept until
// standin_close_mesh. Per device index, written/written_bytes get the kernel binaries
// the library wrote to that chip's cores (slow dispatch) and buffer_bytes the size of
// the workload's kernel-binary buffer on that chip (fast dispatch: one mesh buffer,
// on every chip). Returns 0, or -1.
int standin_enqueue_program(
    standin_mesh* h,
    unsigned long long bytes,
    unsigned long long* written,
    unsigned long long* written_bytes,
    unsigned long long* buffer_bytes) {
    if (h == nullptr || !valid_binary_size(bytes) || written == nullptr || written_bytes == nullptr ||
        buffer_bytes == nullptr) {
        return -1;
    }
    auto& env = tt::tt_metal::metal_env().impl();
    const std::size_t n = h->mesh->num_devices();
    std::vector<std::pair<std::uint64_t, std::uint64_t>> before(n);
    for (std::size_t d = 0; d < n; ++d) {
        const auto& t = env.binaries_by_chip[h->mesh->device(d)->id()];
        before[d] = {t.count.load(), t.bytes.load()};
    }
    const std::uint32_t k = tt::tt_metal::g_app_core_cursor.fetch_add(2);
    Program program(tt::tt_metal::kProgramKernelAddr);
    program.impl().add_kernel(std::make_shared<tt::tt_metal::DataMovementKernel>(
        ll_api::memory(bytes, 0xB000 + k),
        std::vector<tt::xy_pair>{{1 + k % 8, 1 + (k / 8) % 8}, {1 + (k + 1) % 8, 1 + ((k + 1) / 8) % 8}}));
    auto workload = std::make_unique<MeshWorkload>(std::move(program));
    tt::tt_metal::distributed::EnqueueMeshWorkload(h->mesh->mesh_command_queue(), *workload, false);
    const bool fast = standin_fast_dispatch() == 1;
    const auto* buffer = workload->impl().kernel_bin_buf();
    if (fast && buffer == nullptr) {
        return -1;
    }
    for (std::size_t d = 0; d < n; ++d) {
        const auto& t = env.binaries_by_chip[h->mesh->device(d)->id()];
        written[d] = t.count.load() - before[d].first;
        written_bytes[d] = t.bytes.load() - before[d].second;
        buffer_bytes[d] = buffer == nullptr ? 0 : buffer->size();
    }
    h->workloads.push_back(std::move(workload));
    return 0;
}

// A mesh buffer: placed once by the mesh's lock-step allocator, at the same
// address on every chip. buffer_type is a tt::tt_metal::BufferType value.
// Returns the address, 0 on failure.
unsigned long long standin_alloc_buffer(standin_mesh* h, int buffer_type, unsigned long long size) {
    tt::tt_metal::AllocatorImpl* allocator = h == nullptr ? nullptr : h->mesh->allocator_impl();
    if (allocator == nullptr) {
        return 0;
    }
    return allocator->allocate_buffer(static_cast<BufferType>(buffer_type), size, std::min<unsigned long long>(size, 2048));
}

int standin_free_buffer(standin_mesh* h, int buffer_type, unsigned long long address) {
    tt::tt_metal::AllocatorImpl* allocator = h == nullptr ? nullptr : h->mesh->allocator_impl();
    if (allocator == nullptr || !allocator->deallocate_buffer(static_cast<BufferType>(buffer_type), address)) {
        return -1;
    }
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

// Destroys the handle's workloads (freeing their kernel-binary buffers), then
// MeshDevice::close(), then releases the handle. Returns 0 if every device closed.
int standin_close_mesh(standin_mesh* h) {
    if (h == nullptr) {
        return -1;
    }
    h->workloads.clear();
    const bool ok = h->mesh->close();
    delete h;
    return ok ? 0 : -1;
}

}  // extern "C"
