//! Reading kernel memory: the socket's 4-tuple and fields at BTF offsets through checked probe
//! reads, typed socket fields and tracepoint records through direct loads.

use aya_ebpf::{helpers::generated, programs::TracePointContext, EbpfContext};
use flow_common::{SockKey, SockTuple, AF_INET, AF_INET6, IPPROTO_TCP};

/// Offsets inside `struct sock_common` (its first member of `struct sock`). These have not moved
/// since Linux 4.x on 64-bit; the exactness tests check the resulting tuples on every kernel.
mod sock_common {
    pub const DADDR: usize = 0;
    pub const RCV_SADDR: usize = 4;
    pub const DPORT: usize = 12; // network order
    pub const NUM: usize = 14; // local port, host order
    pub const FAMILY: usize = 16;
    pub const V6_DADDR: usize = 56;
    pub const V6_RCV_SADDR: usize = 72;
}

/// Reads the 4-tuple from `struct sock_common` into a zeroed `tuple`; a failed read leaves
/// family 0. Read straight into the map value: built on the stack (16-byte arrays copied byte by
/// byte) it took the frame to 456+ bytes, past the 512-byte combined stack limit of kernels
/// without BPF private stacks (6.1, 6.12).
#[inline(always)]
pub unsafe fn read_tuple(sk: SockKey, tuple: &mut SockTuple) {
    let mut family = 0u16;
    read_kernel(&mut family, sk, sock_common::FAMILY);
    // IPv4 fills the first 4 bytes; the rest stays zero from the fresh entry.
    let (local, remote, len) = match family {
        AF_INET => (sock_common::RCV_SADDR, sock_common::DADDR, 4),
        AF_INET6 => (sock_common::V6_RCV_SADDR, sock_common::V6_DADDR, 16),
        _ => return,
    };
    read_kernel_bytes(&mut tuple.local_addr, len, sk, local);
    read_kernel_bytes(&mut tuple.remote_addr, len, sk, remote);
    let mut dport = 0u16;
    read_kernel(&mut dport, sk, sock_common::DPORT);
    read_kernel(&mut tuple.local_port, sk, sock_common::NUM);
    tuple.remote_port = u16::from_be(dport);
    tuple.family = family;
}

/// A checked kernel read of `*to` from `base + offset`. The result is not looked at: the helper
/// zeroes `to` when the read fails, and a branch per read multiplies the paths the verifier
/// walks (the socket iterator took 150 ms to load with them).
#[inline(always)]
pub fn read_kernel<T>(to: &mut T, base: u64, offset: usize) {
    read_kernel_bytes(to, core::mem::size_of::<T>(), base, offset);
}

/// As [`read_kernel`], for the first `len` bytes of `to` (at most its size).
#[inline(always)]
pub fn read_kernel_bytes<T>(to: &mut T, len: usize, base: u64, offset: usize) {
    let len = len.min(core::mem::size_of::<T>());
    // SAFETY: `to` is valid for `len` bytes; the helper checks the source.
    unsafe {
        generated::bpf_probe_read_kernel(
            core::ptr::from_mut(to).cast(),
            len as u32,
            (base + offset as u64) as *const core::ffi::c_void,
        )
    };
}

/// Byte offset of `sk_protocol` in `struct sock`, from the running kernel's BTF (set by the
/// loader; read-only data, so the verifier sees a constant and allows the direct load).
#[unsafe(no_mangle)]
static FLOW_SK_PROTOCOL_OFFSET: u32 = 0;

/// The raw tracepoint gets `(struct sock *sk, int ret, int flags)`: the protocol the classic
/// tracepoint records is read from the socket here.
#[inline(always)]
pub fn is_tcp(sk: SockKey) -> bool {
    // SAFETY: a plain read of a global the loader patched before load.
    let offset = unsafe { core::ptr::read_volatile(&FLOW_SK_PROTOCOL_OFFSET) } as usize;
    // SAFETY: `sk` is a typed socket pointer; the verifier checks the field access against BTF.
    offset != 0 && unsafe { *((sk as *const u8).add(offset) as *const u16) } == IPPROTO_TCP
}

/// Reads a (naturally aligned) field of the tracepoint record directly: the verifier checks the offset against the
/// record's size, and a direct load costs far less than a `bpf_probe_read` helper call.
#[inline(always)]
pub fn field<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    // SAFETY: `offset` comes from the tracepoint's format file; the record is kernel memory the
    // program may read.
    unsafe { (ctx.as_ptr() as *const u8).add(offset).cast::<T>().read() }
}

/// Zeroes a plain-data `T` (a multiple of 8 bytes) in place, word by word: LLVM turns a zeroing
/// initialiser (or a copy of one) into a call to a byte-wise `memset` subprogram, which cost the
/// socket iterator more than everything else it does.
#[inline(always)]
pub fn zero_in_place<T: Copy>(value: &mut core::mem::MaybeUninit<T>) -> &mut T {
    const { assert!(core::mem::size_of::<T>() % 8 == 0) };
    let words = value.as_mut_ptr().cast::<u64>();
    for i in 0..core::mem::size_of::<T>() / 8 {
        // SAFETY: within `value`; volatile so LLVM keeps the stores instead of a memset.
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
    }
    // SAFETY: every byte was written; `T` is plain data, valid when zeroed.
    unsafe { value.assume_init_mut() }
}
