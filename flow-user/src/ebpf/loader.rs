//! Loads the embedded kernel object and attaches the best rung of hooks this kernel allows.

use std::{fmt, path::Path, str::FromStr};

use anyhow::{anyhow, Context, Result};
use aya::{
    programs::{BtfTracePoint, FExit, Iter, KProbe, ProgramError, TracePoint},
    Btf, Ebpf, EbpfLoader,
};
use flow_common::{
    globals, maps, programs, SockOffsets, DEFAULT_MAP_ENTRIES, PAYLOAD_DEFAULT, PAYLOAD_MAX,
};

/// The object `cargo xtask build-ebpf` produced, embedded at build time.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flow.bpf.o"));

/// One set of hooks that counts bytes per socket. Best (cheapest) first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rung {
    /// fexit `tcp_sendmsg` / `tcp_recvmsg` (BTF trampolines), socket-local storage.
    Fentry,
    /// `tp_btf` on the `sock_send_length` / `sock_recv_length` tracepoints (Linux 6.3+),
    /// socket-local storage.
    TpBtf,
    /// kprobe + kretprobe on `tcp_sendmsg` / `tcp_recvmsg`, LRU hash.
    Kprobe,
    /// `sock:sock_send_length` / `sock:sock_recv_length` (Linux 6.3+), LRU hash.
    Tracepoint,
}

/// Where a rung keeps each socket's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    /// Socket-local storage, read out through the `iter/tcp` program.
    Local,
    /// The LRU hash keyed by socket address, read with batch lookups.
    Hashed,
}

impl Rung {
    pub const LADDER: [Rung; 4] = [Rung::Fentry, Rung::TpBtf, Rung::Kprobe, Rung::Tracepoint];

    pub fn name(self) -> &'static str {
        match self {
            Rung::Fentry => "fentry",
            Rung::TpBtf => "tp_btf",
            Rung::Kprobe => "kprobe",
            Rung::Tracepoint => "tracepoint",
        }
    }

    pub fn store(self) -> Store {
        match self {
            Rung::Fentry | Rung::TpBtf => Store::Local,
            Rung::Kprobe | Rung::Tracepoint => Store::Hashed,
        }
    }

    /// Programs of this rung, in the order they are attached: the hook that closes entries
    /// first (no entry is made that nothing would close), then the counting hooks (what a
    /// kernel refuses), then the socket iterator.
    fn hooks(self) -> &'static [Hook] {
        const LOCAL_CLOSE: Hook = Hook::BtfTracePoint("flow_destroy_btf", "tcp_destroy_sock");
        const HASHED_CLOSE: Hook = Hook::TracePoint("flow_destroy_tp", "tcp", "tcp_destroy_sock");
        const LOCAL_READ: Hook = Hook::Iter(programs::SOCKET_ITER, "tcp");
        match self {
            Rung::Fentry => &[
                LOCAL_CLOSE,
                Hook::FExit("flow_tx_fexit", "tcp_sendmsg"),
                Hook::FExit("flow_rx_fexit", "tcp_recvmsg"),
                LOCAL_READ,
            ],
            Rung::TpBtf => &[
                LOCAL_CLOSE,
                Hook::BtfTracePoint("flow_tx_btf", "sock_send_length"),
                Hook::BtfTracePoint("flow_rx_btf", "sock_recv_length"),
                LOCAL_READ,
            ],
            Rung::Kprobe => &[
                HASHED_CLOSE,
                Hook::KProbe("flow_tx_kprobe", "tcp_sendmsg"),
                Hook::KProbe("flow_tx_kretprobe", "tcp_sendmsg"),
                Hook::KProbe("flow_rx_kprobe", "tcp_recvmsg"),
                Hook::KProbe("flow_rx_kretprobe", "tcp_recvmsg"),
            ],
            Rung::Tracepoint => &[
                HASHED_CLOSE,
                Hook::TracePoint("flow_tx_tp", "sock", "sock_send_length"),
                Hook::TracePoint("flow_rx_tp", "sock", "sock_recv_length"),
            ],
        }
    }
}

impl fmt::Display for Rung {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Rung {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Rung::LADDER
            .into_iter()
            .find(|r| r.name() == s || (s == "fexit" && *r == Rung::Fentry))
            .ok_or_else(|| {
                format!("unknown rung `{s}` (expected fentry, tp_btf, kprobe or tracepoint)")
            })
    }
}

/// Attached hooks, owned by flow rather than by aya so they can be detached in parallel.
type Links = Vec<Box<dyn Send>>;

#[derive(Clone, Copy, Debug)]
enum Hook {
    FExit(&'static str, &'static str),
    BtfTracePoint(&'static str, &'static str),
    KProbe(&'static str, &'static str),
    TracePoint(&'static str, &'static str, &'static str),
    /// Loaded only: userspace attaches it for each read-out.
    Iter(&'static str, &'static str),
}

impl Hook {
    fn program(self) -> &'static str {
        match self {
            Hook::FExit(p, _)
            | Hook::BtfTracePoint(p, _)
            | Hook::KProbe(p, _)
            | Hook::TracePoint(p, _, _)
            | Hook::Iter(p, _) => p,
        }
    }

