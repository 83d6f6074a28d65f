//! `BPF_MAP_LOOKUP_BATCH` (Linux 5.6+): the whole socket map in a few syscalls instead of two per
//! entry. aya 0.14 has no batch API, hence this small wrapper around the `bpf(2)` syscall.

use std::{io, mem::size_of, os::fd::RawFd};

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Every entry of a hash map of `K → V` (plain `repr(C)` data). `Err` when the kernel has no batch
/// operations (the caller falls back to walking keys).
pub fn lookup_all<K: Copy + Default, V: Copy + Default>(
    map_fd: RawFd,
    capacity: usize,
) -> io::Result<Vec<(K, V)>> {
    let mut chunk = 4096.min(capacity.max(1));
    let mut keys: Vec<K> = Vec::new();
    let mut values: Vec<V> = Vec::new();
    let mut out = Vec::new();
    // Hash maps use a bucket index as the resume token.
    let mut token: u32 = 0;
    let mut first = true;
    loop {
        keys.resize(chunk, K::default());
        values.resize(chunk, V::default());
        let mut next: u32 = 0;
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                &token as *const u32 as u64
            },
            out_batch: &mut next as *mut u32 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk as u32,
            map_fd: map_fd as u32,
            ..BatchAttr::default()
        };
        // SAFETY: `attr` points at buffers of `chunk` keys and values that outlive the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                size_of::<BatchAttr>(),
            )
        };
        let error = (rc < 0).then(io::Error::last_os_error);
        match error.as_ref().and_then(io::Error::raw_os_error) {
            // One bucket holds more entries than the buffer: retry the same batch bigger.
            Some(libc::ENOSPC) if chunk < capacity.max(1) * 2 => {
                chunk *= 2;
                continue;
            }
            Some(libc::ENOENT) | None => {}
            Some(_) => return Err(error.unwrap_or_else(io::Error::last_os_error)),
        }
        let filled = (attr.count as usize).min(chunk);
        out.extend(
            keys[..filled]
                .iter()
                .copied()
                .zip(values[..filled].iter().copied()),
        );
        if error.is_some() {
            // ENOENT: no more buckets.
            return Ok(out);
        }
        token = next;
        first = false;
    }
}
