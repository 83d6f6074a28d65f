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
