//! Host setup the load needs: a memlock limit and a mounted tracefs.

use std::path::Path;

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones to the memory cgroup, so
/// failing to raise it is only worth a debug line.
pub(super) fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        log::debug!("could not raise RLIMIT_MEMLOCK; relying on memcg accounting (Linux 5.11+)");
    }
}

/// Tracepoints are found through tracefs, which a fresh boot may not have mounted.
pub(super) fn ensure_tracefs() {
    let mounted = [
        "/sys/kernel/tracing/events",
        "/sys/kernel/debug/tracing/events",
    ]
    .iter()
    .any(|p| Path::new(p).exists());
    if mounted {
        return;
    }
    // SAFETY: static NUL-terminated strings; failure is reported by the tracepoint attach.
    let rc = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        log::debug!("tracefs is not mounted and mounting it failed");
    } else {
        log::info!("mounted tracefs at /sys/kernel/tracing");
    }
}
