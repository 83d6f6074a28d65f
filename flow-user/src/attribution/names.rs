//! Names the host's files give containers and pods, read under a configurable root (`/` on a
//! host, a fixture directory in tests):
//!
//! | what | file |
//! | --- | --- |
//! | Docker container name | `<root>/var/lib/docker/containers/<id>/config.v2.json`, `"Name"` without its leading `/` |
//! | Podman container name | `<root>/var/lib/containers/storage/overlay-containers/containers.json` (and `volatile-containers.json`): containers/storage's records, first of `"names"` (the per-container `userdata/config.json` is the OCI runtime spec and holds no name) |
//! | CRI-O container name | the same records: CRI-O names its containers `k8s_<container>_<pod>_<namespace>_<uid>_<attempt>` |
//! | Kubernetes pod namespace and name | `<root>/var/log/pods/<namespace>_<name>_<uid>/` (the kubelet's log directories) |
//!
//! containerd keeps its container names in a database, not in files: they stay `None`.
//!
//! Everything is cached. A missing, unreadable, malformed or half-written file is `None` (never an
//! error, never a panic); a `None` is asked again after [`HostFiles::set_retry`] (a container's
//! files may be written just after its cgroup appears), a name found is kept.

use std::{
    collections::HashMap,
    fs,
    io::Read,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Deserialize;

/// Entries kept per cache before it is emptied and refilled (containers come and go).
const CACHE_LIMIT: usize = 16_384;
/// Largest file read (a `config.v2.json` is a few KiB; `containers.json` grows with containers).
const FILE_LIMIT: u64 = 32 << 20;

/// A pod's namespace and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodName {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

/// Container and pod names from the host's files, cached.
#[derive(Debug)]
pub struct HostFiles {
    root: PathBuf,
    retry: Duration,
    docker: HashMap<String, Looked<Arc<str>>>,
    storage: Index<Arc<str>>,
    pods: Index<PodName>,
}

#[derive(Debug)]
struct Looked<T> {
    value: Option<T>,
    at: Instant,
}

/// A directory or file read whole into a map, read again (at most once per `retry`) when a key
/// is missing.
#[derive(Debug)]
struct Index<T> {
    by_key: HashMap<String, T>,
    read_at: Option<Instant>,
}

impl<T> Default for Index<T> {
    fn default() -> Self {
        Index {
            by_key: HashMap::new(),
            read_at: None,
        }
    }
}

impl<T: Clone> Index<T> {
    fn get(
        &mut self,
        key: &str,
        retry: Duration,
        read: impl FnOnce() -> HashMap<String, T>,
    ) -> Option<T> {
        if let Some(value) = self.by_key.get(key) {
            return Some(value.clone());
        }
        if self.read_at.is_some_and(|at| at.elapsed() < retry) {
            return None;
        }
        self.by_key = read();
        self.read_at = Some(Instant::now());
        self.by_key.get(key).cloned()
    }
}

impl HostFiles {
    /// Files under `root` (`/` on the host).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HostFiles {
            root: root.into(),
            retry: Duration::from_secs(30),
            docker: HashMap::new(),
            storage: Index::default(),
            pods: Index::default(),
        }
    }

    /// The root every file is read under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How long a name not found stays not found before the files are read again (30 s).
    pub fn set_retry(&mut self, retry: Duration) {
        self.retry = retry;
    }

    /// How long a missing name stays missing before being looked up again.
    pub fn retry(&self) -> Duration {
        self.retry
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// True when Docker keeps a container `id` (its directory exists).
    pub fn is_docker(&self, id: &str) -> bool {
        !id.contains('/') && self.path("var/lib/docker/containers").join(id).is_dir()
    }

    /// Docker's name for container `id` (`web` for `"Name": "/web"`).
    pub fn docker_name(&mut self, id: &str) -> Option<Arc<str>> {
        if let Some(looked) = self.docker.get(id) {
            if looked.value.is_some() || looked.at.elapsed() < self.retry {
                return looked.value.clone();
            }
        }
        let value = if id.contains('/') || id.is_empty() {
            None
        } else {
            let file = self
                .path("var/lib/docker/containers")
                .join(id)
                .join("config.v2.json");
            read_limited(&file).and_then(|bytes| docker_config_name(&bytes))
        };
        if self.docker.len() >= CACHE_LIMIT {
            self.docker.clear();
        }
        self.docker.insert(
            id.to_string(),
            Looked {
                value: value.clone(),
                at: Instant::now(),
            },
        );
        value
    }

    /// Podman's name for container `id` (containers/storage's first name).
    pub fn podman_name(&mut self, id: &str) -> Option<Arc<str>> {
        self.storage_name(id)
    }

    /// CRI-O's container name for `id`: `web` out of `k8s_web_<pod>_<namespace>_<uid>_<n>`.
    pub fn crio_name(&mut self, id: &str) -> Option<Arc<str>> {
        let stored = self.storage_name(id)?;
        let mut parts = stored.split('_');
        match (parts.next(), parts.next()) {
            (Some("k8s"), Some(name)) if !name.is_empty() => Some(Arc::from(name)),
            _ => Some(stored),
        }
    }

    fn storage_name(&mut self, id: &str) -> Option<Arc<str>> {
        let dir = self.path("var/lib/containers/storage/overlay-containers");
        self.storage.get(id, self.retry, || {
            let mut names = HashMap::new();
            for file in ["containers.json", "volatile-containers.json"] {
                if let Some(bytes) = read_limited(&dir.join(file)) {
                    names.extend(storage_names(&bytes));
                }
            }
            names
        })
    }

    /// The namespace and name of the pod with `uid`, from the kubelet's log directories.
    pub fn pod(&mut self, uid: &str) -> Option<PodName> {
        let dir = self.path("var/log/pods");
        self.pods.get(uid, self.retry, || {
            let mut pods = HashMap::new();
            let Ok(entries) = fs::read_dir(&dir) else {
                return pods;
            };
            for entry in entries.flatten().take(CACHE_LIMIT) {
                let name = entry.file_name();
                if let Some((namespace, name, uid)) = name.to_str().and_then(pod_log_dir) {
                    let pod = PodName {
                        namespace: Arc::from(namespace),
                        name: Arc::from(name),
                    };
                    pods.insert(uid.to_string(), pod);
                }
            }
            pods
        })
    }
}

