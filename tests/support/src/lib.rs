//! Helpers shared by tt-tracer's tests (no-root and root) and by xtask: the symbol fixtures that
//! ship with the project, binutils run as an independent oracle, building the stand-in library,
//! paths an unprivileged user can reach, and the figures benchmarks quote (median).
//!
//! Nothing here depends on tt-tracer itself: the tests compare what tt-tracer says with what
//! these helpers find on their own.

pub mod prometheus;
pub mod tt_metal_shm;

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

/// The tt-metal releases whose symbol tables ship in `tests/fixtures/tt-metal-symbols`.
pub const FIXTURE_VERSIONS: [&str; 3] = ["0.62.2", "0.72.0", "0.81.1"];

/// The workspace root (this crate is `tests/support`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/support sits two levels below the workspace root")
        .to_path_buf()
}

/// Cargo's target directory ($CARGO_TARGET_DIR, else `target/` in the workspace).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                workspace_root().join(p)
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The real symbol table of `libtt_metal.so` of one tt-metal release (`objcopy
/// --only-keep-debug` of the PyPI library), decompressed once from
/// `tests/fixtures/tt-metal-symbols/libtt_metal-VERSION.debug.xz` into the target directory.
/// A missing or corrupt fixture fails the test: they are what proves the catalog on real
/// releases.
pub fn fixture(version: &str) -> PathBuf {
    let xz = workspace_root().join(format!(
        "tests/fixtures/tt-metal-symbols/libtt_metal-{version}.debug.xz"
    ));
    let out_dir = target_dir().join("fixtures");
    let out = out_dir.join(format!("libtt_metal-{version}.debug"));
    let fresh = |o: &Path| {
        let (Ok(src), Ok(dst)) = (fs::metadata(&xz), fs::metadata(o)) else {
            return false;
        };
        matches!((src.modified(), dst.modified()), (Ok(s), Ok(d)) if d >= s)
    };
    if fresh(&out) {
        return out;
    }
    let compressed =
        fs::read(&xz).unwrap_or_else(|e| panic!("fixture {} missing: {e}", xz.display()));
    let mut data = Vec::new();
    lzma_rs::xz_decompress(&mut &compressed[..], &mut data)
        .unwrap_or_else(|e| panic!("fixture {} is not valid xz: {e:?}", xz.display()));
    fs::create_dir_all(&out_dir).expect("creating the fixture directory");
    // Written under a unique name, then renamed: test binaries running at once never see half a file.
    let tmp = out_dir.join(format!(
        ".libtt_metal-{version}.debug.{}.{}",
        std::process::id(),
        monotonic_ns()
    ));
    fs::write(&tmp, &data).expect("writing the decompressed fixture");
    fs::rename(&tmp, &out).expect("placing the decompressed fixture");
    out
}

/// The lines of a text fixture under `tests/fixtures/` (`name` relative to it), decompressed in
/// memory when it ends in `.xz`. A missing or corrupt fixture fails the test.
pub fn fixture_lines(name: &str) -> Vec<String> {
    let path = workspace_root().join("tests/fixtures").join(name);
    let raw = fs::read(&path).unwrap_or_else(|e| panic!("fixture {} missing: {e}", path.display()));
    let text = if name.ends_with(".xz") {
        let mut data = Vec::new();
        lzma_rs::xz_decompress(&mut &raw[..], &mut data)
            .unwrap_or_else(|e| panic!("fixture {} is not valid xz: {e:?}", path.display()));
        data
    } else {
        raw
    };
    String::from_utf8(text)
        .unwrap_or_else(|e| panic!("fixture {} is not utf-8: {e}", path.display()))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Runs a tool and returns its stdout; any failure fails the test with the tool's stderr.
pub fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 tool output")
}

/// A defined symbol as binutils sees it.
#[derive(Debug, Clone)]
pub struct NmSymbol {
    pub address: u64,
    pub kind: char,
    pub mangled: String,
    /// What `nm -C` prints.
    pub demangled: String,
}

/// Every defined symbol of `path` from `nm` and `nm -C`, in symbol-table order (`-p`), so the two
/// listings pair up line by line. `dynamic` reads .dynsym (`-D`) instead of .symtab.
pub fn nm(path: &Path, dynamic: bool) -> Vec<NmSymbol> {
    let p = path.to_str().expect("utf-8 path");
    let mut args = vec!["-p", "--defined-only"];
    if dynamic {
        args.push("-D");
    }
    let plain = tool("nm", &[&args[..], &[p]].concat());
    let demangled = tool("nm", &[&args[..], &["-C", p]].concat());
    let split = |line: &str| {
        let (addr, rest) = line.split_once(' ').expect("nm line");
        let (kind, name) = rest.split_once(' ').expect("nm line");
        (
            u64::from_str_radix(addr, 16).expect("nm address"),
            kind.chars().next().expect("nm kind"),
            name.to_string(),
        )
    };
    let plain: Vec<_> = plain.lines().map(split).collect();
    let demangled: Vec<_> = demangled.lines().map(split).collect();
    assert_eq!(
        plain.len(),
        demangled.len(),
        "nm and nm -C list different symbols"
    );
    plain
        .into_iter()
        .zip(demangled)
        .map(|((address, kind, mangled), (a2, _, demangled))| {
            assert_eq!(address, a2);
            NmSymbol {
                address,
                kind,
                mangled,
                demangled,
            }
        })
        .collect()
}

