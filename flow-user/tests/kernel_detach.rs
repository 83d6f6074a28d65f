//! Detaching: after the monitor ends (drop, SIGINT, SIGTERM) no program or map of it remains.
//! One test function: the checks look at every BPF object on the host, so they run alone.

mod support;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use flow_user::ebpf::{KernelEvents, KernelProgram, LoadOptions};

/// Names (as the kernel truncates them to 15 bytes) of flow's programs and maps still loaded.
fn flow_objects() -> Vec<String> {
    let mut names = Vec::new();
    for kind in ["prog", "map"] {
        let out = Command::new("bpftool")
            .args([kind, "show", "--json"])
            .output()
            .expect("bpftool must be installed (`cargo xtask test` installs it)");
        assert!(out.status.success(), "bpftool {kind} show failed");
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for item in list.as_array().unwrap() {
            let name = item["name"].as_str().unwrap_or("");
            if name.starts_with("flow_") || name.starts_with("FLOW_") {
                names.push(format!("{kind} {name}"));
            }
        }
    }
    names
}

fn wait_until_gone(what: &str) {
    let start = Instant::now();
    while !flow_objects().is_empty() {
        // The kernel frees programs and maps asynchronously (RCU) after the last fd closes.
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{what}: still loaded: {:?}",
            flow_objects()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_flow_then_signal(signal: libc::c_int) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flow"))
        .args(["--mode", "ebpf", "bandwidth", "--window", "60s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // flow says which rung it attached once it has; then its objects must be visible.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("attached"), "unexpected first line: {line}");
    assert!(
        !flow_objects().is_empty(),
        "flow's programs should be loaded now"
    );
    unsafe { libc::kill(child.id() as i32, signal) };
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "flow exits 130 after an interrupt"
    );
    wait_until_gone(&format!("after signal {signal}"));
}

#[test]
fn nothing_remains_after_drop_sigint_or_sigterm() {
    if !support::may_load() {
        return;
    }
    wait_until_gone("before the test (another flow is running?)");
    let mut program = KernelProgram::load(&LoadOptions::default()).unwrap();
    let _events = KernelEvents::start(&mut program, true).unwrap();
    assert!(!flow_objects().is_empty());
    drop(_events);
    drop(program);
    wait_until_gone("after drop");

    // A second load in the same process, to be sure drop really released everything.
    drop(KernelProgram::load(&LoadOptions::default()).unwrap());
    wait_until_gone("after a second drop");

    run_flow_then_signal(libc::SIGINT);
    run_flow_then_signal(libc::SIGTERM);
}
