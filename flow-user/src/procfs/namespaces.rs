//! Every network namespace's TCP tables and sock_diag counters (and, for `flow stats`, its UDP
//! tables and cookies), each namespace read once (procfs mode; issue 13).
//!
//! `/proc/net/{tcp,udp}{,6}` and a sock_diag dump only show the namespace of the reader, so each
//! namespace [`crate::netns::discover`] finds is read on its own:
//!
//! - this process's namespace directly (`<proc>/net/tcp{,6}`, a dump from this thread);
//! - with `CAP_SYS_ADMIN`, any other namespace from a thread that entered it
//!   ([`crate::netns::run_in`]): `<proc>/thread-self/net/tcp{,6}` (`/proc/self/net` would
//!   follow the thread group leader, which stays home) and a dump from a netlink socket that
//!   thread creates, so its namespace is the entered one;
//! - without it, the tables through `/proc/<pid>/net` of a process in the namespace (when the
//!   namespace was found through one), and no counters: they stay unknown there. A namespace
//!   found only as a mount under `/run/netns` cannot be read at all.
//!
//! What could not be read is counted ([`Unreadable`]) and said in one line ([`Unreadable::notice`]).

use std::{
    fs, io,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use rustc_hash::FxHashMap;

use super::{
    dump_tcp_info, dump_udp_sockets, read_tcp_tables, read_udp_tables, TcpInfoRow, TcpRow,
    TcpTables, UdpDiagRow, UdpTables,
};
use crate::netns::{self, Discovery, Netns};

/// How long one discovery of the namespaces is used before `/proc` is listed again. A namespace
/// whose read fails (its process exited) makes the next read list `/proc` at once.
pub const DISCOVERY_INTERVAL: Duration = Duration::from_secs(2);

/// What one namespace showed: its tables and its sock_diag dump.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Read<T, D> {
    /// The namespace's inode number; `None` only when this process's own could not be stat'ed.
    pub netns: Option<u64>,
    pub tables: T,
    /// The sock_diag dump; `None` when the namespace could not be entered (counters unknown),
    /// or, where the dump is optional, when it failed.
    pub diag: Option<D>,
}

/// One namespace's TCP sockets and their counters.
pub type NamespaceRead = Read<TcpTables, Vec<TcpInfoRow>>;
/// One namespace's UDP sockets and their cookies.
pub type UdpNamespaceRead = Read<UdpTables, Vec<UdpDiagRow>>;

/// What a read takes from each namespace.
struct Source<T, D> {
    /// The tables under a `/proc/<pid>`-like root.
    tables: fn(&Path) -> io::Result<T>,
    /// A dump from the namespace itself.
    diag: fn() -> io::Result<D>,
    /// Whether a failed dump fails the read (TCP: its counters) or only leaves `diag` empty
    /// (UDP: cookies come from `udp_diag`, which a kernel may lack).
    diag_required: bool,
}

const TCP: Source<TcpTables, Vec<TcpInfoRow>> = Source {
    tables: read_tcp_tables,
    diag: dump_tcp_info,
    diag_required: true,
};

const UDP: Source<UdpTables, Vec<UdpDiagRow>> = Source {
    tables: read_udp_tables,
    diag: dump_udp_sockets,
    diag_required: false,
};

impl<T, D> Source<T, D> {
    fn diag(&self) -> io::Result<Option<D>> {
        match (self.diag)() {
            Ok(diag) => Ok(Some(diag)),
            Err(err) if !self.diag_required => {
                log::debug!("sock_diag dump: {err}");
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }
}

/// What could not be read, as counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unreadable {
    /// Namespaces whose sockets were listed (through `/proc/<pid>/net`) but whose counters
    /// could not be read.
    pub counters_unknown: usize,
    /// Namespaces not read at all (no process of ours in them to read the tables through).
    pub not_listed: usize,
    /// Processes whose namespace could not even be seen (without privileges, other users').
    pub hidden_processes: usize,
}

impl Unreadable {
    /// Namespaces seen but not (fully) read.
    pub fn namespaces(&self) -> usize {
        self.counters_unknown + self.not_listed
    }

