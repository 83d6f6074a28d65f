//! The attach ladder on this kernel: the best rung that works is chosen, the refusals of the
//! better ones are reported cleanly, and a refused rung leaves no fd, program or link behind.

mod support;

use flow_user::ebpf::{KernelProgram, LoadOptions, Rung};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// What this kernel allows: `FLOW_EXPECT_RUNG` where the VM matrix knows it, else the host's.
fn expected_rung() -> Rung {
    if let Ok(rung) = std::env::var("FLOW_EXPECT_RUNG") {
        return rung.parse().unwrap();
    }
    let kprobes = std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release.trim().split(['.', '-']);
    let major: u32 = parts.next().unwrap().parse().unwrap();
    let minor: u32 = parts.next().unwrap().parse().unwrap();
    // Decided by the one test host this suite runs on (see ENVIRONMENT.md): 6.18 without
    // kprobes and with fentry denied, so the typed tracepoints (tp_btf) count. Other kernels
    // run under `cargo xtask vm-test`.
    assert!(
        !kprobes && (major, minor) >= (6, 3),
        "unexpected host kernel {release}"
    );
    Rung::TpBtf
}

#[test]
fn ladder_picks_the_working_rung_and_leaks_nothing() {
    if support::load(&LoadOptions::default()).is_none() {
        return;
    }
    let before = open_fds();
    for _ in 0..3 {
        let program = KernelProgram::load(&LoadOptions::default()).unwrap();
        let expected = expected_rung();
        assert_eq!(program.rung(), expected);
        let refused: Vec<Rung> = program.refused().iter().map(|r| r.rung).collect();
        let better: Vec<Rung> = Rung::LADDER
            .into_iter()
            .take_while(|r| *r != expected)
            .collect();
        assert_eq!(
            refused, better,
            "every better rung refused, in ladder order"
        );
        for refusal in program.refused() {
            assert!(!refusal.reason.is_empty());
            assert!(
                !refusal.reason.contains('\n'),
                "one line: {}",
                refusal.reason
            );
        }
        assert!(program
            .describe()
            .starts_with(&format!("attached the {expected} rung")));
        drop(program);
        assert_eq!(
            open_fds(),
            before,
            "a load/drop cycle leaked file descriptors"
        );
    }

    // Forcing a refused rung is an error value (no panic), and leaks nothing either.
    let refused: Vec<Rung> = Rung::LADDER
        .into_iter()
        .take_while(|r| *r != expected_rung())
        .collect();
    for rung in refused {
        let err = KernelProgram::load(&LoadOptions {
            rung: Some(rung),
            ..LoadOptions::default()
        })
        .err()
        .expect("this rung cannot attach here");
        let text = format!("{err:#}");
        assert!(text.contains(rung.name()), "{text}");
        assert_eq!(
            open_fds(),
            before,
            "a refused {rung} leaked file descriptors"
        );
    }
}
