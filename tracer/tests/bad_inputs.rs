//! Inputs that must fail at once, with one line and the documented exit code: files that are not
//! regular files (a device, a FIFO), processes that cannot be traced, options that would mix the
//! report with a command's output. Every command runs under a deadline: a hang fails the test.
//! No root needed: each is refused before any probe is loaded.

mod common;

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::*;

/// Runs tt-tracer with `args`; fails the test if it is still running after 20 s.
/// Returns (exit code, stderr).
fn run_bounded(args: &[&str]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tt-tracer"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tt-tracer");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            use std::io::Read as _;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code().expect("exit code, not a signal"), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tt-tracer {args:?} hung (killed after 20 s)");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn assert_refused(args: &[&str], code: i32, needle: &str) {
    let (got, err) = run_bounded(args);
    assert_eq!(got, code, "tt-tracer {args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "{err:?} should say {needle:?}");
}

fn fifo(name: &str) -> PathBuf {
    let p = scratch(name).join("fifo");
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    p
}

#[test]
fn a_device_or_a_fifo_as_library_is_refused_at_once() {
    let f = fifo("fifo-lib");
    let f = f.to_str().unwrap();
    for lib in ["/dev/zero", f] {
        assert_refused(&["probes", "--lib", lib], 3, "not a library file");
        assert_refused(&["probes", "--lib", lib, "--json"], 3, "not a library file");
        assert_refused(
            &["run", "--lib", lib, "--", "true"],
            3,
            "not a library file",
        );
    }
}

#[test]
fn a_device_or_a_fifo_as_catalog_is_refused_at_once() {
    let lib = standin();
    let lib = lib.to_str().unwrap();
    let f = fifo("fifo-catalog");
    for catalog in ["/dev/zero", f.to_str().unwrap()] {
        assert_refused(
            &["probes", "--lib", lib, "--catalog", catalog],
            3,
            "not a catalog file",
        );
        assert_refused(
            &["run", "--lib", lib, "--catalog", catalog, "--", "true"],
            3,
            "not a catalog file",
        );
    }
}

#[test]
fn an_oversized_catalog_is_refused() {
    let big = scratch("big-catalog").join("catalog.toml");
    std::fs::write(&big, "#".repeat(2 << 20)).unwrap();
    let lib = standin();
    assert_refused(
        &[
            "probes",
            "--lib",
            lib.to_str().unwrap(),
            "--catalog",
            big.to_str().unwrap(),
        ],
        3,
        "larger than any catalog",
    );
}

#[test]
fn kernel_threads_and_tt_tracers_own_ancestors_are_refused() {
    let lib = standin();
    let lib = lib.to_str().unwrap();
    // kthreadd is pid 2 on every Linux system.
    assert_refused(&["attach", "--pid", "2", "--lib", lib], 6, "kernel thread");
    assert_refused(&["attach", "--pid", "2"], 6, "kernel thread");
    // This test process is tt-tracer's parent: it would wait for tt-tracer forever.
    let me = std::process::id().to_string();
    assert_refused(&["attach", "--pid", &me], 6, "ancestor");
    assert_refused(&["attach", "--pid", "0"], 6, "process 0");
    assert_refused(&["attach", "--pid", "4194304"], 6, "not found");
}

#[test]
fn a_process_that_has_exited_is_gone_not_refused_by_the_kernel() {
    // A child that has exited but is not reaped yet: /proc still lists it, as a zombie.
    let mut child = Command::new("true").spawn().unwrap();
    let stat = format!("/proc/{}/stat", child.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&stat).is_ok_and(|s| s.contains(") Z ")) {
        assert!(Instant::now() < deadline, "child never became a zombie");
        std::thread::sleep(Duration::from_millis(5));
    }
    let lib = standin();
    assert_refused(
        &[
            "attach",
            "--pid",
            &child.id().to_string(),
            "--lib",
            lib.to_str().unwrap(),
        ],
        6,
        "exited",
    );
    child.wait().unwrap();
}

#[test]
fn run_json_is_refused_so_the_report_never_mixes_with_the_commands_output() {
    let lib = standin();
    assert_refused(
        &[
            "run",
            "--json",
            "--lib",
            lib.to_str().unwrap(),
            "--",
            "true",
        ],
        2,
        "--report-file",
    );
}

#[test]
fn help_says_what_each_signal_does() {
    for (sub, words) in [
        ("run", &["SIGTERM", "SIGKILL", "Ctrl-C", "SIGHUP"][..]),
        ("attach", &["SIGTERM", "SIGKILL", "Ctrl-C"][..]),
    ] {
        let out = tt_tracer(&[sub, "--help"]);
        let text = String::from_utf8_lossy(&out.stdout);
        for w in words {
            assert!(text.contains(w), "{sub} --help lacks {w}");
        }
    }
}