    /// One line (no `flow:` prefix, no newline) saying what could not be read; `None` when
    /// everything could.
    pub fn notice(&self) -> Option<String> {
        let mut parts = Vec::new();
        let namespaces = self.namespaces();
        if namespaces > 0 {
            let mut what = format!(
                "{namespaces} network namespace{} not readable without CAP_SYS_ADMIN (counters \
                 unknown there",
                plural(namespaces)
            );
            if self.not_listed > 0 {
                what += &format!(
                    "; connections of {} not listed: no process of ours in {}",
                    if self.not_listed == namespaces {
                        "all".to_owned()
                    } else {
                        self.not_listed.to_string()
                    },
                    if self.not_listed == 1 { "it" } else { "them" }
                );
            }
            what.push(')');
            parts.push(what);
        }
        if self.hidden_processes > 0 {
            parts.push(format!(
                "network namespace of {} process{} not visible (permission denied)",
                self.hidden_processes,
                if self.hidden_processes == 1 { "" } else { "es" }
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Every namespace read once.
#[derive(Clone, Debug, Default)]
pub struct Reads<T, D> {
    /// This process's namespace first.
    pub namespaces: Vec<Read<T, D>>,
    pub unreadable: Unreadable,
}

pub type NamespacesRead = Reads<TcpTables, Vec<TcpInfoRow>>;
pub type UdpNamespacesRead = Reads<UdpTables, Vec<UdpDiagRow>>;

/// Reads every network namespace, keeping the discovery for [`DISCOVERY_INTERVAL`].
#[derive(Debug)]
pub struct NamespaceReader {
    proc_root: PathBuf,
    run_netns: PathBuf,
    own: Option<u64>,
    may_enter: bool,
    discovery: Discovery,
    discovered_at: Option<Instant>,
}

/// How reading one other namespace went.
enum Outcome<T, D> {
    Read(Read<T, D>),
    /// Tables read from outside; counters unknown.
    CountersUnknown(Read<T, D>),
    NotListed,
    /// Its path no longer leads to it (the process exited, the mount went away).
    Gone,
}

impl NamespaceReader {
    /// `proc_root` is normally `/proc`, `run_netns` `/run/netns`. Discovers the namespaces once,
    /// so [`NamespaceReader::expected`] can tell what will not be readable before the first read.
    pub fn new(proc_root: PathBuf, run_netns: PathBuf) -> Self {
        let own = netns::own(&proc_root).ok().map(|n| n.inode);
        let may_enter = fs::read_to_string(proc_root.join("self/status"))
            .map(|status| has_cap_sys_admin(&status))
            .unwrap_or(false);
        let mut reader = NamespaceReader {
            proc_root,
            run_netns,
            own,
            may_enter,
            discovery: Discovery::default(),
            discovered_at: None,
        };
        reader.rediscover();
        reader
    }

    /// Whether other namespaces can be entered (`CAP_SYS_ADMIN` in the effective set).
    pub fn may_enter(&self) -> bool {
        self.may_enter
    }

    /// What the current discovery says will not be readable, before reading: without
    /// `CAP_SYS_ADMIN` every other namespace's counters, and the sockets of those found only as
    /// a mount.
    pub fn expected(&self) -> Unreadable {
        let mut unreadable = Unreadable {
            hidden_processes: self.discovery.unreadable,
            ..Unreadable::default()
        };
        if !self.may_enter {
            for ns in self.others() {
                if self.pid_dir(&ns.path).is_some() {
                    unreadable.counters_unknown += 1;
                } else {
                    unreadable.not_listed += 1;
                }
            }
        }
        unreadable
    }

    /// Reads every namespace's TCP tables and counters. An error only when this process's own
    /// cannot be read.
    pub fn read(&mut self) -> io::Result<NamespacesRead> {
        self.read_from(&TCP)
    }

    /// Reads every namespace's UDP tables and cookies, the same way as [`Self::read`]. An error
    /// only when this process's own tables cannot be read.
    pub fn read_udp(&mut self) -> io::Result<UdpNamespacesRead> {
        self.read_from(&UDP)
    }

    fn read_from<T: Send, D: Send>(&mut self, source: &Source<T, D>) -> io::Result<Reads<T, D>> {
        if self
            .discovered_at
            .is_none_or(|at| at.elapsed() >= DISCOVERY_INTERVAL)
        {
            self.rediscover();
        }
        let mut namespaces = vec![Read {
            netns: self.own,
            tables: (source.tables)(&self.proc_root)?,
            diag: source.diag()?,
        }];
        let mut unreadable = Unreadable {
            hidden_processes: self.discovery.unreadable,
            ..Unreadable::default()
        };
        let mut gone = Vec::new();
        for ns in self.others() {
            if !self.read_other(source, ns, &mut namespaces, &mut unreadable) {
                gone.push(ns.inode);
            }
        }
        if !gone.is_empty() {
            // Another process may still hold it: look again now rather than drop its
            // connections for a poll.
            self.rediscover();
            unreadable.hidden_processes = self.discovery.unreadable;
            for ns in self.others().filter(|ns| gone.contains(&ns.inode)) {
                self.read_other(source, ns, &mut namespaces, &mut unreadable);
            }
        }
        Ok(Reads {
            namespaces,
            unreadable,
        })
    }

    /// Reads `ns` into `namespaces`, counting into `unreadable`; false when it is gone.
    fn read_other<T: Send, D: Send>(
        &self,
        source: &Source<T, D>,
        ns: &Netns,
        namespaces: &mut Vec<Read<T, D>>,
        unreadable: &mut Unreadable,
    ) -> bool {
        match self.read_one(source, ns) {
            Outcome::Read(read) => namespaces.push(read),
            Outcome::CountersUnknown(read) => {
                unreadable.counters_unknown += 1;
                namespaces.push(read);
            }
            Outcome::NotListed => unreadable.not_listed += 1,
            Outcome::Gone => return false,
        }
        true
    }

    fn read_one<T: Send, D: Send>(&self, source: &Source<T, D>, ns: &Netns) -> Outcome<T, D> {
        let own = self.own.unwrap_or_default();
        if self.may_enter {
            let thread_self = self.proc_root.join("thread-self");
            let inside = netns::run_in(ns, own, || {
                let tables = (source.tables)(&thread_self)?;
                let diag = source.diag()?;
                Ok((tables, diag))
            });
            match inside {
                Ok((tables, diag)) => {
                    return Outcome::Read(Read {
                        netns: Some(ns.inode),
                        tables,
                        diag,
                    })
                }
                Err(err) => log::debug!("network namespace {}: {err:#}", ns.inode),
            }
        }
        let Some(dir) = self.pid_dir(&ns.path) else {
            return if self.may_enter {
                Outcome::Gone
            } else {
                Outcome::NotListed
            };
        };
        match (source.tables)(&dir) {
            Ok(tables) => Outcome::CountersUnknown(Read {
                netns: Some(ns.inode),
                tables,
                diag: None,
            }),
            Err(err) if err.kind() == io::ErrorKind::PermissionDenied => Outcome::NotListed,
            Err(err) => {
                log::debug!("network namespace {}: {err}", ns.inode);
                Outcome::Gone
            }
        }
    }

    /// Every namespace but this process's own (none when its own is unknown: one of the others
    /// would be it, read twice).
    fn others(&self) -> impl Iterator<Item = &Netns> {
        let own = self.own;
        self.discovery
            .namespaces
            .iter()
            .filter(move |ns| own.is_some_and(|own| ns.inode != own))
    }

    /// `<proc_root>/<pid>` for a namespace path `<proc_root>/<pid>/ns/net`.
    fn pid_dir(&self, path: &Path) -> Option<PathBuf> {
        pid_dir(&self.proc_root, path)
    }

    fn rediscover(&mut self) {
        self.discovery = netns::discover(&self.proc_root, &self.run_netns);
        self.discovered_at = Some(Instant::now());
    }
}

/// `<proc_root>/<pid>` for a namespace path `<proc_root>/<pid>/ns/net`; `None` for any other
/// path (a mount under `/run/netns`, `<proc_root>/self/…`).
pub fn pid_dir(proc_root: &Path, path: &Path) -> Option<PathBuf> {
    let rest = path.strip_prefix(proc_root).ok()?;
    let mut parts = rest.components();
    let pid = parts.next()?.as_os_str().to_str()?;
    let is_pid = !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit());
    let tail: Vec<_> = parts.map(|p| p.as_os_str()).collect();
    (is_pid && tail == ["ns", "net"]).then(|| proc_root.join(pid))
}

/// Whether a `/proc/<pid>/status` text has `CAP_SYS_ADMIN` (bit 21) in `CapEff`.
pub fn has_cap_sys_admin(status: &str) -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

/// Where a table row meets its counters: the same 4-tuple in two namespaces is two sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct JoinKey {
    pub netns: Option<u64>,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// One socket of one namespace: its table row and, where sock_diag had it, its counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Joined<'a> {
    pub netns: Option<u64>,
    pub row: &'a TcpRow,
    pub info: Option<&'a TcpInfoRow>,
}

/// Joins every namespace's rows with its own sock_diag rows by [`JoinKey`] (sock_diag reports
/// inodes truncated to 32 bits, so the address pair is the key). Rows come in namespace order.
pub fn join(namespaces: &[NamespaceRead]) -> Vec<Joined<'_>> {
    let mut diag: FxHashMap<JoinKey, &TcpInfoRow> = FxHashMap::default();
    for ns in namespaces {
        for info in ns.diag.iter().flatten() {
            diag.insert(
                JoinKey {
                    netns: ns.netns,
                    local: info.local,
                    remote: info.remote,
                },
                info,
            );
        }
    }
    namespaces
        .iter()
        .flat_map(|ns| {
            let diag = &diag;
            ns.tables.rows.iter().map(move |row| Joined {
                netns: ns.netns,
                row,
                info: diag
                    .get(&JoinKey {
                        netns: ns.netns,
                        local: row.local,
                        remote: row.remote,
                    })
                    .copied(),
            })
        })
        .collect()
}

#[cfg(test)]
#[path = "namespaces_tests.rs"]
mod tests;