/// (file offset, virtual address, size in file) of each PT_LOAD segment, from `readelf -lW`.
pub fn load_segments(path: &Path) -> Vec<(u64, u64, u64)> {
    let out = tool("readelf", &["-lW", path.to_str().expect("utf-8 path")]);
    let hex =
        |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("readelf number");
    out.lines()
        .map(str::split_whitespace)
        .filter_map(|mut w| {
            (w.next()? == "LOAD").then(|| {
                let v: Vec<&str> = w.collect();
                // Offset VirtAddr PhysAddr FileSiz MemSiz Flg... Align
                (hex(v[0]), hex(v[1]), hex(v[3]))
            })
        })
        .collect()
}

/// File offset of virtual address `addr`, from the PT_LOAD lines of `readelf -lW`.
pub fn file_offset_by_readelf(path: &Path, addr: u64) -> Option<u64> {
    load_segments(path)
        .into_iter()
        .find(|&(_, vaddr, filesz)| addr >= vaddr && addr - vaddr < filesz)
        .map(|(off, vaddr, _)| addr - vaddr + off)
}

/// The stand-in libtt_metal.so and its driver program.
#[derive(Debug, Clone)]
pub struct Standin {
    pub lib: PathBuf,
    pub driver: PathBuf,
}

/// Builds tests/standin into `out` (`build.sh` is idempotent and atomic per artifact).
pub fn build_standin(out: &Path) -> Standin {
    let script = workspace_root().join("tests/standin/build.sh");
    tool(
        "bash",
        &[
            script.to_str().expect("utf-8 path"),
            out.to_str().expect("utf-8 path"),
        ],
    );
    Standin {
        lib: out.join("libtt_metal.so"),
        driver: out.join("tt_driver"),
    }
}

/// A fresh directory every user can traverse and read (mode 0755 under the system temp
/// directory), holding copies of `files` (modes kept). Tests that run something as another
/// user use it, so they pass wherever the checkout lives (a `mktemp -d` checkout is 0700).
pub fn world_reachable_copies(files: &[&Path]) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tt-tracer-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("creating a world-reachable directory");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod 755");
    for f in files {
        let name = f.file_name().expect("a file name");
        fs::copy(f, dir.join(name)).unwrap_or_else(|e| panic!("copying {}: {e}", f.display()));
    }
    dir
}

/// Fails the test unless running as root (loading eBPF programs, becoming another user).
pub fn require_root(what: &str) {
    // SAFETY: no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "{what} must run as root (run `sudo cargo xtask test`)"
    );
}

/// CLOCK_MONOTONIC in ns (the clock of the probes' timestamps).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Median of a set of figures (NaN-free; sorts `v`). Panics on an empty set.
pub fn median(v: &mut [f64]) -> f64 {
    assert!(!v.is_empty(), "median of no figures");
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_decompress_to_elf_files() {
        for v in FIXTURE_VERSIONS {
            let f = fixture(v);
            let head = fs::read(&f).unwrap();
            assert!(head.starts_with(b"\x7fELF"), "{}", f.display());
            assert!(
                head.len() > 1 << 20,
                "{} is {} bytes",
                f.display(),
                head.len()
            );
        }
    }

    #[test]
    fn median_of_odd_and_even_sets() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}

#[cfg(test)]
mod packaging {
    use std::process::Command;

    use super::workspace_root;

    /// packaging/tt-tracer.service as `systemd-analyze verify` sees it. The executable is
    /// swapped for /bin/true (verify insists it exists; the unit's path is the install
    /// location); any complaint, even a warning on stderr such as an unknown key, fails.
    #[test]
    fn the_systemd_unit_verifies() {
        if Command::new("systemd-analyze")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("SKIPPED: systemd-analyze is not installed; packaging/tt-tracer.service not verified");
            return;
        }
        let unit = std::fs::read_to_string(workspace_root().join("packaging/tt-tracer.service"))
            .expect("packaging/tt-tracer.service");
        assert!(unit.contains("\nExecStart=/usr/local/bin/tt-tracer watch "));
        let dir = std::env::temp_dir().join(format!("tt-tracer-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let copy = dir.join("tt-tracer.service");
        std::fs::write(
            &copy,
            unit.replace(
                "\nExecStart=/usr/local/bin/tt-tracer ",
                "\nExecStart=/bin/true ",
            ),
        )
        .unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && said.trim().is_empty(),
            "systemd-analyze verify ({}): {said}",
            out.status
        );
    }

    #[test]
    fn the_prometheus_example_config_is_valid() {
        let config = workspace_root().join("packaging/prometheus.yml");
        let out = Command::new("promtool")
            .arg("check")
            .arg("config")
            .arg(&config)
            .output()
            .expect("promtool (Debian's prometheus package; `cargo xtask setup` installs it)");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
