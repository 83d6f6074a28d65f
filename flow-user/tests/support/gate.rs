//! Whether a test may run here: root, CI, the tools it needs. Outside CI a test that cannot run
//! says loudly that it did not; under CI a missing privilege or tool is a failure.

pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// True when the test can run: as root (the kernel program). Under CI a missing privilege is a
/// failure; elsewhere the test says loudly that it did not run.
pub fn privileged(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(!in_ci(), "{test}: CI runs these tests as root");
    eprintln!("NOT RUN: {test} needs root (CI runs it)");
    false
}

/// False (and says so) when the kernel program cannot be loaded here: not root and not CI.
/// Under CI a missing privilege is not an excuse: the load is attempted and fails the test.
pub fn may_load() -> bool {
    if !is_root() && !in_ci() {
        eprintln!("NOT RUN: this test loads the kernel program and needs root (CI runs it)");
        return false;
    }
    true
}

/// The path of a tool the test needs; under CI a missing tool is a failure.
pub fn tool(name: &str, test: &str) -> Option<&'static str> {
    let found = ["/usr/bin/", "/bin/", "/usr/local/bin/", "/usr/sbin/"]
        .iter()
        .map(|dir| format!("{dir}{name}"))
        .find(|path| std::path::Path::new(path).exists())
        .map(|path| &*Box::leak(path.into_boxed_str()));
    if found.is_none() {
        assert!(
            !in_ci(),
            "{test}: `{name}` must be installed (`cargo xtask test` installs it)"
        );
        eprintln!("NOT RUN: {test} needs `{name}`");
    }
    found
}