    fn attach(self, ebpf: &mut Ebpf, btf: Option<&Btf>, links: &mut Links) -> Result<()> {
        let name = self.program();
        let program = ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("program {name} missing from the object"))?;
        match self {
            Hook::FExit(_, function) => {
                let btf = btf.ok_or_else(|| anyhow!("no kernel BTF (/sys/kernel/btf/vmlinux)"))?;
                let program: &mut FExit = program.try_into()?;
                program.load(function, btf).map_err(explain)?;
                let link = program.attach()?;
                links.push(Box::new(program.take_link(link)?));
            }
            Hook::BtfTracePoint(_, event) => {
                let btf = btf.ok_or_else(|| anyhow!("no kernel BTF (/sys/kernel/btf/vmlinux)"))?;
                let program: &mut BtfTracePoint = program.try_into()?;
                program.load(event, btf).map_err(explain)?;
                let link = program.attach().map_err(explain)?;
                links.push(Box::new(program.take_link(link)?));
            }
            Hook::Iter(_, target) => {
                let btf = btf.ok_or_else(|| anyhow!("no kernel BTF (/sys/kernel/btf/vmlinux)"))?;
                let program: &mut Iter = program.try_into()?;
                program.load(target, btf).map_err(explain)?;
            }
            Hook::KProbe(_, function) => {
                let program: &mut KProbe = program.try_into()?;
                program.load().map_err(explain)?;
                let link = program.attach(function, 0).map_err(explain)?;
                links.push(Box::new(program.take_link(link)?));
            }
            Hook::TracePoint(_, category, event) => {
                let program: &mut TracePoint = program.try_into()?;
                program.load().map_err(explain)?;
                let link = program
                    .attach(category, event)
                    .map_err(explain)
                    .with_context(|| format!("tracepoint {category}:{event}"))?;
                links.push(Box::new(program.take_link(link)?));
            }
        }
        Ok(())
    }

    /// Detaches and unloads, so a refused rung leaves no program, link or fd behind.
    fn release(self, ebpf: &mut Ebpf) {
        let Some(program) = ebpf.program_mut(self.program()) else {
            return;
        };
        let _ = match self {
            Hook::FExit(..) => <&mut FExit>::try_from(program).map(|p| p.unload()),
            Hook::BtfTracePoint(..) => <&mut BtfTracePoint>::try_from(program).map(|p| p.unload()),
            Hook::Iter(..) => <&mut Iter>::try_from(program).map(|p| p.unload()),
            Hook::KProbe(..) => <&mut KProbe>::try_from(program).map(|p| p.unload()),
            Hook::TracePoint(..) => <&mut TracePoint>::try_from(program).map(|p| p.unload()),
        };
    }
}

/// Turns the kernel's bare errno into what it means for this tool.
fn explain(err: ProgramError) -> anyhow::Error {
    // An empty verifier log adds nothing but noise to a refusal reason.
    let text = format!("{:#}", anyhow::Error::from(err)).replace(". Verifier output: : ", ": ");
    let hint = if text.contains("Operation not permitted") || text.contains("EPERM") {
        " (denied by the kernel's policy or missing CAP_BPF/CAP_PERFMON)"
    } else if text.contains("No such file or directory") {
        " (not available in this kernel)"
    } else {
        ""
    };
    anyhow!("{text}{hint}")
}

/// Why a better rung was not used.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Refusal {
    pub rung: Rung,
    pub reason: String,
}

/// How to load the kernel program.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Capacity of the per-socket map (LRU: the coldest sockets are evicted beyond it).
    pub map_entries: u32,
    /// Use this rung or fail, instead of walking the ladder.
    pub rung: Option<Rung>,
    /// Payload prefix copied per captured message, in bytes (at most `PAYLOAD_MAX`); 0 turns
    /// payload capture off (the verifier then drops the capture code from the counting hooks).
    pub payload_bytes: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            map_entries: DEFAULT_MAP_ENTRIES,
            rung: None,
            payload_bytes: PAYLOAD_DEFAULT,
        }
    }
}

/// The loaded, attached kernel program. Dropping it detaches every hook and frees every map.
pub struct KernelProgram {
    /// Declared before `ebpf`: links are detached (in `Drop`) before programs are unloaded.
    links: Links,
    pub(super) ebpf: Ebpf,
    rung: Rung,
    refused: Vec<Refusal>,
    map_entries: u32,
    payload_bytes: u32,
    /// The read buffer of the socket iterator, kept between polls.
    pub(super) iter_buffer: Vec<u8>,
}

