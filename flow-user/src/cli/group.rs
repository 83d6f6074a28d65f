//! Grouped views (`--group`, and `g` in `flow top`): rows summed by process, by container (or
//! systemd service, or the host), or by remote host, each with its rates in the interval and its
//! bytes since `flow` started. Pure: the totals are accumulated here from every step's window
//! deltas (`tx_bytes`/`rx_bytes`, exact), never recomputed from the rows on screen.
//!
//! Keys:
//! - process: `name/pid` (as nethogs shows it: two processes of one name are two rows);
//! - container: the pod as `namespace/name` when the container is in a Kubernetes pod whose
//!   names are known, else the container's name, else the first 12 hex digits of its id; a
//!   connection in no container is keyed by its systemd service, else `host`;
//! - remote: the remote IP address (every port of one host together);
//! - connection: the connection id (today's rows).

use std::collections::HashMap;

use serde::Serialize;

use super::output;
use crate::{
    attribution::{Attribution, Container},
    model::{ConnectionBandwidth, NetConnection},
};

/// What the rows are summed by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// One row per connection.
    #[default]
    Connection,
    /// One row per process (name and pid).
    Process,
    /// One row per container (or pod, or systemd service; `host` for the rest).
    Container,
    /// One row per remote IP address.
    Remote,
}

impl GroupBy {
    pub const ALL: [GroupBy; 4] = [
        GroupBy::Connection,
        GroupBy::Process,
        GroupBy::Container,
        GroupBy::Remote,
    ];

    pub fn name(self) -> &'static str {
        match self {
            GroupBy::Connection => "connection",
            GroupBy::Process => "process",
            GroupBy::Container => "container",
            GroupBy::Remote => "remote",
        }
    }

    /// The next view (`g` in `flow top`).
    pub fn next(self) -> GroupBy {
        let i = GroupBy::ALL.iter().position(|g| *g == self).unwrap_or(0);
        GroupBy::ALL[(i + 1) % GroupBy::ALL.len()]
    }

    /// The heading of the key column.
    pub fn heading(self) -> &'static str {
        match self {
            GroupBy::Connection => "CONNECTION",
            GroupBy::Process => "PROCESS/PID",
            GroupBy::Container => "CONTAINER/SERVICE",
            GroupBy::Remote => "REMOTE HOST",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The key of `connection` in this view.
    pub fn key(self, connection: &NetConnection) -> String {
        match self {
            GroupBy::Connection => connection.id.to_string(),
            GroupBy::Process => output::owner(connection),
            GroupBy::Container => container_or_service(&connection.attribution),
            GroupBy::Remote => connection.remote.ip().to_string(),
        }
    }
}

/// A container as people name it: its pod (`namespace/name`) when known, else its name, else
/// the first 12 hex digits of its id (as `docker ps` shows it).
pub fn container_name(container: &Container) -> String {
    if let Some(pod) = &container.pod {
        if let (Some(namespace), Some(name)) = (&pod.namespace, &pod.name) {
            return format!("{namespace}/{name}");
        }
    }
    match &container.name {
        Some(name) => name.to_string(),
        None => container.id.chars().take(12).collect(),
    }
}

/// The container's name (see [`container_name`]), `None` outside containers.
pub fn container_label(attribution: &Attribution) -> Option<String> {
    attribution.container.as_deref().map(container_name)
}

/// The container's name, else the systemd service, else `host`.
pub fn container_or_service(attribution: &Attribution) -> String {
    container_label(attribution)
        .or_else(|| attribution.service.as_deref().map(str::to_string))
        .unwrap_or_else(|| "host".into())
}

/// One row of a grouped view (`--group … --json` prints an array of these).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupRow {
    pub group: GroupBy,
    pub key: String,
    /// Connections of the group with a row in the interval (moved, changed or closed in it).
    pub connections: u64,
    /// Bytes moved in the interval, seen from the local ends.
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    pub tx_bytes_per_second: u64,
    pub rx_bytes_per_second: u64,
    /// Bytes moved since `flow` started (one-shot commands: in their window).
    pub total_tx_bytes: u64,
    pub total_rx_bytes: u64,
}

