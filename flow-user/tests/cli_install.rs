//! `cargo xtask install --prefix DIR --binary PATH` lays out this test build of `flow` the way
//! `cargo xtask install` does after its release build (the same code after the build step), and
//! the result is checked with the tools that will read it: `systemd-analyze verify` for the unit,
//! the installed binary itself, and the files the shells and `man` look for.
//!
//! xtask runs through a nested `cargo run`: a test started by `cargo test` holds no build lock.

mod support;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use support::tool;

/// A fresh directory under the target dir's tmp (removed when dropped).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn xtask_install(prefix: &Path) {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "run",
            "--quiet",
            "--package",
            "xtask",
            "--",
            "install",
            "--prefix",
        ])
        .arg(prefix)
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_flow"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo xtask install failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn non_empty(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(!text.trim().is_empty(), "{} is empty", path.display());
    text
}

#[test]
fn install_lays_out_binary_pages_completions_and_a_valid_unit() {
    let Some(systemd_analyze) = tool("systemd-analyze", "install") else {
        return;
    };
    let tmp = TempDir::new("install");
    let prefix = tmp.0.join("usr");
    xtask_install(&prefix);

    // The binary runs from its new place.
    let bin = prefix.join("bin/flow");
    let out = Command::new(&bin).arg("--version").output().unwrap();
    assert!(out.status.success(), "{} --version: {out:?}", bin.display());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("flow "));

    // One page for flow and one per visible command; none for the hidden generator.
    let man = prefix.join("share/man/man1");
    for page in [
        "flow",
        "flow-top",
        "flow-serve",
        "flow-bandwidth",
        "flow-stats",
        "flow-history",
        "flow-http",
        "flow-connections",
    ] {
        let text = non_empty(&man.join(format!("{page}.1")));
        assert!(text.contains(".TH"), "{page}.1 is not a man page");
    }
    assert!(!man.join("flow-generate.1").exists());
    assert!(non_empty(&man.join("flow.1")).contains("history"));

    // Completions where bash-completion, zsh and fish look, each naming the commands.
    for path in [
        "share/bash-completion/completions/flow",
        "share/zsh/site-functions/_flow",
        "share/fish/vendor_completions.d/flow.fish",
    ] {
        let text = non_empty(&prefix.join(path));
        for word in ["bandwidth", "history", "rung", "window"] {
            assert!(text.contains(word), "{path} does not complete `{word}`");
        }
        assert!(
            !text.contains("generate"),
            "{path} completes the hidden `generate`"
        );
    }

    // The unit starts this prefix's binary, and systemd accepts it (the ExecStart binary must
    // exist for verify to pass). `--man=no`: the Documentation= page is checked here instead,
    // against the pages just installed, not against whatever `man` finds on this machine.
    let unit = prefix.join("lib/systemd/system/flow.service");
    let text = non_empty(&unit);
    assert!(
        text.contains(&format!("ExecStart={} serve", bin.display())),
        "{text}"
    );
    for line in text.lines().filter(|l| l.starts_with("Documentation=")) {
        for page in line["Documentation=".len()..].split_whitespace() {
            if let Some(page) = page.strip_prefix("man:") {
                let (name, section) = page.trim_end_matches(')').split_once('(').unwrap();
                let file = prefix.join(format!("share/man/man{section}/{name}.{section}"));
                assert!(file.is_file(), "{page} is not installed");
            }
        }
    }
    for needed in [
        "CAP_BPF",
        "CAP_PERFMON",
        "StateDirectory=flow",
        "ProtectSystem=strict",
    ] {
        assert!(text.contains(needed), "the unit lacks {needed}");
    }
    let out = Command::new(systemd_analyze)
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    assert!(
        !stderr.contains("flow.service"),
        "systemd-analyze verify complains about the unit: {stderr}"
    );

    // Installing again over the same prefix (an upgrade) works.
    xtask_install(&prefix);
}
