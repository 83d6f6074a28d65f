//! The attach lifecycle: attach a rung's hooks in order, release them all when one is refused,
//! and detach what is attached in parallel.

use anyhow::{anyhow, Context, Result};
use aya::{
    programs::{BtfTracePoint, FExit, Iter, KProbe, TracePoint},
    Btf, Ebpf,
};

use super::{
    load_errors::explain,
    rungs::{Hook, Rung},
};

/// Attached hooks, owned by flow rather than by aya so they can be detached in parallel.
pub(super) type Links = Vec<Box<dyn Send>>;

impl Hook {
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

pub(super) fn attach_rung(ebpf: &mut Ebpf, rung: Rung, btf: Option<&Btf>) -> Result<Links> {
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

/// Each detach waits out an RCU grace period in the kernel (tens of milliseconds in a VM); on
/// parallel threads the waits overlap, so exit takes about one instead of one per hook.
pub(super) fn detach(links: Links) {
    std::thread::scope(|scope| {
        for link in links {
            scope.spawn(move || drop(link));
        }
    });
}