impl GroupRow {
    pub fn bytes_per_second(&self) -> u64 {
        self.tx_bytes_per_second + self.rx_bytes_per_second
    }
}

/// A group's bytes since the start and the step it last had a row in.
#[derive(Clone, Copy, Debug, Default)]
struct Total {
    tx: u64,
    rx: u64,
    seen: u64,
}

/// Steps a group may go without a row before it is forgotten (its total with it).
pub const IDLE_STEPS: u64 = 600;
/// Most groups remembered per view; past it the longest idle go first.
pub const MAX_GROUPS: usize = 20_000;

/// Bytes since the start per group, for every view at once (switching views shows totals that
/// were counted all along), bounded: groups idle for [`IDLE_STEPS`] steps are forgotten, and
/// at most [`MAX_GROUPS`] are kept per view. A closed connection's own total goes after its
/// last row.
#[derive(Debug)]
pub struct Totals {
    by: [HashMap<String, Total>; 4],
    step: u64,
    idle_steps: u64,
    max_groups: usize,
}

impl Default for Totals {
    fn default() -> Self {
        Totals::with_bounds(IDLE_STEPS, MAX_GROUPS)
    }
}

impl Totals {
    pub fn with_bounds(idle_steps: u64, max_groups: usize) -> Totals {
        Totals {
            by: Default::default(),
            step: 0,
            idle_steps,
            max_groups: max_groups.max(1),
        }
    }

    /// Adds one step's rows (each row's window deltas) to every view's totals.
    pub fn record(&mut self, rows: &[ConnectionBandwidth]) {
        self.step += 1;
        let step = self.step;
        for bw in rows {
            for by in GroupBy::ALL {
                let total = self.by[by.index()]
                    .entry(by.key(&bw.connection))
                    .or_default();
                total.tx += bw.tx_bytes;
                total.rx += bw.rx_bytes;
                total.seen = step;
            }
        }
        let (idle, max) = (self.idle_steps, self.max_groups);
        for groups in &mut self.by {
            groups.retain(|_, t| step - t.seen < idle);
            if groups.len() > max {
                // The longest idle go first.
                let mut by_seen: Vec<(u64, String)> =
                    groups.iter().map(|(k, t)| (t.seen, k.clone())).collect();
                by_seen.sort_unstable_by(|a, b| b.cmp(a));
                for (_, key) in by_seen.into_iter().skip(max) {
                    groups.remove(&key);
                }
            }
        }
    }

    /// Forgets the totals of connections that closed in `rows` (call after reading them).
    pub fn forget_closed(&mut self, rows: &[ConnectionBandwidth]) {
        let connections = &mut self.by[GroupBy::Connection.index()];
        for bw in rows.iter().filter(|bw| !bw.connection.active) {
            connections.remove(&bw.connection.id.to_string());
        }
    }

    /// `(tx, rx)` since the start for `key` in view `by`.
    pub fn total(&self, by: GroupBy, key: &str) -> Option<(u64, u64)> {
        self.by[by.index()].get(key).map(|t| (t.tx, t.rx))
    }

    /// Groups remembered in view `by`.
    #[cfg(test)]
    pub fn len(&self, by: GroupBy) -> usize {
        self.by[by.index()].len()
    }

    /// The rows of view `by` (not `Connection`: its rows are the connections themselves):
    /// every remembered group, with what `rows` (the last step) moved in it — 0 B/s for a group
    /// with no row in the step — and its total. Unordered.
    pub fn rows(&self, by: GroupBy, rows: &[ConnectionBandwidth]) -> Vec<GroupRow> {
        let mut out: HashMap<&str, GroupRow> = self.by[by.index()]
            .iter()
            .map(|(key, t)| {
                let row = GroupRow {
                    group: by,
                    key: key.clone(),
                    connections: 0,
                    tx_bytes: 0,
                    rx_bytes: 0,
                    tx_bytes_per_second: 0,
                    rx_bytes_per_second: 0,
                    total_tx_bytes: t.tx,
                    total_rx_bytes: t.rx,
                };
                (key.as_str(), row)
            })
            .collect();
        for bw in rows {
            let key = by.key(&bw.connection);
            // A row recorded before its group was forgotten has no entry: skipped.
            let Some(row) = out.get_mut(key.as_str()) else {
                continue;
            };
            row.connections += 1;
            row.tx_bytes += bw.tx_bytes;
            row.rx_bytes += bw.rx_bytes;
            row.tx_bytes_per_second += bw.tx_bytes_per_second;
            row.rx_bytes_per_second += bw.rx_bytes_per_second;
        }
        out.into_values().collect()
    }
}

