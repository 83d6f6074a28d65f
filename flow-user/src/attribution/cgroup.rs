//! Cgroup ids to cgroup v2 paths.
//!
//! The kernel program reads `bpf_get_current_cgroup_id()`: on cgroup v2 that is the inode number
//! of the cgroup's directory under the cgroup2 mount. [`CgroupResolver`] finds that mount in
//! `/proc/self/mountinfo` (type `cgroup2`; `/sys/fs/cgroup` on a unified host,
//! `/sys/fs/cgroup/unified` on a hybrid one), walks it once to map every directory's inode to its
//! path, and walks it again for an id it does not know — at most once per
//! [`CgroupResolver::set_rescan_interval`], within [`ScanLimits`] — so a stream of unknown ids
//! (cgroups already removed) costs one walk per interval, not one per lookup. Everything is read
//! under a root (`/` on the host) so tests can use fixture trees.

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

/// Bounds of one walk of the cgroup tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanLimits {
    /// Levels below the mount (the kernel allows `cgroup.max.depth`, unlimited by default).
    pub max_depth: usize,
    /// Directories recorded (a busy Kubernetes node has a few thousand cgroups).
    pub max_entries: usize,
}

impl Default for ScanLimits {
    fn default() -> Self {
        ScanLimits {
            max_depth: 32,
            max_entries: 100_000,
        }
    }
}

/// What one walk found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Directories (cgroups) recorded.
    pub cgroups: usize,
    /// True when a limit stopped the walk before it saw everything.
    pub truncated: bool,
}

/// The cgroup2 mount: where it is, and which cgroup its root is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup2Mount {
    /// The mount point, under the resolver's root.
    pub dir: PathBuf,
    /// The cgroup path of the mount's root directory (`/` unless a subtree is mounted, as in a
    /// container with its own cgroup namespace).
    pub cgroup_root: String,
}

/// Cgroup id (directory inode) → path relative to the cgroup2 mount, cached.
#[derive(Debug)]
pub struct CgroupResolver {
    root: PathBuf,
    mount: Option<Cgroup2Mount>,
    ids: HashMap<u64, Arc<str>>,
    scanned_at: Option<Instant>,
    rescan_interval: Duration,
    limits: ScanLimits,
    last_scan: ScanReport,
}

impl Default for CgroupResolver {
    fn default() -> Self {
        Self::new()
    }
}

impl CgroupResolver {
    /// The host's cgroup2 mount, from `/proc/self/mountinfo`.
    pub fn new() -> Self {
        Self::with_root("/")
    }

