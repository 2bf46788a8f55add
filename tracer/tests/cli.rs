//! The command line without root: help that teaches, exit codes, generated completions.

use std::process::Command;

fn tt_tracer(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tt-tracer"))
        .args(args)
        .output()
        .expect("run tt-tracer");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_subcommands_and_exit_codes() {
    let (code, out, _) = tt_tracer(&["--help"]);
    assert_eq!(code, Some(0));
    for want in ["run", "attach", "probes", "Exit codes:", "CAP_BPF"] {
        assert!(out.contains(want), "--help lacks {want:?}:\n{out}");
    }
    for sub in ["run", "attach", "probes"] {
        let (code, out, _) = tt_tracer(&[sub, "--help"]);
        assert_eq!(code, Some(0));
        assert!(
            out.contains("Example:") && out.contains("Exit codes:"),
            "{sub} --help:\n{out}"
        );
    }
}

#[test]
fn bad_command_lines_exit_2() {
    for args in [
        &["frobnicate"][..],
        &["attach"],
        &["attach", "--pid", "notanumber"],
        &["run"],
    ] {
        let (code, _, err) = tt_tracer(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
    }
}

#[test]
fn completions_and_man_page_are_generated() {
    let (code, out, _) = tt_tracer(&["completions", "bash"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("tt-tracer") && out.contains("attach"), "{out}");
    let (code, out, _) = tt_tracer(&["manpage"]);
    assert_eq!(code, Some(0));
    assert!(
        out.starts_with(".ie") || out.contains(".TH"),
        "{}",
        &out[..out.len().min(200)]
    );
}
