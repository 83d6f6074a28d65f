//! Network namespaces: which exist (one process in each, or a bind mount under `/run/netns`),
//! and running a read inside one. Tables that are per namespace (`/proc/net/tcp`, sock_diag,
//! the `iter/tcp` socket iterator) are read once per namespace this way.
//!
//! `setns(2)` changes the calling thread's namespace, so each read runs on a short-lived thread
//! of its own: the caller's threads never leave their namespace.

use rustc_hash::FxHashMap as HashMap;
use std::{
    fs::{self, File},
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, Context, Result};

/// A network namespace: its inode number (what `stat -L /proc/<pid>/ns/net` shows) and a path
/// that refers to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Netns {
    pub inode: u64,
    pub path: PathBuf,
}

/// The namespace of this process.
pub fn own(proc_root: &Path) -> Result<Netns> {
    let path = proc_root.join("self/ns/net");
    let inode = fs::metadata(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .ino();
    Ok(Netns { inode, path })
}

/// Every network namespace that has a process in it or is mounted under `run_netns` (what
/// `ip netns add` makes), each once, this process's first. Namespaces of processes we may not
/// inspect are skipped: [`Discovery::unreadable`] counts them.
pub fn discover(proc_root: &Path, run_netns: &Path) -> Discovery {
    let mut found: HashMap<u64, PathBuf> = HashMap::default();
    let mut order = Vec::new();
    let mut unreadable = 0;
    let mut add = |inode: u64, path: PathBuf, order: &mut Vec<u64>| {
        if let std::collections::hash_map::Entry::Vacant(slot) = found.entry(inode) {
            slot.insert(path);
            order.push(inode);
        }
    };
    if let Ok(me) = own(proc_root) {
        add(me.inode, me.path, &mut order);
    }
    if let Ok(entries) = fs::read_dir(proc_root) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.as_encoded_bytes().iter().all(u8::is_ascii_digit) {
                continue;
            }
            let path = entry.path().join("ns/net");
            match fs::metadata(&path) {
                Ok(meta) => add(meta.ino(), path, &mut order),
                Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => unreadable += 1,
                // Gone since the listing, or a kernel thread without one.
                Err(_) => {}
            }
        }
    }
    if let Ok(entries) = fs::read_dir(run_netns) {
        for entry in entries.flatten() {
            if let Ok(meta) = fs::metadata(entry.path()) {
                add(meta.ino(), entry.path(), &mut order);
            }
        }
    }
    Discovery {
        namespaces: order
            .into_iter()
            .map(|inode| Netns {
                inode,
                path: found.remove(&inode).expect("added"),
            })
            .collect(),
        unreadable,
    }
}

/// What [`discover`] found.
#[derive(Clone, Debug, Default)]
pub struct Discovery {
    pub namespaces: Vec<Netns>,
    /// Processes whose namespace could not be read (without privileges: other users').
    pub unreadable: usize,
}

/// Runs `work` on a thread that has entered `netns` (or on the calling thread when it is this
/// process's own namespace), and returns its result. Entering another namespace needs
/// `CAP_SYS_ADMIN`; without it this is an error naming the namespace.
pub fn run_in<T: Send>(
    netns: &Netns,
    own: u64,
    work: impl FnOnce() -> Result<T> + Send,
) -> Result<T> {
    if netns.inode == own {
        return work();
    }
    let file = File::open(&netns.path)
        .with_context(|| format!("opening network namespace {}", netns.path.display()))?;
    thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: a valid fd of a network namespace; only this thread moves.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(anyhow!(
                        "entering network namespace {} ({}): {}",
                        netns.inode,
                        netns.path.display(),
                        std::io::Error::last_os_error()
                    ));
                }
                work()
            })
            .join()
            .map_err(|_| anyhow!("the reader of network namespace {} panicked", netns.inode))?
    })
}

/// The host's namespaces, rediscovered at most every [`NamespaceCache::INTERVAL`] (a discovery
/// stats every process's `ns/net`: about a millisecond per thousand processes).
#[derive(Debug)]
pub struct NamespaceCache {
    proc_root: PathBuf,
    run_netns: PathBuf,
    own: Option<u64>,
    found: Option<(Instant, Discovery)>,
}

impl NamespaceCache {
    pub const INTERVAL: Duration = Duration::from_secs(2);

    /// `/proc` and `/run/netns`.
    pub fn host() -> NamespaceCache {
        NamespaceCache::new(PathBuf::from("/proc"), PathBuf::from("/run/netns"))
    }

