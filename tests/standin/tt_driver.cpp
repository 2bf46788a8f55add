// Driver for the libtt_metal.so stand-in: opens a mesh, loads application
// kernels (optionally concurrently with fabric bring-up), enqueues programs
// (fast or slow dispatch), exercises the allocator, prints a DRIVER oracle line
// and ends the way it is told to.

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <latch>
#include <string>
#include <thread>
#include <utility>
#include <vector>

extern "C" {
struct standin_mesh;
standin_mesh* standin_open_mesh(int num_devices);
unsigned long long standin_fabric_configs_started(void);
long long standin_write_app_kernel(int chip, unsigned long long bytes);
int standin_fast_dispatch(void);
int standin_firmware_written(int chip, int core_type, unsigned long long* count, unsigned long long* bytes);
int standin_enqueue_program(
    standin_mesh* h,
    unsigned long long bytes,
    unsigned long long* written,
    unsigned long long* written_bytes,
    unsigned long long* buffer_bytes);
unsigned long long standin_alloc_buffer(standin_mesh* h, int buffer_type, unsigned long long size);
int standin_free_buffer(standin_mesh* h, int buffer_type, unsigned long long address);
unsigned long long standin_alloc_cb(standin_mesh* h, int device, unsigned long long size);
int standin_free_cbs(standin_mesh* h, int device);
int standin_close_mesh(standin_mesh* h);
}

namespace {

// tt::tt_metal::BufferType values.
constexpr int kDram = 0;
constexpr int kL1 = 1;
// tt::tt_metal::HalProgrammableCoreType values and the names the oracle gives them.
constexpr const char* kCoreTypeNames[] = {"tensix", "active_eth", "idle_eth"};

enum class End { Close, Exit, Sigkill, Abort };

struct Options {
    unsigned long long devices = 1;
    unsigned long long app_kernels = 3;
    unsigned long long app_kernel_bytes = 12288;
    unsigned long long app_threads = 1;
    unsigned long long writer_threads = 1;
    unsigned long long program_kernels = 0;
    unsigned long long buffers = 0;
    unsigned long long cbs = 0;
    End end = End::Close;
    const char* end_name = "close";
    std::string wait_file;
    unsigned long long hold_ms = 0;
    unsigned long long repeat = 1;
    bool slow_dispatch = false;
};

const char kUsage[] =
    "usage: tt_driver [options]\n"
    "  --devices N            chips in the mesh (1..64, default 1)\n"
    "  --app-kernels M        direct application kernels per device (default 3)\n"
    "  --app-kernel-bytes B   bytes per application kernel, multiple of 4 (default 12288)\n"
    "  --app-threads T        loader threads; T>1 loads during fabric bring-up (default 1)\n"
    "  --writer-threads W     threads writing the application kernels at once, after open (default 1)\n"
    "  --program-kernels K    programs per open, enqueued on the whole mesh (default 0)\n"
    "  --slow-dispatch        set TT_METAL_SLOW_DISPATCH_MODE=1 (no value)\n"
    "  --buffers K            mesh buffers per open, all but the first freed (default 0)\n"
    "  --cbs K                circular buffers per device, then all freed (default 0)\n"
    "  --end close|exit|sigkill|abort   how the last run ends (default close)\n"
    "  --wait-file PATH       wait until PATH exists before starting\n"
    "  --hold-ms MS           sleep before the end action (default 0)\n"
    "  --repeat R             open/workload/close cycles (default 1)\n";

[[noreturn]] void usage_error(const char* fmt, const char* arg) {
    std::fprintf(stderr, "tt_driver: ");
    std::fprintf(stderr, fmt, arg);
    std::fprintf(stderr, "\n%s", kUsage);
    std::exit(2);
}

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "tt_driver: %s\n", what);
    std::exit(1);
}

unsigned long long parse_number(const char* flag, const char* text, unsigned long long lo, unsigned long long hi) {
    if (text == nullptr || *text == '\0' || *text == '-' || *text == '+') {
        usage_error("bad value for %s", flag);
    }
    errno = 0;
    char* end = nullptr;
    const unsigned long long v = std::strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi) {
        usage_error("bad value for %s", flag);
    }
    return v;
}

bool is_known_flag(const std::string& flag) {
    static const char* const kFlags[] = {
        "--devices", "--app-kernels", "--app-kernel-bytes", "--app-threads", "--writer-threads", "--program-kernels",
        "--buffers", "--cbs",         "--end",              "--wait-file",   "--hold-ms",        "--repeat",
    };
    for (const char* known : kFlags) {
        if (flag == known) {
            return true;
        }
    }
    return false;
}

