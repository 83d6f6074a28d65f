//! A TCP socket's fields at the loader's BTF offsets, read one of two ways behind one reader,
//! so the field lists (`sequence`, `table`) exist once:
//!
//! - direct loads through the `struct tcp_sock *` that `bpf_skc_to_tcp_sock` returns: the
//!   offset is a constant of the frozen read-only data, so the verifier checks each load
//!   against the kernel's BTF at load time and it runs as a plain memory load (~1 ns against a
//!   helper call per field). Typed contexts only: the tp_btf and fexit programs' sockets and
//!   the iterators'.
//! - `bpf_probe_read_kernel` per field through any socket pointer: `cgroup/sock_release`,
//!   whose context is the socket but not BTF-typed, and kernels without the helper (the
//!   loader says which, [`FLOW_SOCK_READS`]).

use core::ffi::c_void;

use aya_ebpf::helpers::generated::bpf_skc_to_tcp_sock;
use flow_common::{sock_reads, SockKey};

use crate::read::read_kernel;

/// [`sock_reads`] bits, set by the loader from the kernel's BTF (read-only data: the verifier
/// drops the path a kernel does not take, helper call included).
#[unsafe(no_mangle)]
static FLOW_SOCK_READS: u32 = 0;

#[inline(always)]
fn reads() -> u32 {
    // SAFETY: a plain read of a global the loader patched before load.
    unsafe { core::ptr::read_volatile(&FLOW_SOCK_READS) }
}

/// Whether the `iter/tcp` walks see each socket under its lock ([`sock_reads::LOCKED_WALK`]).
#[inline(always)]
pub fn walk_locked() -> bool {
    reads() & sock_reads::LOCKED_WALK != 0
}

/// `skc_state` in `struct sock_common` (as stable as the tuple offsets in `read`).
const SKC_STATE: usize = 18;

/// The TCP state of a BTF-typed socket pointer (`struct sock_common *` or `struct sock *`), by
/// a direct load: what the walks look at first, before they know the socket is a full one.
#[inline(always)]
pub fn typed_state(sk: SockKey) -> u32 {
    // SAFETY: `sk` is a typed socket pointer; the verifier checks the load against BTF.
    u32::from(unsafe { *(sk as *const u8).add(SKC_STATE) })
}

/// How to read one TCP socket's fields.
#[derive(Clone, Copy)]
pub enum Fields {
    /// A `struct tcp_sock *` the verifier knows as one: direct loads.
    Typed(*const u8),
    /// Any pointer to the socket: a helper read per field.
    Probed(SockKey),
}

impl Fields {
    /// The reader for `sk`, a BTF-typed socket pointer (a typed program's socket or an
    /// iterator's): direct loads when the kernel has `bpf_skc_to_tcp_sock` and `sk` is a full
    /// TCP socket, helper reads otherwise.
    #[inline(always)]
    pub fn of(sk: SockKey) -> Fields {
        if reads() & sock_reads::TYPED != 0 {
            // SAFETY: the helper takes any typed socket pointer; null for TIME_WAIT and
            // request sockets, and for other protocols.
            let tcp = unsafe { bpf_skc_to_tcp_sock(sk as *mut c_void) };
            if !tcp.is_null() {
                return Fields::Typed(tcp.cast());
            }
        }
        Fields::Probed(sk)
    }

    /// The reader for a socket pointer that is not BTF-typed (`cgroup/sock_release`'s
    /// context): helper reads.
    #[inline(always)]
    pub fn probed(sk: SockKey) -> Fields {
        Fields::Probed(sk)
    }

    /// `skc_state`.
    #[inline(always)]
    pub fn state(self) -> u32 {
        u32::from(self.load::<u8>(SKC_STATE))
    }

    #[inline(always)]
    pub fn u32(self, offset: u32) -> u32 {
        self.load(offset as usize)
    }

    #[inline(always)]
    pub fn u64(self, offset: u32) -> u64 {
        self.load(offset as usize)
    }

    /// The field of type `T` at `offset` (a BTF offset, so naturally aligned).
    #[inline(always)]
    fn load<T: Copy + Default>(self, offset: usize) -> T {
        match self {
            // SAFETY: a typed socket pointer and a constant offset: the verifier checks the
            // load against `struct tcp_sock`'s BTF (and makes it fault-safe).
            Fields::Typed(tcp) => unsafe { tcp.add(offset).cast::<T>().read() },
            Fields::Probed(sk) => {
                let mut value = T::default();
                read_kernel(&mut value, sk, offset);
                value
            }
        }
    }
}
