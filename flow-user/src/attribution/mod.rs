//! Which container, pod or systemd service a connection belongs to (issue 13).
//!
//! The kernel program gives each connection the cgroup id of the task that last moved data on it
//! (`bpf_get_current_cgroup_id()`, read when the owner changes); procfs mode gives the owner's
//! pid. From either:
//!
//! 1. [`CgroupResolver`] turns a cgroup id into its cgroup v2 path (`resolve`), or reads a pid's
//!    path from `/proc/<pid>/cgroup` (`from_proc`);
//! 2. [`parse_cgroup_path`] reads the container id and runtime, pod uid and service out of that
//!    path (pure; the forms are listed in [`path`]);
//! 3. [`HostFiles`] adds the names only the host's files tell (Docker's `config.v2.json`,
//!    containers/storage's records, the kubelet's `/var/log/pods`), under a configurable root;
//! 4. [`Attributor`] puts them together into one shared [`Attribution`] per cgroup path.
//!
//! ```no_run
//! use flow_user::attribution::Attributor;
//!
//! let mut attributor = Attributor::host();
//! if let Some(attribution) = attributor.attribute_pid(std::process::id()) {
//!     println!("{}", serde_json::to_string(&*attribution).unwrap());
//! }
//! ```

pub mod cgroup;
pub mod model;
pub mod names;
pub mod path;

#[cfg(test)]
mod attributor_tests;
#[cfg(test)]
mod cgroup_tests;
#[cfg(test)]
mod names_tests;
#[cfg(test)]
mod path_tests;
#[cfg(test)]
mod testutil;

use std::{collections::HashMap, sync::Arc, time::Instant};

pub use cgroup::{Cgroup2Mount, CgroupResolver, ScanLimits, ScanReport};
pub use model::{Attribution, Container, Pod, Runtime};
pub use names::{HostFiles, PodName};
pub use path::{parse_cgroup_path, CgroupFacts, ContainerRef};

/// Attributions kept before the cache is emptied and refilled.
const CACHE_LIMIT: usize = 16_384;

/// Cgroup path (or id, or pid) → [`Attribution`], cached per path: every connection of one
/// cgroup shares one `Arc`, every cgroup of one container one [`Container`].
#[derive(Debug)]
pub struct Attributor {
    resolver: CgroupResolver,
    files: HostFiles,
    by_path: HashMap<Arc<str>, Cached>,
    containers: HashMap<Arc<str>, Arc<Container>>,
    pods: HashMap<Arc<str>, Arc<Pod>>,
}

#[derive(Debug)]
struct Cached {
    attribution: Arc<Attribution>,
    /// False while a name the files could still tell is missing: asked again after the files'
    /// retry interval.
    complete: bool,
    at: Instant,
}

impl Attributor {
    /// The host's cgroup2 mount and files (root `/`).
    pub fn host() -> Self {
        Self::new(CgroupResolver::new(), HostFiles::new("/"))
    }

    pub fn new(resolver: CgroupResolver, files: HostFiles) -> Self {
        Attributor {
            resolver,
            files,
            by_path: HashMap::new(),
            containers: HashMap::new(),
            pods: HashMap::new(),
        }
    }

    pub fn resolver(&mut self) -> &mut CgroupResolver {
        &mut self.resolver
    }

    pub fn files(&mut self) -> &mut HostFiles {
        &mut self.files
    }

    /// The attribution of cgroup `id` (`bpf_get_current_cgroup_id()`); `None` when the id is not
    /// (or no longer) a cgroup under the mount.
    pub fn attribute_id(&mut self, id: u64) -> Option<Arc<Attribution>> {
        let path = self.resolver.resolve(id)?;
        Some(self.attribute_shared(path))
    }

    /// The attribution of process `pid`, from `/proc/<pid>/cgroup` (procfs mode); `None` when the
    /// process is gone or has no cgroup v2 line.
    pub fn attribute_pid(&mut self, pid: u32) -> Option<Arc<Attribution>> {
        let path = self.resolver.from_proc(pid)?;
        Some(self.attribute_shared(path))
    }

    /// The attribution of a cgroup v2 path (`/system.slice/docker-<id>.scope`).
    pub fn attribute(&mut self, path: &str) -> Arc<Attribution> {
        match self.by_path.get_key_value(path) {
            Some((key, _)) => {
                let key = key.clone();
                self.attribute_shared(key)
            }
            None => self.attribute_shared(Arc::from(path)),
        }
    }

    fn attribute_shared(&mut self, path: Arc<str>) -> Arc<Attribution> {
        let retry = self.files.retry();
        if let Some(cached) = self.by_path.get(&path) {
            if cached.complete || cached.at.elapsed() < retry {
                return cached.attribution.clone();
            }
        }
        let (attribution, complete) = self.build(path.clone());
        let attribution = Arc::new(attribution);
        if self.by_path.len() >= CACHE_LIMIT {
            self.by_path.clear();
            self.containers.clear();
            self.pods.clear();
        }
        self.by_path.insert(
            path,
            Cached {
                attribution: attribution.clone(),
                complete,
                at: Instant::now(),
            },
        );
        attribution
    }

    /// (attribution, whether every name the files could tell was found)
    fn build(&mut self, path: Arc<str>) -> (Attribution, bool) {
        let facts = parse_cgroup_path(&path);
        let mut complete = true;
        let container = facts.container.map(|found| {
            let runtime = found.runtime.unwrap_or_else(|| {
                // A bare id under a cgroupfs-driver pod: Docker's when Docker keeps it.
                if self.files.is_docker(&found.id) {
                    Runtime::Docker
                } else {
                    Runtime::Containerd
                }
            });
            let name = match runtime {
                Runtime::Docker => self.files.docker_name(&found.id),
                Runtime::Podman => self.files.podman_name(&found.id),
                Runtime::Crio => self.files.crio_name(&found.id),
                // containerd keeps names in its database, not in files.
                Runtime::Containerd => None,
            };
            complete &= name.is_some() || runtime == Runtime::Containerd;
            let pod = facts.pod_uid.as_deref().map(|uid| {
                let named = self.files.pod(uid);
                complete &= named.is_some();
                self.shared_pod(Pod {
                    uid: Arc::from(uid),
                    namespace: named.as_ref().map(|p| p.namespace.clone()),
                    name: named.map(|p| p.name),
                })
            });
            self.shared_container(Container {
                runtime,
                id: Arc::from(found.id),
                name,
                pod,
            })
        });
        let attribution = Attribution {
            cgroup: Some(path),
            container,
            service: facts.service.map(Arc::from),
        };
        (attribution, complete)
    }

    /// One `Arc` per container while its value stays the same (the container of
    /// `libpod-<id>.scope` and of `libpod-<id>.scope/container` is one).
    fn shared_container(&mut self, container: Container) -> Arc<Container> {
        match self.containers.get(&container.id) {
            Some(known) if **known == container => known.clone(),
            _ => {
                let shared = Arc::new(container);
                self.containers.insert(shared.id.clone(), shared.clone());
                shared
            }
        }
    }

    /// One `Arc` per pod while its value stays the same (all its containers point at it).
    fn shared_pod(&mut self, pod: Pod) -> Arc<Pod> {
        match self.pods.get(&pod.uid) {
            Some(known) if **known == pod => known.clone(),
            _ => {
                let shared = Arc::new(pod);
                self.pods.insert(shared.uid.clone(), shared.clone());
                shared
            }
        }
    }
}