impl KernelProgram {
    /// Loads the object and attaches the first rung that works (or the forced one).
    pub fn load(options: &LoadOptions) -> Result<KernelProgram> {
        raise_memlock_limit();
        ensure_tracefs();
        let payload_bytes = options.payload_bytes.min(PAYLOAD_MAX as u32);
        let offsets = super::kernel_btf::kernel_offsets();
        let (sk_protocol, sock_offsets) = offsets
            .as_ref()
            .map_or((0, SockOffsets::default()), |o| (o.sk_protocol, o.sock));
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(maps::SOCKETS, options.map_entries.max(1))
            .override_global(globals::CAPTURE_BYTES, &payload_bytes, true)
            .override_global(globals::SK_PROTOCOL_OFFSET, &sk_protocol, true)
            .override_global(globals::SOCK_OFFSETS, &sock_offsets, true)
            .load(OBJECT)
            .map_err(|err| {
                let text = format!("{:#}", anyhow::Error::from(err));
                if text.contains("Operation not permitted") {
                    anyhow!("loading the kernel program was refused: flow needs root or CAP_BPF+CAP_PERFMON")
                } else {
                    anyhow!("loading the kernel program failed: {text}")
                }
            })?;
        let btf = Btf::from_sys_fs().ok();
        let candidates: Vec<Rung> = match options.rung {
            Some(rung) => vec![rung],
            None => Rung::LADDER.to_vec(),
        };
        let mut refused = Vec::new();
        for rung in candidates {
            let attached = match (rung.store(), &offsets) {
                // Without the offsets the tp_btf hooks cannot tell TCP from other sockets, and
                // the socket iterator cannot read queues, inodes and segments.
                (Store::Local, Err(err)) => Err(anyhow!("{err:#}")),
                _ => attach_rung(&mut ebpf, rung, btf.as_ref()),
            };
            match attached {
                Ok(links) => {
                    return Ok(KernelProgram {
                        links,
                        ebpf,
                        rung,
                        refused,
                        map_entries: options.map_entries.max(1),
                        payload_bytes,
                        iter_buffer: Vec::new(),
                    });
                }
                Err(err) => refused.push(Refusal {
                    rung,
                    reason: format!("{err:#}"),
                }),
            }
        }
        let reasons: Vec<String> = refused
            .iter()
            .map(|r| format!("{}: {}", r.rung, r.reason))
            .collect();
        Err(anyhow!(
            "no rung of hooks could attach on this kernel ({})",
            reasons.join("; ")
        ))
    }

    /// The rung that is counting.
    pub fn rung(&self) -> Rung {
        self.rung
    }

    /// Better rungs that were tried and refused, with the kernel's reason.
    pub fn refused(&self) -> &[Refusal] {
        &self.refused
    }

    /// Capacity of the LRU hash the untyped rungs count in; 0 on the typed rungs, whose
    /// socket-local storage has no capacity (an entry per socket, however many).
    pub fn map_capacity(&self) -> u32 {
        match self.rung.store() {
            Store::Local => 0,
            Store::Hashed => self.map_entries,
        }
    }

    /// Names of the programs loaded into the kernel (attached or not yet released).
    pub fn loaded_programs(&self) -> Vec<&str> {
        self.ebpf
            .programs()
            .filter(|(_, program)| program.fd().is_ok())
            .map(|(name, _)| name)
            .collect()
    }

    /// Bytes of payload captured per message (0: capture off).
    pub fn payload_bytes(&self) -> u32 {
        self.payload_bytes
    }

    /// One line for users: which rung runs and why the better ones did not.
    pub fn describe(&self) -> String {
        let mut line = format!("attached the {} rung", self.rung);
        if self.payload_bytes == 0 {
            line.push_str(" (payload capture off)");
        }
        for refusal in &self.refused {
            line.push_str(&format!("; {} refused: {}", refusal.rung, refusal.reason));
        }
        line
    }
}

impl Drop for KernelProgram {
    fn drop(&mut self) {
        // Each detach waits out an RCU grace period in the kernel (tens of milliseconds in a VM);
        // on parallel threads the waits overlap, so exit takes about one instead of one per hook.
        let links = std::mem::take(&mut self.links);
        std::thread::scope(|scope| {
            for link in links {
                scope.spawn(move || drop(link));
            }
        });
    }
}

fn attach_rung(ebpf: &mut Ebpf, rung: Rung, btf: Option<&Btf>) -> Result<Links> {
    let mut links = Links::new();
    for (index, hook) in rung.hooks().iter().enumerate() {
        if let Err(err) = hook.attach(ebpf, btf, &mut links) {
            drop(links);
            for attached in &rung.hooks()[..=index] {
                attached.release(ebpf);
            }
            return Err(err).with_context(|| format!("{} ({})", hook.program(), rung));
        }
    }
    Ok(links)
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones to the memory cgroup, so
/// failing to raise it is only worth a debug line.
fn raise_memlock_limit() {
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
fn ensure_tracefs() {
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
