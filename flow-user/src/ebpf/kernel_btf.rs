//! Facts about the running kernel's types, from its BTF (`/sys/kernel/btf/vmlinux`). Rust eBPF
//! programs have no CO-RE field relocations, so the loader looks up the few offsets the typed
//! programs need and hands them over as read-only globals.

use anyhow::{anyhow, bail, Context, Result};
use btf_rs::{Backend, Btf, Type};
use flow_common::{sock_reads, SockOffsets};

const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// What the typed programs need: `sk_protocol` for the tp_btf hooks, the rest for the socket
/// iterator, and how they may read socket fields.
pub struct KernelOffsets {
    pub sk_protocol: u32,
    pub sock: SockOffsets,
    /// [`sock_reads`] bits this kernel allows.
    pub sock_reads: u32,
}

pub fn kernel_offsets() -> Result<KernelOffsets> {
    // Mapped, not read: only the types on the way are parsed (start-up stays short).
    let btf = Btf::from_file_with_backend(VMLINUX, Backend::Mmap)
        .or_else(|_| Btf::from_file(VMLINUX))
        .with_context(|| format!("reading kernel BTF ({VMLINUX})"))?;
    let at = |name: &str, member: &str| member_byte_offset(&btf, name, member);
    let socket_to_ino = i64::from(at("socket_alloc", "vfs_inode")?)
        - i64::from(at("socket_alloc", "socket")?)
        + i64::from(at("inode", "i_ino")?);
    Ok(KernelOffsets {
        sock_reads: sock_reads_of(&btf),
        sk_protocol: at("sock", "sk_protocol")?,
        sock: SockOffsets {
            sk_socket: at("sock", "sk_socket")?,
            sk_ack_backlog: at("sock", "sk_ack_backlog")?,
            socket_to_ino: i32::try_from(socket_to_ino)?,
            rcv_nxt: at("tcp_sock", "rcv_nxt")?,
            copied_seq: at("tcp_sock", "copied_seq")?,
            write_seq: at("tcp_sock", "write_seq")?,
            snd_una: at("tcp_sock", "snd_una")?,
            segs_in: at("tcp_sock", "segs_in")?,
            segs_out: at("tcp_sock", "segs_out")?,
            sk_uid: at("sock", "sk_uid")?,
            // `skc_net` is a `possible_net_t`: a struct whose only member is the `struct net *`.
            sk_net: at("sock", "__sk_common")? + at("sock_common", "skc_net")?,
            net_inum: at("net", "ns")? + at("ns_common", "inum")?,
            bytes_acked: at("tcp_sock", "bytes_acked")?,
            bytes_received: at("tcp_sock", "bytes_received")?,
            // A member of `struct sock` until it moved into `sock_common` (`skc_flags`).
            sk_flags: match at("sock", "sk_flags") {
                Ok(offset) => offset,
                Err(_) => at("sock", "__sk_common")? + at("sock_common", "skc_flags")?,
            },
            sk_bpf_storage: at("sock", "sk_bpf_storage")?,
        },
    })
}

/// [`sock_reads`] bits from the kernel's types: `TYPED` when the verifier knows the helper
/// `bpf_skc_to_tcp_sock` (a member of `enum bpf_func_id`, Linux 5.9+); `LOCKED_WALK` when the
/// TCP iterator is the batching one (`struct bpf_tcp_iter_state`, Linux 5.15+), which runs the
/// program with the socket locked. Without them the programs read each field through a helper
/// call and the delta walk reads every socket in full, as before either existed.
fn sock_reads_of(btf: &Btf) -> u32 {
    let has_helper = btf
        .resolve_types_by_name("bpf_func_id")
        .unwrap_or_default()
        .iter()
        .any(|ty| match ty {
            Type::Enum(e) => e.members.iter().any(|m| {
                btf.resolve_name(m)
                    .is_ok_and(|name| name == "BPF_FUNC_skc_to_tcp_sock")
            }),
            _ => false,
        });
    let locked_walk = btf
        .resolve_types_by_name("bpf_tcp_iter_state")
        .unwrap_or_default()
        .iter()
        .any(|ty| matches!(ty, Type::Struct(_)));
    let mut reads = 0;
    if has_helper {
        reads |= sock_reads::TYPED;
    }
    if locked_walk {
        reads |= sock_reads::LOCKED_WALK;
    }
    reads
}

/// Byte offset of `member` in `struct name`, looking through anonymous structs and unions;
/// fails for bitfields.
fn member_byte_offset(btf: &Btf, name: &str, member: &str) -> Result<u32> {
    for ty in btf.resolve_types_by_name(name)? {
        if let Type::Struct(st) = ty {
            if let Some(bits) = find_member(btf, &st, member, 0)? {
                return Ok(bits / 8);
            }
        }
    }
    Err(anyhow!(
        "struct {name} has no member {member} in this kernel's BTF"
    ))
}

/// Bit offset of `member` inside `st` (which starts at bit `base`), if it is there.
fn find_member(btf: &Btf, st: &btf_rs::Struct, member: &str, base: u32) -> Result<Option<u32>> {
    for m in &st.members {
        let name = btf.resolve_name(m).unwrap_or_default();
        let offset = base + m.bit_offset();
        if name == member {
            if m.bitfield_size().is_some_and(|bits| bits != 0) || !offset.is_multiple_of(8) {
                bail!("{member} is a bitfield in this kernel");
            }
            return Ok(Some(offset));
        }
        if name.is_empty() {
            if let Ok(Type::Struct(inner) | Type::Union(inner)) = btf.resolve_chained_type(m) {
                if let Some(found) = find_member(btf, &inner, member, offset)? {
                    return Ok(Some(found));
                }
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checked against facts that hold on every 64-bit kernel: `sock_common` (0x88 bytes) comes
    /// first in `struct sock`, `tcp_sock` extends it, and the inode sits after the socket.
    #[test]
    fn offsets_of_this_kernel_are_plausible() {
        let offsets = kernel_offsets().unwrap();
        assert!(offsets.sk_protocol >= 0x88, "{}", offsets.sk_protocol);
        let sock = offsets.sock;
        assert!(sock.sk_socket >= 0x88);
        assert!(sock.rcv_nxt > sock.sk_socket && sock.segs_in > 0x88);
        assert_ne!(sock.rcv_nxt, sock.copied_seq);
        assert!(sock.sk_uid >= 0x88);
        // `skc_net` sits inside `sock_common`, at the start of `struct sock`.
        assert!(sock.sk_net > 0 && sock.sk_net < 0x88, "{}", sock.sk_net);
        assert!(sock.net_inum > 0);
        assert!(sock.socket_to_ino > 0);
        assert!(sock.bytes_acked > 0x88 && sock.bytes_received > 0x88);
        assert_ne!(sock.bytes_acked, sock.bytes_received);
        assert!(sock.sk_flags > 0);
        assert!(sock.sk_bpf_storage > 0x88);
        // Every kernel this project runs on (5.15+) has both.
        assert_eq!(
            offsets.sock_reads,
            sock_reads::TYPED | sock_reads::LOCKED_WALK
        );
        let btf = Btf::from_file(VMLINUX).unwrap();
        assert!(member_byte_offset(&btf, "sock", "no_such_member").is_err());
    }
}
