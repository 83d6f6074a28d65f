//! Every bad input ends the same way: one line on stderr, a non-zero exit, no panic.

mod support;

use std::{net::TcpListener, process::Output};

use support::{flow, flow_without_privileges, Unprivileged};

fn check(args: &[&str], out: &Output, expect: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "flow {args:?} succeeded:\n{stdout}{stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "flow {args:?}: not one line:\n{stderr}"
    );
    assert!(
        stderr.starts_with("flow: "),
        "flow {args:?}: says who speaks: {stderr}"
    );
    assert!(
        stderr.to_lowercase().contains(&expect.to_lowercase()),
        "flow {args:?}: expected `{expect}` in: {stderr}"
    );
    for bad in ["panicked", "backtrace", "RUST_BACKTRACE"] {
        assert!(!stderr.contains(bad) && !stdout.contains(bad), "{stderr}");
    }
}

#[test]
fn each_bad_input_is_one_line_and_a_failure() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let cases: &[(&[&str], &str)] = &[
        (&["bandwidth", "--window", "abc"], "`abc` is not a duration"),
        (&["bandwidth", "--window", "0s"], "longer than zero"),
        (&["history", "--interval", "-1s"], "-1"),
        (&["top", "--interval", "abc"], "`abc` is not a duration"),
        (
            &["top", "--protocol", "gopher"],
            "unknown protocol `gopher`",
        ),
        (&["connections", "--protocol", ""], "unknown protocol"),
        (&["top", "--port", "70000"], "70000"),
        (&["top", "--pid", "-3"], "-3"),
        (&["top", "--pid", "abc"], "--pid"),
        (&["top", "--limit", "many"], "many"),
        (&["top", "--once", "extra"], "extra"),
        (&["stats", "--inode", "x"], "--inode"),
        (&["--mode", "kernel", "top"], "unknown mode `kernel`"),
        (&["--rung", "uprobe", "top"], "unknown rung `uprobe`"),
        (&["--map-entries", "0", "top"], "--map-entries"),
        (
            &["serve", "--listen", "not-an-address"],
            "cannot listen on not-an-address",
        ),
        (
            &["serve", "--listen", "127.0.0.1:99999"],
            "cannot listen on",
        ),
        (&["serve", "--listen", &taken], "in use"),
        (&["serve", "--max-series", "0"], "--max-series"),
        (
            &["serve", "--expire-after", "soon"],
            "`soon` is not a duration",
        ),
        (&["frobnicate"], "frobnicate"),
        (&[], "no command given"),
    ];
    for (args, expect) in cases {
        let out = flow().args(*args).output().unwrap();
        check(args, &out, expect);
    }
}

/// Without privileges the kernel program cannot load: `--mode ebpf` must say so in one line
/// that names what it needs, and exit 1, for every command (the kernel refuses every rung),
/// whether as root without any capability or as `nobody` (or as this user, when not root).
#[test]
fn ebpf_mode_without_privileges_is_one_line() {
    const TEST: &str = "ebpf_mode_without_privileges_is_one_line";
    const NEEDS: &str = "needs root or CAP_BPF+CAP_PERFMON";
    for who in [Unprivileged::RootWithoutCapabilities, Unprivileged::Nobody] {
        for command in [
            &["top", "--once"][..],
            &["serve", "--listen", "127.0.0.1:0"],
            &["bandwidth", "--window", "100ms"],
            &["connections"],
        ] {
            let Some(mut unprivileged) = flow_without_privileges(who, TEST) else {
                return;
            };
            let out = unprivileged
                .args(["--mode", "ebpf"])
                .args(command)
                .output()
                .unwrap();
            check(command, &out, NEEDS);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{who:?} {command:?}: {stderr}");
            assert!(stderr.contains(NEEDS), "{who:?} {command:?}: {stderr}");
        }
    }
}