    pub fn new(proc_root: PathBuf, run_netns: PathBuf) -> NamespaceCache {
        NamespaceCache {
            proc_root,
            run_netns,
            own: None,
            found: None,
        }
    }

    /// This process's namespace (0 if it cannot be read).
    pub fn own(&mut self) -> u64 {
        if self.own.is_none() {
            self.own = Some(own(&self.proc_root).map_or(0, |n| n.inode));
        }
        self.own.unwrap_or(0)
    }

    /// Every namespace, this process's first; at most [`Self::INTERVAL`] old.
    pub fn current(&mut self) -> &Discovery {
        let stale = self
            .found
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() >= Self::INTERVAL);
        if stale {
            let found = discover(&self.proc_root, &self.run_netns);
            self.found = Some((Instant::now(), found));
        }
        &self.found.as_ref().expect("just set").1
    }

    /// The next [`Self::current`] discovers again (a namespace's path vanished).
    pub fn forget(&mut self) {
        self.found = None;
    }
}

/// What [`read_each`] could not read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Namespaces whose path vanished since discovery (their process exited).
    pub vanished: Vec<u64>,
    /// Namespaces that could not be entered (without `CAP_SYS_ADMIN`), with the reason.
    pub refused: Vec<(u64, String)>,
}

impl Skipped {
    pub fn count(&self) -> usize {
        self.vanished.len() + self.refused.len()
    }

    /// One line naming every skipped namespace, `None` when none was.
    pub fn describe(&self) -> Option<String> {
        if self.count() == 0 {
            return None;
        }
        let mut parts = Vec::new();
        if !self.vanished.is_empty() {
            parts.push(format!("gone since discovery: {:?}", self.vanished));
        }
        for (inode, reason) in &self.refused {
            parts.push(format!("{inode}: {reason}"));
        }
        Some(format!(
            "{} network namespace(s) not read ({})",
            self.count(),
            parts.join("; ")
        ))
    }
}

/// Runs `work` once inside each of `namespaces` (see [`run_in`]), in order, and returns each
/// result with its namespace's inode. A namespace that cannot be entered is skipped and
/// reported; an error of `work` itself is returned.
pub fn read_each<T: Send>(
    namespaces: &[Netns],
    own: u64,
    mut work: impl FnMut(&Netns) -> Result<T> + Send,
) -> Result<(Vec<(u64, T)>, Skipped)> {
    let mut out = Vec::with_capacity(namespaces.len());
    let mut skipped = Skipped::default();
    for netns in namespaces {
        let entered = std::sync::atomic::AtomicBool::new(false);
        let result = run_in(netns, own, || {
            entered.store(true, std::sync::atomic::Ordering::Relaxed);
            work(netns)
        });
        match result {
            Ok(value) => out.push((netns.inode, value)),
            Err(err) if entered.load(std::sync::atomic::Ordering::Relaxed) => return Err(err),
            Err(err) => {
                let gone = err
                    .downcast_ref::<std::io::Error>()
                    .or_else(|| err.root_cause().downcast_ref::<std::io::Error>())
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound);
                if gone {
                    skipped.vanished.push(netns.inode);
                } else {
                    skipped.refused.push((netns.inode, format!("{err:#}")));
                }
            }
        }
    }
    Ok((out, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_namespace_comes_first_and_once() {
        let proc_root = Path::new("/proc");
        let me = own(proc_root).unwrap();
        let found = discover(proc_root, Path::new("/nonexistent/netns"));
        assert_eq!(found.namespaces.first().map(|n| n.inode), Some(me.inode));
        let mut inodes: Vec<u64> = found.namespaces.iter().map(|n| n.inode).collect();
        let before = inodes.len();
        inodes.sort_unstable();
        inodes.dedup();
        assert_eq!(inodes.len(), before, "each namespace once");
    }

    #[test]
    fn work_in_the_own_namespace_runs_here() {
        let me = own(Path::new("/proc")).unwrap();
        let here = thread::current().id();
        let ran_on = run_in(&me, me.inode, || Ok(thread::current().id())).unwrap();
        assert_eq!(ran_on, here);
    }

    #[test]
    fn a_missing_namespace_is_an_error_not_a_panic() {
        let ghost = Netns {
            inode: 1,
            path: PathBuf::from("/nonexistent/ns/net"),
        };
        let err = run_in(&ghost, 2, || Ok(())).unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/ns/net"),
            "{err:#}"
        );
    }
}