    /// Reads `<root>/proc/self/mountinfo`, `<root>/<mount point>` and `<root>/proc/<pid>/cgroup`.
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let mount = fs::read_to_string(root.join("proc/self/mountinfo"))
            .ok()
            .and_then(|text| find_cgroup2(&text))
            .map(|(point, cgroup_root)| Cgroup2Mount {
                dir: under(&root, &point),
                cgroup_root,
            });
        CgroupResolver {
            root,
            mount,
            ids: HashMap::new(),
            scanned_at: None,
            rescan_interval: Duration::from_secs(5),
            limits: ScanLimits::default(),
            last_scan: ScanReport::default(),
        }
    }

    /// The cgroup2 mount, `None` when there is none (a cgroup v1-only host).
    pub fn mount(&self) -> Option<&Cgroup2Mount> {
        self.mount.as_ref()
    }

    /// The shortest time between two walks for unknown ids (5 s).
    pub fn set_rescan_interval(&mut self, interval: Duration) {
        self.rescan_interval = interval;
    }

    pub fn set_limits(&mut self, limits: ScanLimits) {
        self.limits = limits;
    }

    /// What the latest walk found.
    pub fn last_scan(&self) -> ScanReport {
        self.last_scan
    }

    /// Ids currently known.
    pub fn known(&self) -> usize {
        self.ids.len()
    }

    /// The path of cgroup `id` (`/system.slice/nginx.service`); an unknown id walks the tree
    /// again when the last walk is older than the rescan interval, else it is `None`.
    pub fn resolve(&mut self, id: u64) -> Option<Arc<str>> {
        if let Some(path) = self.ids.get(&id) {
            return Some(path.clone());
        }
        if self
            .scanned_at
            .is_some_and(|at| at.elapsed() < self.rescan_interval)
        {
            return None;
        }
        self.rescan();
        self.ids.get(&id).cloned()
    }

    /// Walks the tree now (whatever the interval) and replaces the map with what it finds:
    /// removed cgroups are forgotten.
    pub fn rescan(&mut self) -> ScanReport {
        self.scanned_at = Some(Instant::now());
        let Some(mount) = &self.mount else {
            self.last_scan = ScanReport::default();
            return self.last_scan;
        };
        let mut ids = HashMap::new();
        let mut report = ScanReport::default();
        // Paths already known keep their allocation (connections hold them).
        let known: HashMap<&str, &Arc<str>> =
            self.ids.values().map(|path| (&**path, path)).collect();
        let mut record = |ino: u64, path: String| {
            let shared = known
                .get(path.as_str())
                .map(|p| Arc::clone(p))
                .unwrap_or_else(|| Arc::from(path));
            ids.insert(ino, shared);
        };
        let mut stack: Vec<(PathBuf, String, usize)> = Vec::new();
        if let Ok(meta) = fs::metadata(&mount.dir) {
            record(meta.ino(), mount.cgroup_root.clone());
            report.cgroups = 1;
            stack.push((mount.dir.clone(), String::new(), 0));
        }
        'walk: while let Some((dir, relative, depth)) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                // Cgroup directories only; the interface files are regular files.
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                if report.cgroups >= self.limits.max_entries {
                    report.truncated = true;
                    break 'walk;
                }
                if depth >= self.limits.max_depth {
                    report.truncated = true;
                    break;
                }
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                let child = format!("{relative}/{name}");
                record(meta.ino(), join_cgroup(&mount.cgroup_root, &child));
                report.cgroups += 1;
                stack.push((entry.path(), child, depth + 1));
            }
        }
        self.ids = ids;
        self.last_scan = report;
        report
    }

    /// The cgroup v2 path of process `pid`: the `0::<path>` line of `<root>/proc/<pid>/cgroup`.
    pub fn from_proc(&self, pid: u32) -> Option<Arc<str>> {
        let text = fs::read_to_string(self.root.join(format!("proc/{pid}/cgroup"))).ok()?;
        cgroup_v2_line(&text).map(Arc::from)
    }
}

/// The path of the `0::<path>` line of a `/proc/<pid>/cgroup` file.
pub fn cgroup_v2_line(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(|path| path.strip_suffix(" (deleted)").unwrap_or(path))
        .filter(|path| path.starts_with('/'))
}

/// The first `cgroup2` mount of a mountinfo text: (mount point, root of the mount), preferring
/// one that mounts the whole hierarchy (root `/`).
pub fn find_cgroup2(mountinfo: &str) -> Option<(String, String)> {
    let mut found: Option<(String, String)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if dash < 5 || fields.get(dash + 1) != Some(&"cgroup2") {
            continue;
        }
        let (root, point) = (unescape(fields[3]), unescape(fields[4]));
        if root == "/" {
            return Some((point, root));
        }
        found.get_or_insert((point, root));
    }
    found
}

/// mountinfo escapes space, tab, newline and backslash as three octal digits (`\040`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `mount point` under `root` (`/` + `/sys/fs/cgroup` = `/sys/fs/cgroup`).
fn under(root: &Path, point: &str) -> PathBuf {
    root.join(point.trim_start_matches('/'))
}

/// The cgroup path of `relative` (`/a/b`) below a mount whose root is `cgroup_root`.
fn join_cgroup(cgroup_root: &str, relative: &str) -> String {
    if cgroup_root == "/" || cgroup_root.is_empty() {
        relative.to_string()
    } else {
        format!("{}{relative}", cgroup_root.trim_end_matches('/'))
    }
}
