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

/// Every document a `--help` points to exists.
#[test]
fn documents_named_in_help_exist() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut named = 0;
    for sub in ["run", "attach", "probes"] {
        let (_, out, _) = tt_tracer(&[sub, "--help"]);
        for word in out.split(|c: char| c.is_whitespace() || "(),;".contains(c)) {
            if let Some(doc) = word.strip_prefix("docs/") {
                let doc = doc.trim_end_matches(['.', ':', ')']);
                assert!(
                    root.join("docs").join(doc).is_file(),
                    "`{sub} --help` points to docs/{doc}, which does not exist"
                );
                named += 1;
            }
        }
    }
    assert!(
        named > 0,
        "no --help names a document any more: update this test"
    );
}

/// Every key the built-in catalog uses is explained in docs/catalog.md.
#[test]
fn every_catalog_key_is_documented() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/catalog.md"),
    )
    .expect("docs/catalog.md");
    let catalog: toml::Value = toml::from_str(tt_tracer::catalog::BUILTIN).unwrap();
    // Top-level scalars (`[[role]]` and `[abi]` are sections, explained by their keys).
    let mut keys: std::collections::BTreeSet<String> = catalog
        .as_table()
        .unwrap()
        .iter()
        .filter(|(_, v)| !v.is_array() && !v.is_table())
        .map(|(k, _)| k.clone())
        .collect();
    for role in catalog["role"].as_array().unwrap() {
        for (k, v) in role.as_table().unwrap() {
            keys.insert(k.clone());
            if k == "fields" {
                for f in v.as_array().unwrap() {
                    keys.extend(f.as_table().unwrap().keys().cloned());
                }
            }
        }
    }
    for b in catalog["abi"]["by_value"].as_array().unwrap() {
        keys.extend(b.as_table().unwrap().keys().cloned());
    }
    assert!(keys.len() > 10, "{keys:?}");
    for k in keys {
        assert!(
            doc.contains(&format!("`{k}`")) || doc.contains(&format!("{k} =")),
            "catalog key `{k}` is not explained in docs/catalog.md"
        );
    }
}
