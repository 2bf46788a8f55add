//! `tt-tracer top` on a real terminal (tmux): real eBPF programs, the stand-in library, the
//! screen read back with `tmux capture-pane`. The real ttnn runtime's rows are checked in
//! ttnn.rs. Other processes of the host may show up in the table too: every check looks at
//! the rows of the processes it started.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use integration_tests::*;

/// The screen polls' limit: generous, the machine may be busy (arming waits for the kernel,
/// which detaches the probes of tracers that ended one by one).
const SCREEN: Duration = Duration::from_secs(180);

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// `tt-tracer top ARGS` in a fresh tmux, once its table is on the screen (probes armed).
fn start_top(args: &str) -> Tmux {
    require_root();
    let tmux = Tmux::start(&format!("{} top {args}", shell_quote(&tracer_bin())));
    tmux.wait_for("the table and its keys", SCREEN, |s| {
        s.contains("PID") && s.contains("KERNELS") && s.contains("q quit")
    });
    tmux
}

/// A copy of the stand-in driver (and its library) under a name of its own: the command name
/// its processes show, so a view can be limited to them (--only) on a busy host.
fn named_driver() -> (PathBuf, String) {
    let s = standin();
    let dir = test_support::world_reachable_copies(&[&s.lib, &s.driver]);
    let name = format!("topdrv{}", monotonic_ns() % 1_000_000);
    let path = dir.join(&name);
    std::fs::rename(dir.join("tt_driver"), &path).expect("renaming the driver copy");
    (path, name)
}

