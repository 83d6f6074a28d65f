//! What one benchmark run measured: plain data, filled by the sections, read by the report.

use super::bpf::ProgStats;

#[derive(Debug, Default)]
pub struct Results {
    /// UTC, `YYYY-MM-DDTHH-MM-SSZ` (also the report's file name).
    pub timestamp: String,
    pub quick: bool,
    /// `(tool, version)` in the order they were asked.
    pub versions: Vec<(String, String)>,
    /// The attach rung flow took, from its stderr line.
    pub rung: Option<String>,
    pub overhead: Vec<Overhead>,
    pub costs: Vec<Cost>,
    pub scale: Vec<Scale>,
    /// One per churn run (`--churn-runs`).
    pub churn: Vec<Churn>,
    pub startup: Option<Startup>,
    pub idle: Option<Idle>,
    /// The flight recorder's cost, growth and query time (issue 16).
    pub record: Option<super::record::Record>,
    /// The UDP blast with and without flow, and its cost per event (issue 15).
    pub udp: Vec<UdpOverhead>,
    pub udp_costs: Vec<UdpCost>,
    /// The newest earlier full reports' figures, for the no-regression lines.
    pub before: super::baseline::Baseline,
    /// Installs, skipped peers, missing metrics, deviations: one sentence each.
    pub notes: Vec<String>,
}

/// One monitor (flow or a peer) at one iperf3 write size, over alternating pairs.
#[derive(Debug, Default, Clone)]
pub struct Overhead {
    pub tool: String,
    /// iperf3 `-l`: `64` or `128K`.
    pub size: String,
    /// Throughput with the monitor / the adjacent baseline, one per pair.
    pub ratios: Vec<f64>,
    /// The monitor's own CPU seconds per second of traffic, one per pair.
    pub cores: Vec<f64>,
    /// Baseline throughput of the same pairs, Gbit/s.
    pub baseline_gbps: Vec<f64>,
    pub warnings: Vec<String>,
    pub error: Option<String>,
}

/// `kernel.bpf_stats_enabled` counters of one monitor's programs over one iperf3 run.
#[derive(Debug, Clone)]
pub struct Cost {
    pub tool: String,
    pub size: String,
    pub seconds: f64,
    pub programs: Vec<ProgStats>,
}

/// What a program does, by flow's naming (`flow_tx_*`, `flow_rx_*`, `flow_destroy_*`,
/// `flow_socket_iter`). Payload capture runs inside the counting programs, so it has no role of
/// its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Runs once per send or receive: the per-event cost.
    Count,
    /// Once per socket (destroy).
    Lifecycle,
    /// Once per socket per poll (the socket iterator).
    ReadOut,
    /// Once per packet of any transport, TCP included (the UDP cgroup_skb programs).
    Packet,
}

/// flow's cgroup_skb programs: on the cgroup v2 root they see every packet, and count UDP ones.
pub const UDP_PACKET_PROGRAMS: [&str; 2] = ["flow_udp_egress", "flow_udp_ingress"];

pub fn role(tool: &str, program: &str) -> Role {
    if !tool.starts_with("flow") {
        // A peer's programs (bpftrace's two tracepoints) all count.
        return Role::Count;
    }
    if program.starts_with("flow_tx") || program.starts_with("flow_rx") {
        Role::Count
    } else if UDP_PACKET_PROGRAMS.contains(&program) {
        Role::Packet
    } else if program == "flow_socket_iter" {
        Role::ReadOut
    } else {
        Role::Lifecycle
    }
}

impl Cost {
    fn sums(&self, wanted: impl Fn(Role) -> bool) -> (u64, u64) {
        self.programs
            .iter()
            .filter(|p| wanted(role(&self.tool, &p.name)))
            .fold((0, 0), |(t, c), p| (t + p.run_time_ns, c + p.run_cnt))
    }

    /// Counted events (sends and receives) during the run.
    pub fn events(&self) -> u64 {
        self.sums(|r| r == Role::Count).1
    }

    /// ns per counted event in the counting programs alone.
    pub fn count_ns(&self) -> Option<f64> {
        let (time, count) = self.sums(|r| r == Role::Count);
        (count > 0).then(|| time as f64 / count as f64)
    }

    /// ns per counted event of every program (capture and lifecycle included).
    pub fn total_ns(&self) -> Option<f64> {
        let (time, _) = self.sums(|_| true);
        let events = self.events();
        (events > 0).then(|| time as f64 / events as f64)
    }

    /// Share of one core spent in these programs.
    pub fn kernel_cores(&self) -> f64 {
        let (time, _) = self.sums(|_| true);
        time as f64 / 1e9 / self.seconds.max(1e-9)
    }
}

