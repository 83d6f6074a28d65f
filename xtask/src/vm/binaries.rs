//! The kernel test executables, linked statically: the VM's userland is one busybox, no libc.

use crate::util::{display, workspace_root};
use anyhow::{bail, Context, Result};
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// Builds the named test targets of flow-user embedding `object`; returns (name, executable).
///
/// `--target` is explicit so `+crt-static` applies to the tests only, not to build scripts and
/// proc macros; the own target dir keeps these flags from invalidating the host build.
pub fn build(object: &Path, tests: &[String], target_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root())
        .args(["test", "-p", "flow-user", "--no-run"])
        .args(["--target", "x86_64-unknown-linux-gnu"])
        .arg("--message-format=json-render-diagnostics")
        .arg("--target-dir")
        .arg(target_dir)
        .env("FLOW_EBPF_OBJECT", object)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        // No debug info: smaller binaries, a smaller initramfs, faster links.
        .env("CARGO_PROFILE_DEV_DEBUG", "false")
        .env("CARGO_PROFILE_TEST_DEBUG", "false")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for test in tests {
        cmd.args(["--test", test]);
    }
    println!("vm-test: {}", display(&cmd));
    let out = cmd.output().context("starting cargo")?;
    if !out.status.success() {
        bail!("the static test build failed ({})", out.status);
    }
    let built = executables(&String::from_utf8_lossy(&out.stdout));
    tests
        .iter()
        .map(|test| {
            let path = built
                .iter()
                .find(|(name, _)| name == test)
                .map(|(_, path)| path.clone())
                .with_context(|| format!("cargo built no executable for test `{test}`"))?;
            Ok((test.clone(), path))
        })
        .collect()
}

/// (target name, executable) of every artifact in cargo's JSON messages. Only the
/// `"executable":"…"` field is needed, so it is picked out of the line rather than pulling a
/// JSON parser into xtask; the target name is the file name less its `-<hash>`.
fn executables(json_lines: &str) -> Vec<(String, PathBuf)> {
    json_lines
        .lines()
        .filter(|line| line.contains(r#""reason":"compiler-artifact""#))
        .filter_map(|line| {
            let rest = line.split(r#""executable":""#).nth(1)?;
            let path = PathBuf::from(&rest[..rest.find('"')?]);
            let file = path.file_name()?.to_str()?;
            let name = file.rsplit_once('-')?.0.to_string();
            Some((name, path))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn executables_from_cargo_json() {
        let json = concat!(
            r#"{"reason":"compiler-artifact","target":{"name":"libc"},"executable":null}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"name":"kernel_exact"},"#,
            r#""executable":"/w/target/vm/cargo/x/debug/deps/kernel_exact-0f3a","fresh":true}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        let found = super::executables(json);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "kernel_exact");
        assert_eq!(
            found[0].1.to_str(),
            Some("/w/target/vm/cargo/x/debug/deps/kernel_exact-0f3a")
        );
    }
}