/// One window's rows grouped (one-shot commands: the totals are the window's).
pub fn group_once(by: GroupBy, rows: &[ConnectionBandwidth]) -> Vec<GroupRow> {
    let mut totals = Totals::default();
    totals.record(rows);
    let mut grouped = totals.rows(by, rows);
    sort_busiest_first(&mut grouped);
    grouped
}

/// Busiest first (rate, then total), ties by key so rows do not jitter.
pub fn sort_busiest_first(rows: &mut [GroupRow]) {
    rows.sort_by(|a, b| {
        b.bytes_per_second()
            .cmp(&a.bytes_per_second())
            .then_with(|| {
                (b.total_tx_bytes + b.total_rx_bytes).cmp(&(a.total_tx_bytes + a.total_rx_bytes))
            })
            .then_with(|| a.key.cmp(&b.key))
    });
}

/// Connections grouped without bytes (`flow connections --group`): counts only.
pub fn group_connections(by: GroupBy, connections: &[NetConnection]) -> Vec<GroupRow> {
    let mut out: HashMap<String, GroupRow> = HashMap::new();
    for c in connections {
        let key = by.key(c);
        out.entry(key.clone())
            .or_insert_with(|| GroupRow {
                group: by,
                key,
                connections: 0,
                tx_bytes: 0,
                rx_bytes: 0,
                tx_bytes_per_second: 0,
                rx_bytes_per_second: 0,
                total_tx_bytes: 0,
                total_rx_bytes: 0,
            })
            .connections += 1;
    }
    let mut rows: Vec<GroupRow> = out.into_values().collect();
    rows.sort_by(|a, b| b.connections.cmp(&a.connections).then(a.key.cmp(&b.key)));
    rows
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;
    use crate::{
        attribution::{Pod, Runtime},
        model::TcpState,
        observe::ConnectionParts,
    };

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn docker(name: Option<&str>) -> Arc<Attribution> {
        Arc::new(Attribution {
            cgroup: Some(format!("/system.slice/docker-{ID}.scope").into()),
            container: Some(Arc::new(Container {
                runtime: Runtime::Docker,
                id: ID.into(),
                name: name.map(Into::into),
                pod: None,
            })),
            service: None,
        })
    }

    fn row(
        port: u16,
        pid: u32,
        remote: &str,
        attribution: Arc<Attribution>,
        (tx, rx): (u64, u64),
        active: bool,
    ) -> ConnectionBandwidth {
        let mut connection = ConnectionParts {
            local: format!("127.0.0.1:{port}").parse().unwrap(),
            remote: remote.parse().unwrap(),
            state: TcpState::Established,
            inode: u64::from(port),
            uid: None,
            pid: Some(pid),
            process: Some(format!("p{pid}")),
            cookie: Some(u64::from(port)),
            generation: u64::from(port),
            active,
        }
        .build();
        connection.attribution = attribution;
        ConnectionBandwidth {
            connection,
            tx_bytes: tx,
            rx_bytes: rx,
            tx_packets: 0,
            rx_packets: 0,
            tx_bytes_per_second: tx / 2,
            rx_bytes_per_second: rx / 2,
            bytes_per_second: (tx + rx) / 2,
            packets_per_second: 0,
            sample_window: Duration::from_secs(2),
        }
    }

    fn find<'a>(rows: &'a [GroupRow], key: &str) -> &'a GroupRow {
        rows.iter()
            .find(|r| r.key == key)
            .unwrap_or_else(|| panic!("no row {key}: {rows:?}"))
    }

    #[test]
    fn keys_of_each_view() {
        let none = Attribution::none();
        let c = row(1, 7, "10.0.0.1:443", docker(Some("web")), (0, 0), true).connection;
        assert_eq!(GroupBy::Process.key(&c), "p7/7");
        assert_eq!(GroupBy::Container.key(&c), "web");
        assert_eq!(GroupBy::Remote.key(&c), "10.0.0.1");
        assert_eq!(GroupBy::Connection.key(&c), c.id.to_string());
        let unnamed = row(1, 7, "[::1]:80", docker(None), (0, 0), true).connection;
        assert_eq!(GroupBy::Container.key(&unnamed), "0123456789ab");
        assert_eq!(GroupBy::Remote.key(&unnamed), "::1");
        let host = row(1, 7, "10.0.0.1:1", none, (0, 0), true).connection;
        assert_eq!(GroupBy::Container.key(&host), "host");
        let service = Arc::new(Attribution {
            cgroup: Some("/system.slice/nginx.service".into()),
            container: None,
            service: Some("nginx.service".into()),
        });
        let svc = row(1, 7, "10.0.0.1:1", service, (0, 0), true).connection;
        assert_eq!(GroupBy::Container.key(&svc), "nginx.service");
        let pod = Container {
            runtime: Runtime::Containerd,
            id: ID.into(),
            name: None,
            pod: Some(Arc::new(Pod {
                uid: "u".into(),
                namespace: Some("prod".into()),
                name: Some("api-0".into()),
            })),
        };
        assert_eq!(container_name(&pod), "prod/api-0");
    }

    #[test]
    fn totals_accumulate_every_step_and_idle_groups_show_zero_rates() {
        let mut totals = Totals::default();
        let web = docker(Some("web"));
        let step1 = [
            row(1, 7, "10.0.0.1:443", web.clone(), (100, 1000), true),
            row(2, 7, "10.0.0.2:443", web.clone(), (10, 20), true),
            row(3, 8, "10.0.0.1:80", Attribution::none(), (1, 2), true),
        ];
        totals.record(&step1);
        let by_process = totals.rows(GroupBy::Process, &step1);
        let p7 = find(&by_process, "p7/7");
        assert_eq!((p7.connections, p7.tx_bytes, p7.rx_bytes), (2, 110, 1020));
        assert_eq!((p7.total_tx_bytes, p7.total_rx_bytes), (110, 1020));
        assert_eq!(p7.tx_bytes_per_second, 55);
        // Step 2: only connection 1 moved; connection 2 closed with its last bytes.
        let step2 = [
            row(1, 7, "10.0.0.1:443", web.clone(), (5, 6), true),
            row(2, 7, "10.0.0.2:443", web.clone(), (1, 1), false),
        ];
        totals.record(&step2);
        let by_container = totals.rows(GroupBy::Container, &step2);
        let w = find(&by_container, "web");
        assert_eq!((w.total_tx_bytes, w.total_rx_bytes), (116, 1027));
        assert_eq!((w.connections, w.tx_bytes, w.rx_bytes), (2, 6, 7));
        let host = find(&by_container, "host");
        assert_eq!((host.connections, host.tx_bytes_per_second), (0, 0));
        assert_eq!((host.total_tx_bytes, host.total_rx_bytes), (1, 2));
        let by_remote = totals.rows(GroupBy::Remote, &step2);
        let r = find(&by_remote, "10.0.0.1");
        assert_eq!((r.total_tx_bytes, r.total_rx_bytes), (106, 1008));
        // A step with no rows at all: every group stays, idle.
        totals.record(&[]);
        let p7 = totals.rows(GroupBy::Process, &[]);
        let p7 = find(&p7, "p7/7");
        assert_eq!((p7.bytes_per_second(), p7.total_tx_bytes), (0, 116));
    }

    #[test]
    fn closed_connection_totals_go_and_idle_groups_are_bounded() {
        let mut totals = Totals::with_bounds(3, 2);
        let closed = row(1, 7, "10.0.0.1:1", Attribution::none(), (4, 4), false);
        let id = closed.connection.id.to_string();
        totals.record(std::slice::from_ref(&closed));
        assert_eq!(totals.total(GroupBy::Connection, &id), Some((4, 4)));
        totals.forget_closed(std::slice::from_ref(&closed));
        assert_eq!(totals.total(GroupBy::Connection, &id), None);
        assert_eq!(totals.total(GroupBy::Process, "p7/7"), Some((4, 4)));
        // Three processes: the cap of two keeps the two seen last.
        totals.record(&[row(2, 8, "10.0.0.1:1", Attribution::none(), (1, 1), true)]);
        totals.record(&[row(3, 9, "10.0.0.1:1", Attribution::none(), (1, 1), true)]);
        assert_eq!(totals.len(GroupBy::Process), 2);
        assert_eq!(totals.total(GroupBy::Process, "p7/7"), None);
        // Idle for three steps: forgotten.
        for _ in 0..3 {
            totals.record(&[]);
        }
        assert_eq!(totals.len(GroupBy::Process), 0);
    }

    #[test]
    fn json_shape_and_one_window() {
        let rows = [
            row(1, 7, "10.0.0.1:443", docker(Some("web")), (100, 1000), true),
            row(2, 8, "10.0.0.1:80", Attribution::none(), (1, 2), true),
        ];
        let grouped = group_once(GroupBy::Container, &rows);
        assert_eq!(grouped[0].key, "web", "busiest first");
        let json = serde_json::to_value(&grouped[0]).unwrap();
        let expected = serde_json::json!({
            "group": "container", "key": "web", "connections": 1,
            "tx_bytes": 100, "rx_bytes": 1000,
            "tx_bytes_per_second": 50, "rx_bytes_per_second": 500,
            "total_tx_bytes": 100, "total_rx_bytes": 1000
        });
        assert_eq!(json, expected);
        let counted = group_connections(
            GroupBy::Remote,
            &rows
                .iter()
                .map(|r| r.connection.clone())
                .collect::<Vec<_>>(),
        );
        assert_eq!(
            (counted[0].key.as_str(), counted[0].connections),
            ("10.0.0.1", 2)
        );
        assert_eq!(GroupBy::Remote.next(), GroupBy::Connection);
    }

    #[test]
    fn filters_by_container_and_netns() {
        use crate::cli::args::Filters;
        let mut c = row(1, 7, "10.0.0.1:443", docker(Some("web")), (0, 0), true).connection;
        c.netns = Some(4026531840);
        let filter = |container: Option<&str>, netns: Option<u64>| Filters {
            container: container.map(str::to_string),
            netns,
            ..Filters::default()
        };
        for wanted in ["web", "0123", "0123456789AB", ID] {
            assert!(filter(Some(wanted), None).matches(&c), "{wanted}");
        }
        for wanted in ["we", "123", "host", ""] {
            assert!(!filter(Some(wanted), None).matches(&c), "{wanted}");
        }
        assert!(filter(None, Some(4026531840)).matches(&c));
        assert!(!filter(None, Some(1)).matches(&c));
        let host = row(2, 7, "10.0.0.1:443", Attribution::none(), (0, 0), true).connection;
        assert!(!filter(Some("web"), None).matches(&host));
        assert!(
            !filter(None, Some(4026531840)).matches(&host),
            "netns unknown"
        );
        let mut in_pod = c.clone();
        in_pod.attribution = Arc::new(Attribution {
            container: Some(Arc::new(Container {
                runtime: Runtime::Containerd,
                id: ID.into(),
                name: None,
                pod: Some(Arc::new(Pod {
                    uid: "u".into(),
                    namespace: Some("prod".into()),
                    name: Some("api-0".into()),
                })),
            })),
            ..Attribution::default()
        });
        assert!(filter(Some("api-0"), None).matches(&in_pod));
        assert!(filter(Some("prod/api-0"), None).matches(&in_pod));
        assert!(!filter(Some("prod"), None).matches(&in_pod));
    }
}