/// A driver, SIGKILLed when dropped (a failing test leaves none behind).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The driver at `path` holding its devices open (until killed); returns it and its pid.
fn driver(path: &Path, args: &[&str]) -> (Driver, u64) {
    let mut child = Command::new(path)
        .args(args)
        .args(["--hold-ms", "600000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("stand-in driver");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .expect("the driver's DRIVER line");
    let oracle = driver_line(&line).unwrap_or_else(|| panic!("no DRIVER line: {line:?}"));
    (Driver(child), oracle["pid"].as_u64().expect("pid"))
}

fn sigkill(d: &mut Driver) {
    d.0.kill().expect("SIGKILL");
    d.0.wait().expect("wait");
}

fn rows_of(screen: &str, pid: u64) -> Vec<TopRow> {
    top_rows(screen)
        .into_iter()
        .filter(|r| r.pid == pid)
        .collect()
}

/// Rows per process × chip with their buffers and kernels; `s` cycles the sort column (the
/// footer names it) and KERNELS puts the process with more kernels first, `r` reverses it;
/// SIGKILL leaves exit rows saying what each chip was left holding.
#[test]
fn rows_per_process_and_chip_sort_keys_and_exit_rows() {
    let (path, name) = named_driver();
    let tmux = start_top(&format!("--bytes --keep-exited 600 --only {name}"));
    // A: 2 chips, 1 application kernel each, a mesh buffer of 4096 B DRAM kept (and one of
    // 8192 B L1 freed). B: 1 chip, 5 application kernels, no buffer.
    let (mut a, a_pid) = driver(
        &path,
        &["--devices", "2", "--app-kernels", "1", "--buffers", "2"],
    );
    let (mut b, b_pid) = driver(&path, &["--devices", "1", "--app-kernels", "5"]);
    let want_a = |chip: &str| TopRow {
        pid: a_pid,
        command: name.clone(),
        chip: chip.into(),
        sizes: ["4096/4096", "0/8192", "-", "-", "-"].map(String::from),
        // 2 fabric + 2 dispatch system kernels per chip.
        kernels: "4/1".into(),
        now_and_state: "- running".into(),
    };
    let want_b = TopRow {
        pid: b_pid,
        command: name.clone(),
        chip: "0".into(),
        sizes: ["-", "-", "-", "-", "-"].map(String::from),
        kernels: "4/5".into(),
        now_and_state: "- running".into(),
    };
    let screen = tmux.wait_for("both drivers' rows", SCREEN, |s| {
        rows_of(s, a_pid) == [want_a("0"), want_a("1")] && rows_of(s, b_pid) == [want_b.clone()]
    });
    println!("{screen}");

    // s: PID → DRAM → L1 → L1_SMALL → TRACE → CB → KERNELS, each named in the footer.
    for name in ["DRAM", "L1", "L1_SMALL", "TRACE", "CB", "KERNELS"] {
        tmux.keys(&["s"]);
        tmux.wait_for(&format!("sort: {name}"), SCREEN, |s| {
            s.contains(&format!("sort: {name} |"))
        });
    }
    let order = |s: &str| -> Vec<u64> {
        top_rows(s)
            .into_iter()
            .map(|r| r.pid)
            .filter(|p| *p == a_pid || *p == b_pid)
            .collect()
    };
    let screen = tmux.screen();
    assert!(screen.contains("KERNELS▼"), "{screen}");
    assert_eq!(order(&screen), [b_pid, a_pid, a_pid], "{screen}");
    tmux.keys(&["r"]);
    let screen = tmux.wait_for("the order reversed", SCREEN, |s| s.contains(", reversed"));
    assert!(screen.contains("KERNELS▲"), "{screen}");
    assert_eq!(order(&screen), [a_pid, a_pid, b_pid], "{screen}");

    // SIGKILL: each of A's chips was left holding the mesh's DRAM buffer; B nothing.
    sigkill(&mut a);
    sigkill(&mut b);
    let screen = tmux.wait_for("the exit rows", SCREEN, |s| {
        let a_rows = rows_of(s, a_pid);
        a_rows.len() == 2
            && a_rows.iter().all(|r| {
                r.sizes[0] == "0/4096" && r.now_and_state == "- killed SIGKILL, left 1 buf 4096"
            })
            && rows_of(s, b_pid)
                .iter()
                .all(|r| r.now_and_state == "- killed SIGKILL, left nothing")
    });
    assert!(
        screen.contains(&format!("only commands containing \"{name}\"")),
        "{screen}"
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// The pid of the tt-tracer the pane's shell runs.
fn tracer_child_of(shell: u32) -> u32 {
    let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
        .expect("the pane shell's children");
    children
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim() == "tt-tracer")
        })
        .unwrap_or_else(|| panic!("no tt-tracer among the children of {shell}: {children}"))
}

/// q quits with exit code 0, and so do Ctrl-C (raw mode: a key, not a signal) and SIGTERM;
/// the tmux pane closes and the terminal's settings are back as they were.
#[test]
fn q_ctrl_c_and_sigterm_quit_with_exit_0_and_restore_the_terminal() {
    require_root();
    for key in ["q", "C-c", "SIGTERM"] {
        let dir = target_dir().join("it-scratch").join(format!(
            "top-quit-{}-{}",
            std::process::id(),
            monotonic_ns()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let q = |name: &str| shell_quote(&dir.join(name));
        let tmux = Tmux::start(&format!(
            "stty -g > {}; {} top; echo $? > {}; stty -g > {}",
            q("before"),
            shell_quote(&tracer_bin()),
            q("rc"),
            q("after")
        ));
        tmux.wait_for(&format!("the table (to quit with {key})"), SCREEN, |s| {
            s.contains("q quit")
        });
        if key == "SIGTERM" {
            let top = tracer_child_of(tmux.pane_pid());
            // SAFETY: kill(2) on the tt-tracer this test started.
            assert_eq!(unsafe { libc::kill(top as i32, libc::SIGTERM) }, 0);
        } else {
            tmux.keys(&[key]);
        }
        tmux.wait_closed(SCREEN);
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        assert_eq!(read("rc").trim(), "0", "{key}: exit code");
        assert!(!read("before").is_empty());
        assert_eq!(read("before"), read("after"), "{key}: terminal settings");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Not root: one line saying what is needed, exit 4, and the terminal untouched (no
/// alternate screen, same settings).
#[test]
fn not_root_gets_a_message_and_exit_4_before_the_terminal_is_touched() {
    require_root();
    let (_, bin) = standin_for_other_users();
    let tmux = Tmux::start(&format!(
        "before=$(stty -g); setpriv --reuid=65534 --regid=65534 --clear-groups {} top; rc=$?; \
         [ \"$before\" = \"$(stty -g)\" ] && same=yes || same=no; echo \"rc=$rc same=$same\"; sleep 600",
        shell_quote(bin)
    ));
    let screen = tmux.wait_for("the exit code", SCREEN, |s| s.contains("rc="));
    assert!(screen.contains("rc=4 same=yes"), "{screen}");
    assert!(
        screen.contains("tt-tracer: tracing needs root or CAP_BPF + CAP_PERFMON"),
        "{screen}"
    );
    assert!(!screen.contains("q quit"), "{screen}");
}