/// One flow configuration at one datagram size, over alternating pairs of the UDP blast.
#[derive(Debug, Default, Clone)]
pub struct UdpOverhead {
    pub tool: String,
    /// Payload bytes per datagram: `64` or `1400`.
    pub size: String,
    /// Datagrams delivered per second with flow / the adjacent baseline, one per pair.
    pub ratios: Vec<f64>,
    /// The same for datagrams sent (the sender's CPU runs both programs on loopback).
    pub sent_ratios: Vec<f64>,
    /// The same for datagrams sent per second of the sender thread's CPU time: what other
    /// load on the machine barely moves.
    pub cpu_ratios: Vec<f64>,
    /// Baseline datagrams delivered per second.
    pub baseline_rate: Vec<f64>,
    /// Share of sent datagrams the receiver never read: baselines, and runs with flow.
    pub baseline_loss: Vec<f64>,
    pub loss: Vec<f64>,
    /// flow's own CPU seconds per second, one per pair.
    pub cores: Vec<f64>,
    pub warnings: Vec<String>,
    pub error: Option<String>,
}

/// `kernel.bpf_stats_enabled` counters of flow's programs over one UDP blast.
#[derive(Debug, Clone)]
pub struct UdpCost {
    pub tool: String,
    pub size: String,
    pub blast: super::udp_blast::Blast,
    pub programs: Vec<ProgStats>,
    /// What the namespace's packet counters moved over flow's run, when readable.
    pub packets: Option<super::snmp::Packets>,
}

impl UdpCost {
    fn program(&self, name: &str) -> Option<&ProgStats> {
        self.programs.iter().find(|p| p.name == name)
    }

    /// Runs of the egress and ingress programs (every packet, not only the blast's).
    pub fn runs(&self) -> u64 {
        UDP_PACKET_PROGRAMS
            .iter()
            .filter_map(|n| self.program(n))
            .map(|p| p.run_cnt)
            .sum()
    }

    /// ns per run of the egress and ingress programs together: per datagram and end.
    pub fn ns_per_event(&self) -> Option<f64> {
        let progs = || UDP_PACKET_PROGRAMS.iter().filter_map(|n| self.program(n));
        let time: u64 = progs().map(|p| p.run_time_ns).sum();
        let runs = self.runs();
        (runs > 0).then(|| time as f64 / runs as f64)
    }

    /// ns per run of one program.
    pub fn ns_of(&self, name: &str) -> Option<f64> {
        self.program(name)?.ns_per_event()
    }

    /// What one datagram over loopback costs: one egress run and one ingress run.
    pub fn ns_per_datagram(&self) -> Option<f64> {
        Some(self.ns_of(UDP_PACKET_PROGRAMS[0])? + self.ns_of(UDP_PACKET_PROGRAMS[1])?)
    }
}

/// One count of held connections, measured under each long-running flow command in turn.
#[derive(Debug, Default, Clone)]
pub struct Scale {
    pub connections: u64,
    /// Connections that move 1 KiB each way every second.
    pub active: u64,
    /// Processes holding the sockets (the fd limit caps each one).
    pub holders: usize,
    /// Seconds to open every connection.
    pub setup_s: f64,
    /// `flow history`, `flow serve`, `flow top` (piped), one after the other.
    pub runs: Vec<ScaleRun>,
    /// Setting up the connections failed (no run measured).
    pub error: Option<String>,
}

impl Scale {
    /// The runs that measured, without an error.
    pub fn ok_runs(&self) -> impl Iterator<Item = &ScaleRun> {
        self.runs.iter().filter(|r| r.error.is_none())
    }

    /// The run with the highest `key` among those that measured it.
    pub fn worst<T: PartialOrd + Copy>(
        &self,
        key: impl Fn(&ScaleRun) -> Option<T>,
    ) -> Option<(&ScaleRun, T)> {
        self.ok_runs()
            .filter_map(|r| Some((r, key(r)?)))
            .fold(None, |worst, (r, v)| match worst {
                Some((_, w)) if w >= v => worst,
                _ => Some((r, v)),
            })
    }

    pub fn run(&self, command: &str) -> Option<&ScaleRun> {
        self.ok_runs().find(|r| r.command == command)
    }
}