Options parse_args(int argc, char** argv) {
    Options o;
    constexpr unsigned long long kMax = 1ull << 32;
    for (int i = 1; i < argc; ++i) {
        std::string flag = argv[i];
        const char* value = nullptr;
        if (flag == "-h" || flag == "--help") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        }
        if (flag == "--slow-dispatch") {
            o.slow_dispatch = true;
            continue;
        }
        if (!is_known_flag(flag.substr(0, flag.find('=')))) {
            usage_error("unknown flag %s", argv[i]);
        }
        if (const auto eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
            value = argv[i] + eq + 1;
            flag.resize(eq);
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            usage_error("missing value for %s", flag.c_str());
        }
        const char* f = flag.c_str();
        if (flag == "--devices") {
            o.devices = parse_number(f, value, 1, 64);
        } else if (flag == "--app-kernels") {
            o.app_kernels = parse_number(f, value, 0, kMax);
        } else if (flag == "--app-kernel-bytes") {
            o.app_kernel_bytes = parse_number(f, value, 4, 1ull << 30);
            if (o.app_kernel_bytes % 4 != 0) {
                usage_error("%s must be a multiple of 4", f);
            }
        } else if (flag == "--app-threads") {
            o.app_threads = parse_number(f, value, 1, 256);
        } else if (flag == "--writer-threads") {
            o.writer_threads = parse_number(f, value, 1, 256);
        } else if (flag == "--program-kernels") {
            o.program_kernels = parse_number(f, value, 0, kMax);
        } else if (flag == "--buffers") {
            o.buffers = parse_number(f, value, 0, 4096);
        } else if (flag == "--cbs") {
            o.cbs = parse_number(f, value, 0, 4096);
        } else if (flag == "--end") {
            const std::string v = value;
            if (v == "close") {
                o.end = End::Close;
            } else if (v == "exit") {
                o.end = End::Exit;
            } else if (v == "sigkill") {
                o.end = End::Sigkill;
            } else if (v == "abort") {
                o.end = End::Abort;
            } else {
                usage_error("bad value for --end: %s", value);
            }
            o.end_name = value;
        } else if (flag == "--wait-file") {
            if (*value == '\0') {
                usage_error("empty path for %s", f);
            }
            o.wait_file = value;
        } else if (flag == "--hold-ms") {
            o.hold_ms = parse_number(f, value, 0, 24ull * 3600 * 1000);
        } else if (flag == "--repeat") {
            o.repeat = parse_number(f, value, 1, 1000000);
        } else {
            usage_error("unknown flag %s", f);
        }
    }
    if (o.app_threads > 1 && o.writer_threads > 1) {
        usage_error("%s", "--app-threads and --writer-threads cannot both be above 1");
    }
    return o;
}

