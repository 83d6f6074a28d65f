//! The attach ladder on this kernel: the best rung that works is chosen, the refusals of the
//! better ones are reported cleanly, and a refused rung leaves no fd, program or link behind.

mod common;

use flow_user::ebpf::{KernelProgram, LoadOptions, Rung};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// What this kernel allows, from the facts the ladder depends on.
fn expected_rung() -> Rung {
    let kprobes = std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release.trim().split(['.', '-']);
    let major: u32 = parts.next().unwrap().parse().unwrap();
    let minor: u32 = parts.next().unwrap().parse().unwrap();
    // Decided by the one test host this suite runs on (see ENVIRONMENT.md): 6.18 without
    // kprobes and with fentry denied. Other kernels run under `cargo xtask vm-test`.
    assert!(
        !kprobes && (major, minor) >= (6, 3),
        "unexpected host kernel {release}"
    );
    Rung::Tracepoint
}

#[test]
fn ladder_picks_the_working_rung_and_leaks_nothing() {
    if common::load(&LoadOptions::default()).is_none() {
        return;
    }
    let before = open_fds();
    for _ in 0..3 {
        let program = KernelProgram::load(&LoadOptions::default()).unwrap();
        assert_eq!(program.rung(), expected_rung());
        let refused: Vec<Rung> = program.refused().iter().map(|r| r.rung).collect();
        assert_eq!(refused, vec![Rung::Fentry, Rung::Kprobe]);
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
            .starts_with("attached the tracepoint rung"));
        drop(program);
        assert_eq!(
            open_fds(),
            before,
            "a load/drop cycle leaked file descriptors"
        );
    }

    // Forcing a refused rung is an error value (no panic), and leaks nothing either.
    for rung in [Rung::Fentry, Rung::Kprobe] {
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