/// One flow command over held connections.
#[derive(Debug, Default, Clone)]
pub struct ScaleRun {
    /// `history`, `serve` or `top`.
    pub command: String,
    /// Seconds flow was measured over (after every socket had moved a byte).
    pub measured_s: f64,
    /// CPU seconds per second over those seconds.
    pub cores: Option<f64>,
    /// VmHWM over flow's whole run (start-up included).
    pub peak_rss_kib: Option<u64>,
    /// Sockets the observer keeps (`flow -v`), most seen in the measured seconds.
    pub live: Option<u64>,
    /// Rows each poll of the measured seconds read (on typed rungs: changed sockets only).
    pub rows: Vec<u64>,
    /// How long each poll's read took in the measured seconds, ms.
    pub read_ms: Vec<f64>,
    /// Owner resolution per poll (old `flow -v` wording only), ms.
    pub owners_ms: Vec<f64>,
    /// History samples the tracker said it dropped (0 when it said nothing).
    pub dropped_samples: u64,
    /// `flow serve`: scrapes of `/metrics` answered 200, of those tried, and bytes of the last.
    pub scrapes_ok: u32,
    pub scrapes: u32,
    pub scrape_bytes: u64,
    /// Top of `perf report` for flow during the measurement (full mode).
    pub profile: Vec<String>,
    /// The incremental read's walk program over a few seconds after the measured ones.
    pub walk: Option<WalkCost>,
    pub warnings: Vec<String>,
    pub error: Option<String>,
}

/// A walk program's own cost over a `bpf_stats` window: one run per socket (or entry) visited.
#[derive(Debug, Default, Clone)]
pub struct WalkCost {
    pub program: String,
    pub seconds: f64,
    pub runs: u64,
    pub run_time_ns: u64,
}

impl WalkCost {
    pub fn ns_per_run(&self) -> Option<f64> {
        (self.runs > 0).then(|| self.run_time_ns as f64 / self.runs as f64)
    }

    /// Program time per second of the window: per poll at a 1 s interval.
    pub fn ms_per_second(&self) -> Option<f64> {
        (self.seconds > 0.0).then(|| self.run_time_ns as f64 / 1e6 / self.seconds)
    }
}

/// `flow serve` with nothing to watch: how much memory flow takes just to start.
#[derive(Debug, Default, Clone)]
pub struct Idle {
    /// How long after "attached" VmHWM was read.
    pub after_s: f64,
    pub peak_rss_kib: Option<u64>,
    /// Sockets live on the machine meanwhile (`flow -v`).
    pub live: Option<u64>,
    pub error: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct Churn {
    /// Target connections per second and for how long.
    pub rate: u64,
    pub seconds: u64,
    pub planned: u64,
    /// Connections that completed (connect, write, server read, close).
    pub done: u64,
    pub failed: u64,
    pub achieved_rate: f64,
    pub bytes_per_connection: u64,
    /// Bytes the clients wrote and the server read.
    pub written: u64,
    pub moved: u64,
    /// flow's totals for the generator's port: client sends, server receives, and the
    /// directions that carried nothing (must be 0).
    pub reported_tx: u64,
    pub reported_rx: u64,
    pub reported_other: u64,
    /// flow's rows for the port: client ends, server ends, and 4-tuples listed more than once.
    pub client_rows: u64,
    pub server_rows: u64,
    pub repeated_tuples: u64,
    pub warnings: Vec<String>,
    /// `flow: note:` lines (kernel hook runs skipped): shown, not losses.
    pub notes: Vec<String>,
    /// Sockets live in flow (`flow -v`) at its first poll (before the churn) and its last.
    pub map_before: Option<u64>,
    pub map_after: Option<u64>,
    /// flow's CPU seconds per second while the connections churned.
    pub cores: Option<f64>,
    /// flow's VmHWM at the end of the churn.
    pub peak_rss_kib: Option<u64>,
    /// flow's VmRSS just before the churn, and a minute after it ended (full mode).
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    /// Seconds between the end of the churn and `rss_after_kib`.
    pub after_s: f64,
    /// The same figures for a `flow serve` running beside it (what people leave running; it
    /// keeps no window of closed connections as `bandwidth` does).
    pub serve: Resident,
    pub error: Option<String>,
}

/// CPU and memory of a long-running flow over a churn run.
#[derive(Debug, Default, Clone)]
pub struct Resident {
    /// CPU seconds per second while the connections churned.
    pub cores: Option<f64>,
    /// VmHWM at the end of the churn (since its start).
    pub peak_rss_kib: Option<u64>,
    /// VmRSS just before the churn and a minute after it ended (full mode).
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
}

impl Churn {
    /// Bytes exact and nothing lost.
    pub fn clean(&self) -> bool {
        self.exact() && self.warnings.is_empty()
    }

    pub fn exact(&self) -> bool {
        self.error.is_none()
            && self.moved > 0
            && self.reported_tx == self.moved
            && self.reported_rx == self.moved
            && self.reported_other == 0
    }
}

#[derive(Debug, Default, Clone)]
pub struct Startup {
    /// From spawn to the "attached" line, ms.
    pub attached_ms: Vec<f64>,
    /// From spawn to the first line of the table (the sample, 100 ms window included), ms.
    pub sample_ms: Vec<f64>,
    /// From spawn to exit with `--window 100ms` (first and only sample printed), ms.
    pub exit_ms: Vec<f64>,
    pub error: Option<String>,
}