void wait_for_file(const std::string& path) {
    struct stat st;
    while (::stat(path.c_str(), &st) != 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}

struct Count {
    std::atomic<unsigned long long> count{0};
    std::atomic<unsigned long long> bytes{0};

    void add(unsigned long long n, unsigned long long b) {
        count += n;
        bytes += b;
    }
    bool operator==(const Count& o) const { return count == o.count && bytes == o.bytes; }
};

// What the driver actually got loaded, per chip id, over all runs.
struct Tally {
    explicit Tally(std::size_t devices) :
        written(devices), program_buffers(devices), program_kernels(devices), firmware(devices) {}
    // Application kernels written to cores one by one: direct writes and slow-dispatch programs.
    std::vector<Count> written;
    // Fast-dispatch programs' kernel-binary buffers on the chip (one per program).
    std::vector<Count> program_buffers;
    // Programs enqueued on the chip.
    std::vector<std::atomic<unsigned long long>> program_kernels;
    // Firmware per HalProgrammableCoreType, as the library wrote it (read at the end).
    std::vector<std::array<std::pair<unsigned long long, unsigned long long>, 3>> firmware;
    // Application loads after open (benchmark): from the first write to the last writer's end.
    long long workload_ns = 0;
    // The same loop's CPU time on its threads, summed: uprobe traps and their programs run in
    // the writing thread's context, so they count here, while time preempted by other work does not.
    std::atomic<long long> workload_cpu_ns{0};
};

// CPU time of the calling thread (user + system), ns.
long long thread_cpu_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<long long>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

// Loads job indices [first, first+stride, ...) of the devices*app_kernels jobs.
bool load_app_kernels(const Options& o, Tally& t, unsigned long long first, unsigned long long stride) {
    const unsigned long long jobs = o.devices * o.app_kernels;
    for (unsigned long long j = first; j < jobs; j += stride) {
        const int chip = static_cast<int>(j / o.app_kernels);
        const long long written = standin_write_app_kernel(chip, o.app_kernel_bytes);
        if (written < 0) {
            return false;
        }
        t.written[chip].add(1, static_cast<unsigned long long>(written));
    }
    return true;
}

// The application kernels written by o.writer_threads threads at once, each calling the
// library on its own thread (as tt-metal writes on its caller's thread), released together.
void write_concurrently(const Options& o, Tally& t) {
    std::latch ready(static_cast<std::ptrdiff_t>(o.writer_threads));
    std::latch go(1);
    std::atomic<bool> failed{false};
    std::vector<std::thread> writers;
    for (unsigned long long i = 0; i < o.writer_threads; ++i) {
        writers.emplace_back([&, i] {
            ready.count_down();
            go.wait();
            const long long cpu0 = thread_cpu_ns();
            if (!load_app_kernels(o, t, i, o.writer_threads)) {
                failed = true;
            }
            t.workload_cpu_ns += thread_cpu_ns() - cpu0;
        });
    }
    ready.wait();
    const auto t0 = std::chrono::steady_clock::now();
    go.count_down();
    for (auto& th : writers) {
        th.join();
    }
    t.workload_ns +=
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
    if (failed) {
        fail("application kernel write refused");
    }
}

standin_mesh* open_and_load(const Options& o, Tally& t) {
    if (o.app_threads == 1) {
        standin_mesh* mesh = standin_open_mesh(static_cast<int>(o.devices));
        if (mesh == nullptr) {
            fail("standin_open_mesh failed");
        }
        if (o.writer_threads > 1) {
            write_concurrently(o, t);
            return mesh;
        }
        // Timed for the probe-cost benchmark: nothing but probed writes happen in here.
        const long long cpu0 = thread_cpu_ns();
        const auto t0 = std::chrono::steady_clock::now();
        if (!load_app_kernels(o, t, 0, 1)) {
            fail("application kernel write refused");
        }
        t.workload_ns += std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::steady_clock::now() - t0)
                             .count();
        t.workload_cpu_ns += thread_cpu_ns() - cpu0;
        return mesh;
    }

    // Loader threads are released by the first configure_fabric() of this
    // open, when every Device already exists, so their writes overlap fabric
    // bring-up on the library's worker threads.
    const unsigned long long started_before = standin_fabric_configs_started();
    std::atomic<bool> give_up{false};
    std::atomic<bool> failed{false};
    std::vector<std::thread> loaders;
    for (unsigned long long i = 0; i < o.app_threads; ++i) {
        loaders.emplace_back([&, i] {
            while (standin_fabric_configs_started() == started_before) {
                if (give_up) {
                    return;
                }
                std::this_thread::sleep_for(std::chrono::microseconds(20));
            }
            if (!load_app_kernels(o, t, i, o.app_threads)) {
                failed = true;
            }
        });
    }
    standin_mesh* mesh = standin_open_mesh(static_cast<int>(o.devices));
    give_up = true;
    for (auto& th : loaders) {
        th.join();
    }
    if (mesh == nullptr) {
        fail("standin_open_mesh failed");
    }
    if (failed) {
        fail("application kernel write refused");
    }
    return mesh;
}

void run_workload(const Options& o, Tally& t, standin_mesh* mesh) {
    // Programs on the whole mesh: fast dispatch places each one's binaries in a
    // buffer, slow dispatch writes them to the cores of every chip.
    std::vector<unsigned long long> written(o.devices), written_bytes(o.devices), buffer_bytes(o.devices);
    for (unsigned long long k = 0; k < o.program_kernels; ++k) {
        if (standin_enqueue_program(mesh, o.app_kernel_bytes, written.data(), written_bytes.data(),
                                    buffer_bytes.data()) != 0) {
            fail("program enqueue refused");
        }
        for (unsigned long long d = 0; d < o.devices; ++d) {
            t.written[d].add(written[d], written_bytes[d]);
            if (buffer_bytes[d] > 0) {
                t.program_buffers[d].add(1, buffer_bytes[d]);
            }
            t.program_kernels[d] += 1;
        }
    }
    for (unsigned long long d = 0; d < o.devices; ++d) {
        const int dev = static_cast<int>(d);
        for (unsigned long long i = 0; i < o.cbs; ++i) {
            if (standin_alloc_cb(mesh, dev, 2048 * (i + 1)) == 0) {
                fail("circular buffer allocation failed");
            }
        }
        if (o.cbs > 0 && standin_free_cbs(mesh, dev) != 0) {
            fail("circular buffer free failed");
        }
    }
    // Mesh buffers (the mesh's lock-step allocator), once per open.
    std::vector<unsigned long long> addrs;
    for (unsigned long long i = 0; i < o.buffers; ++i) {
        const int type = i % 2 == 0 ? kDram : kL1;
        const unsigned long long addr = standin_alloc_buffer(mesh, type, 4096 * (i + 1));
        if (addr == 0) {
            fail("buffer allocation failed");
        }
        addrs.push_back(addr);
    }
    // The first buffer (DRAM, 4096 bytes) stays allocated.
    for (unsigned long long i = 1; i < addrs.size(); ++i) {
        if (standin_free_buffer(mesh, i % 2 == 0 ? kDram : kL1, addrs[i]) != 0) {
            fail("buffer free failed");
        }
    }
}

