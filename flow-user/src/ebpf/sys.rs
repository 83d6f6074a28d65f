//! The `bpf(2)` calls aya 0.14 does not make for us, with the few kernel ABI structs they take:
//! a link for a map-element iterator (aya's `Iter::attach` passes no `bpf_iter_link_info`), an
//! iterator instance on that link, and `bpf_prog_info.recursion_misses` (aya's `ProgramInfo`
//! does not expose it). Safe API: every fd comes back as an `OwnedFd`.

use std::{
    io,
    mem::size_of,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

/// `enum bpf_cmd` values.
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_ITER_CREATE: libc::c_long = 33;
/// `enum bpf_attach_type`: `BPF_TRACE_ITER`.
const BPF_TRACE_ITER: u32 = 28;

/// `union bpf_iter_link_info`, its `map` member (the largest member, `cgroup`, is 16 bytes).
#[repr(C)]
#[derive(Default)]
struct IterLinkInfo {
    map_fd: u32,
    _rest: [u32; 3],
}

/// The `link_create` member of `union bpf_attr`, as an iterator link fills it.
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    /// Pointer to an [`IterLinkInfo`].
    iter_info: u64,
    iter_info_len: u32,
    _pad: u32,
}

/// The `iter_create` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct IterCreateAttr {
    link_fd: u32,
    flags: u32,
}

/// The `info` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `struct bpf_prog_info` up to `recursion_misses` (Linux 5.12+; an older kernel leaves it 0).
/// The fields before are not read: zero pointers ask the kernel for none of its arrays.
#[repr(C)]
#[derive(Default)]
struct ProgInfo {
    _head: [u64; 24],
    run_time_ns: u64,
    run_cnt: u64,
    recursion_misses: u64,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, initialised `bpf_attr` member of `size_of::<T>()` bytes; the
    // kernel zero-extends shorter attributes.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), size_of::<T>()) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel just returned this new fd; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// `BPF_LINK_CREATE` of a loaded map-element iterator program (`iter/bpf_map_elem`,
/// `iter/bpf_sk_storage_map`) over the map `map`.
pub fn map_iter_link(program: BorrowedFd<'_>, map: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let info = IterLinkInfo {
        map_fd: map.as_raw_fd() as u32,
        ..IterLinkInfo::default()
    };
    let mut attr = LinkCreateAttr {
        prog_fd: program.as_raw_fd() as u32,
        attach_type: BPF_TRACE_ITER,
        iter_info: std::ptr::from_ref(&info) as u64,
        iter_info_len: size_of::<IterLinkInfo>() as u32,
        ..LinkCreateAttr::default()
    };
    bpf(BPF_LINK_CREATE, &mut attr).map(owned)
}

/// `BPF_LINK_CREATE` of a loaded iterator program that takes no map (`iter/tcp`): one link,
/// on which [`iter_create`] can start runs in several network namespaces (the run's namespace
/// is the creating thread's).
pub fn iter_link(program: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: program.as_raw_fd() as u32,
        attach_type: BPF_TRACE_ITER,
        ..LinkCreateAttr::default()
    };
    bpf(BPF_LINK_CREATE, &mut attr).map(owned)
}

/// `BPF_ITER_CREATE`: a new run of the iterator behind `link`; reading the fd runs it.
pub fn iter_create(link: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut attr = IterCreateAttr {
        link_fd: link.as_raw_fd() as u32,
        flags: 0,
    };
    bpf(BPF_ITER_CREATE, &mut attr).map(owned)
}

/// Runs of the program the kernel skipped because it would have nested on its own CPU
/// (`bpf_prog_info.recursion_misses`).
pub fn recursion_misses(program: BorrowedFd<'_>) -> io::Result<u64> {
    let mut info = ProgInfo::default();
    let mut attr = InfoAttr {
        bpf_fd: program.as_raw_fd() as u32,
        info_len: size_of::<ProgInfo>() as u32,
        info: std::ptr::from_mut(&mut info) as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info.recursion_misses)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offsets as in the kernel's `include/uapi/linux/bpf.h`.
    #[test]
    fn abi_layouts() {
        assert_eq!(size_of::<IterLinkInfo>(), 16);
        assert_eq!(std::mem::offset_of!(LinkCreateAttr, iter_info), 16);
        assert_eq!(std::mem::offset_of!(LinkCreateAttr, iter_info_len), 24);
        assert_eq!(std::mem::offset_of!(ProgInfo, run_time_ns), 192);
        assert_eq!(std::mem::offset_of!(ProgInfo, recursion_misses), 208);
    }

    #[test]
    fn bad_fds_are_errors_not_panics() {
        // SAFETY: fd 0 lives for the test; it is no BPF object, so each call fails.
        let stdin = unsafe { BorrowedFd::borrow_raw(0) };
        assert!(iter_create(stdin).is_err());
        assert!(recursion_misses(stdin).is_err());
        assert!(map_iter_link(stdin, stdin).is_err());
        assert!(iter_link(stdin).is_err());
    }
}
