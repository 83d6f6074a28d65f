//! Facts about the running kernel's types, from its BTF (`/sys/kernel/btf/vmlinux`). Rust eBPF
//! programs have no CO-RE field relocations, so the loader looks up the few offsets a typed
//! program needs and hands them over as read-only globals.

use anyhow::{anyhow, bail, Context, Result};
use btf_rs::{Backend, Btf, Type};

const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// Byte offset of `sk_protocol` in `struct sock` (a plain `u16` since Linux 5.6).
pub fn sk_protocol_offset() -> Result<u32> {
    // Mapped, not read: only the types on the way are parsed (start-up stays short).
    let btf = Btf::from_file_with_backend(VMLINUX, Backend::Mmap)
        .or_else(|_| Btf::from_file(VMLINUX))
        .with_context(|| format!("reading kernel BTF ({VMLINUX})"))?;
    member_byte_offset(&btf, "sock", "sk_protocol")
}

/// Byte offset of the direct member `member` of `struct name`; fails for bitfields.
fn member_byte_offset(btf: &Btf, name: &str, member: &str) -> Result<u32> {
    for ty in btf.resolve_types_by_name(name)? {
        let Type::Struct(st) = ty else { continue };
        for m in &st.members {
            if btf.resolve_name(m).ok().as_deref() != Some(member) {
                continue;
            }
            if m.bitfield_size().is_some_and(|bits| bits != 0) || m.bit_offset() % 8 != 0 {
                bail!("struct {name}.{member} is a bitfield in this kernel");
            }
            return Ok(m.bit_offset() / 8);
        }
    }
    Err(anyhow!("struct {name} has no member {member} in this kernel's BTF"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel this runs on has BTF for `struct sock`; the field sits after `sock_common`
    /// (at least 0x88 bytes on 64-bit).
    #[test]
    fn finds_sk_protocol_after_sock_common() {
        let offset = sk_protocol_offset().unwrap();
        assert!(offset >= 0x88, "offset {offset}");
        let btf = Btf::from_file(VMLINUX).unwrap();
        assert!(member_byte_offset(&btf, "sock", "no_such_member").is_err());
    }
}