std::string count_json(unsigned long long count, unsigned long long bytes) {
    return "{\"count\":" + std::to_string(count) + ",\"bytes\":" + std::to_string(bytes) + "}";
}

void print_oracle(const Options& o, Tally& t) {
    // The firmware the library wrote to each chip, per core type.
    for (std::size_t d = 0; d < t.firmware.size(); ++d) {
        for (int c = 0; c < 3; ++c) {
            auto& [count, bytes] = t.firmware[d][c];
            if (standin_firmware_written(static_cast<int>(d), c, &count, &bytes) != 0) {
                fail("firmware tally refused");
            }
        }
    }
    // Every chip gets the same workload; a mismatch would make the line a lie.
    for (std::size_t d = 1; d < t.written.size(); ++d) {
        if (!(t.written[d] == t.written[0]) || !(t.program_buffers[d] == t.program_buffers[0]) ||
            t.program_kernels[d] != t.program_kernels[0] || t.firmware[d] != t.firmware[0]) {
            fail("per-device tallies differ");
        }
    }
    const Count& written = t.written[0];
    const Count& buffers = t.program_buffers[0];
    unsigned long long fw_count = 0;
    unsigned long long fw_bytes = 0;
    std::string by_core;
    for (int c = 0; c < 3; ++c) {
        const auto [count, bytes] = t.firmware[0][c];
        fw_count += count;
        fw_bytes += bytes;
        if (count > 0) {
            by_core += std::string(by_core.empty() ? "" : ",") + "\"" + kCoreTypeNames[c] + "\":" +
                       count_json(count, bytes);
        }
    }
    const std::string application = "{\"written\":" + count_json(written.count, written.bytes) +
                                    ",\"program_buffers\":" + count_json(buffers.count, buffers.bytes) + "}";
    const std::string firmware =
        "{\"count\":" + std::to_string(fw_count) + ",\"bytes\":" + std::to_string(fw_bytes) + ",\"by_core\":{" +
        by_core + "}}";
    // Who we run as: `tt-tracer run` under sudo must hand the command to the invoking user.
    gid_t groups[256];
    const int ngroups = ::getgroups(256, groups);
    std::string group_list;
    for (int i = 0; i < ngroups; ++i) {
        group_list += (i ? "," : "") + std::to_string(groups[i]);
    }
    std::printf(
        "DRIVER {\"pid\":%ld,\"devices\":%llu,\"dispatch\":\"%s\",\"app_kernels_per_device\":%llu,"
        "\"app_bytes_per_device\":%llu,\"program_kernels_per_device\":%llu,\"application_per_device\":%s,"
        "\"firmware_per_device\":%s,\"end\":\"%s\",\"uid\":%u,\"gid\":%u,\"groups\":[%s],"
        "\"writer_threads\":%llu,\"workload_ns\":%lld,\"workload_cpu_ns\":%lld}\n",
        static_cast<long>(::getpid()), o.devices, standin_fast_dispatch() == 1 ? "fast" : "slow",
        written.count.load() + buffers.count.load(), written.bytes.load() + buffers.bytes.load(),
        t.program_kernels[0].load(), application.c_str(), firmware.c_str(), o.end_name,
        static_cast<unsigned>(::getuid()), static_cast<unsigned>(::getgid()), group_list.c_str(),
        o.writer_threads, static_cast<long long>(t.workload_ns), static_cast<long long>(t.workload_cpu_ns.load()));
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
    const Options o = parse_args(argc, argv);
    // As the user would: tt-metal reads it when the library first starts up.
    if (o.slow_dispatch && ::setenv("TT_METAL_SLOW_DISPATCH_MODE", "1", 1) != 0) {
        fail("setenv failed");
    }
    if (!o.wait_file.empty()) {
        wait_for_file(o.wait_file);
    }

    Tally tally(o.devices);
    for (unsigned long long r = 0; r < o.repeat; ++r) {
        standin_mesh* mesh = open_and_load(o, tally);
        run_workload(o, tally, mesh);
        if (r + 1 < o.repeat) {
            if (standin_close_mesh(mesh) != 0) {
                fail("close failed");
            }
            continue;
        }

        print_oracle(o, tally);
        if (o.hold_ms > 0) {
            std::this_thread::sleep_for(std::chrono::milliseconds(o.hold_ms));
        }
        switch (o.end) {
            case End::Close:
                if (standin_close_mesh(mesh) != 0) {
                    fail("close failed");
                }
                return 0;
            case End::Exit:
                return 0;
            case End::Sigkill:
                std::raise(SIGKILL);
                break;
            case End::Abort:
                std::abort();
        }
    }
    return 0;
}