/// At most `FILE_LIMIT` bytes of `file`; `None` when it cannot be read.
fn read_limited(file: &Path) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    fs::File::open(file)
        .ok()?
        .take(FILE_LIMIT)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

/// `"Name"` of a Docker `config.v2.json`, without the leading `/`; `None` when the JSON is not a
/// whole object or has no non-empty name.
pub fn docker_config_name(bytes: &[u8]) -> Option<Arc<str>> {
    #[derive(Deserialize)]
    struct Config {
        #[serde(rename = "Name")]
        name: Option<String>,
    }
    let config: Config = serde_json::from_slice(bytes).ok()?;
    let name = config.name?;
    let name = name.strip_prefix('/').unwrap_or(&name);
    (!name.is_empty()).then(|| Arc::from(name))
}

/// Container id → first name, out of containers/storage's `containers.json`; empty when the JSON
/// is not an array of records. Records without an id or a name are skipped.
pub fn storage_names(bytes: &[u8]) -> HashMap<String, Arc<str>> {
    #[derive(Deserialize)]
    struct Record {
        #[serde(default)]
        id: String,
        #[serde(default)]
        names: Vec<String>,
    }
    let records: Vec<Record> = serde_json::from_slice(bytes).unwrap_or_default();
    records
        .into_iter()
        .filter_map(|record| {
            let name = record.names.into_iter().find(|n| !n.is_empty())?;
            (!record.id.is_empty()).then(|| (record.id, Arc::from(name)))
        })
        .collect()
}

/// `<namespace>_<name>_<uid>` (a kubelet log directory) → its three parts. Kubernetes names and
/// uids hold no `_`, so anything else is not one.
pub fn pod_log_dir(dir: &str) -> Option<(&str, &str, &str)> {
    let mut parts = dir.split('_');
    let (namespace, name, uid) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || namespace.is_empty() || name.is_empty() || uid.is_empty() {
        return None;
    }
    Some((namespace, name, uid))
}
