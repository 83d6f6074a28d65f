//! The attach lifecycle: attach a rung's hooks in order, release them all when one is refused,
//! and detach what is attached in parallel.

use std::os::fd::{AsFd, OwnedFd};

use anyhow::{anyhow, Context, Result};
use aya::{
    maps::Map,
    programs::{BtfTracePoint, CgroupAttachMode, CgroupSock, FExit, Iter, KProbe, TracePoint},
    Btf, Ebpf,
};

use super::{
    load_errors::explain,
    rungs::{Hook, Rung},
    sys,
};

/// Attached hooks, owned by flow rather than by aya so they can be detached in parallel.
pub(super) type Links = Vec<Box<dyn Send>>;

/// What a rung's attach leaves: its hooks' links, and the link of the storage iterator (typed
/// rungs), which each incremental read starts an iterator on.
#[derive(Default)]
pub(super) struct Attached {
    pub links: Links,
    pub store_iter: Option<OwnedFd>,
    /// Why the storage iterator is not there, when the kernel refused it.
    pub store_iter_refused: Option<String>,
}

/// Typed rungs: attaches the `cgroup/sock_release` program that publishes a TCP socket's
/// counters when its application releases it (a third publish point, one the kernel never
/// skips; see `flow_common::SockClosed`), to the cgroup v2 root as UDP's programs are.
pub(super) fn attach_tcp_release(ebpf: &mut Ebpf) -> Result<Links> {
    let root = super::udp::cgroup2_root()?;
    let cgroup =
        std::fs::File::open(&root).with_context(|| format!("opening {}", root.display()))?;
    let name = flow_common::programs::TCP_RELEASE;
    let program: &mut CgroupSock = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing"))?
        .try_into()?;
    program
        .load()
        .map_err(explain)
        .with_context(|| format!("loading {name}"))?;
    let link = program
        .attach(cgroup.as_fd(), CgroupAttachMode::Single)
        .with_context(|| format!("attaching {name} to {}", root.display()))?;
    Ok(vec![Box::new(program.take_link(link)?)])
}

impl Hook {
    /// Loads and attaches the hook; with `load_only`, a per-event hook is loaded (the kernel's
    /// verdict on the rung) and released again, not attached.
    fn attach(
        self,
        ebpf: &mut Ebpf,
        btf: Option<&Btf>,
        attached: &mut Attached,
        load_only: bool,
    ) -> Result<()> {
        let links = &mut attached.links;
        let name = self.program();
        let program = ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("program {name} missing from the object"))?;
        match self {
            Hook::FExit(_, function) => {
                let btf = btf.ok_or_else(|| anyhow!("no kernel BTF (/sys/kernel/btf/vmlinux)"))?;
                let program: &mut FExit = program.try_into()?;
                program.load(function, btf).map_err(explain)?;
                if load_only {
                    return program.unload().map_err(Into::into);
                }
                let link = program.attach()?;
                links.push(Box::new(program.take_link(link)?));
            }
            Hook::BtfTracePoint(_, event) => {
                let btf = btf.ok_or_else(|| anyhow!("no kernel BTF (/sys/kernel/btf/vmlinux)"))?;
                let program: &mut BtfTracePoint = program.try_into()?;
                program.load(event, btf).map_err(explain)?;
                if load_only {
                    return program.unload().map_err(Into::into);
                }
                let link = program.attach().map_err(explain)?;
                links.push(Box::new(program.take_link(link)?));
            }
            Hook::Iter(_, target) => {
                let btf = btf.ok_or_else(|| anyhow!("no kernel BTF (/sys/kernel/btf/vmlinux)"))?;
                let program: &mut Iter = program.try_into()?;
                program.load(target, btf).map_err(explain)?;
            }
            Hook::MapIter(name, target, map) => {
                let btf = btf.ok_or_else(|| anyhow!("no kernel BTF (/sys/kernel/btf/vmlinux)"))?;
                let program: &mut Iter = program.try_into()?;
                program.load(target, btf).map_err(explain)?;
                // aya 0.14's `Iter::attach` passes no map: the link is made by hand.
                let program_fd = program.fd()?.as_fd().try_clone_to_owned()?;
                let map_fd = match ebpf.map(map) {
                    Some(Map::SkStorage(data)) => data.fd().as_fd(),
                    _ => return Err(anyhow!("map {map} missing or not socket storage")),
                };
                let link = sys::map_iter_link(program_fd.as_fd(), map_fd)
                    .with_context(|| format!("linking {name} to {map}"))?;
                attached.store_iter = Some(link);
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
            Hook::Iter(..) | Hook::MapIter(..) => {
                <&mut Iter>::try_from(program).map(|p| p.unload())
            }
            Hook::KProbe(..) => <&mut KProbe>::try_from(program).map(|p| p.unload()),
            Hook::TracePoint(..) => <&mut TracePoint>::try_from(program).map(|p| p.unload()),
        };
    }
}

/// Attaches `rung`'s hooks in order. Without `per_event` (sequence counting and no payload
/// capture on a typed rung) the per-event hooks are only loaded, to learn whether the kernel
/// takes the rung, and never attached: nothing runs per send or receive.
pub(super) fn attach_rung(
    ebpf: &mut Ebpf,
    rung: Rung,
    btf: Option<&Btf>,
    per_event: bool,
) -> Result<Attached> {
    let mut attached = Attached::default();
    for (index, hook) in rung.hooks().iter().enumerate() {
        let load_only = !per_event && hook.per_event();
        if let Err(err) = hook.attach(ebpf, btf, &mut attached, load_only) {
            if let Hook::MapIter(..) = hook {
                // Optional: incremental reads fall back to an `iter/tcp` program.
                hook.release(ebpf);
                let reason = format!("{err:#}");
                log::debug!("{} refused: {reason}", hook.program());
                attached.store_iter_refused = Some(reason);
                continue;
            }
            drop(attached);
            for attached in &rung.hooks()[..=index] {
                attached.release(ebpf);
            }
            return Err(err).with_context(|| format!("{} ({})", hook.program(), rung));
        }
    }
    Ok(attached)
}

/// Each detach waits out an RCU grace period in the kernel (tens of milliseconds in a VM); on
/// parallel threads the waits overlap, so exit takes about one instead of one per hook.
pub(super) fn detach(links: Links) {
    std::thread::scope(|scope| {
        for link in links {
            scope.spawn(move || drop(link));
        }
    });
}
