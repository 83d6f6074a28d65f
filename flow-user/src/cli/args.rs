//! Arguments of every command (clap derive).

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use flow_common::{DEFAULT_MAP_ENTRIES, PAYLOAD_DEFAULT, PAYLOAD_MAX};

use super::group::GroupBy;
use crate::{
    ebpf::Rung,
    model::{NetConnection, Protocol},
    monitor::ModeChoice,
};

/// Kernel-assisted per-connection TCP bandwidth monitor.
#[derive(Debug, Parser)]
#[command(name = "flow", version, propagate_version = true, verbatim_doc_comment)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// auto: eBPF when the kernel program loads, procfs otherwise.
    #[arg(
        long,
        global = true,
        default_value = "auto",
        value_name = "auto|ebpf|procfs"
    )]
    pub mode: ModeChoice,
    /// Use this rung of hooks instead of the best one that attaches.
    #[arg(long, global = true, value_name = "fentry|tp_btf|kprobe|tracepoint")]
    pub rung: Option<Rung>,
    /// Capacity of the kernel's per-socket map (least recently used sockets are evicted beyond).
    #[arg(long, global = true, default_value_t = DEFAULT_MAP_ENTRIES, value_parser = clap::value_parser!(u32).range(1..))]
    pub map_entries: u32,
    /// Capacity of the kernel's UDP flow map (socket and remote endpoint; least recently used
    /// flows are evicted beyond, and counted as evictions).
    #[arg(long, global = true, default_value_t = flow_common::udp::DEFAULT_UDP_FLOWS, value_parser = clap::value_parser!(u32).range(1..))]
    pub udp_flows: u32,
    /// More diagnostics on stderr; includes the kernel program's log lines.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Copy no payload at all: protocols come from ports only and `flow http` is unavailable.
    #[arg(long, global = true)]
    pub no_payload: bool,
    /// Bytes of payload copied from the first message in each direction (and from each HTTP
    /// request/response start); only the protocol, HTTP method, Host and status are kept. A TLS
    /// ClientHello (up to 2 KiB) and QUIC Initials are copied whole for their server name alone.
    #[arg(long, global = true, default_value_t = PAYLOAD_DEFAULT, value_parser = clap::value_parser!(u32).range(16..=PAYLOAD_MAX as i64))]
    pub payload_bytes: u32,
}

#[derive(Debug, Args, Clone, Default)]
pub struct Filters {
    /// Only connections owned by (or last moved by) this process.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Only connections with this port at either end.
    #[arg(long)]
    pub port: Option<u16>,
    /// Only connections of this protocol (HTTP, HTTPS, SSH, FTP, SMTP, DNS, UNKNOWN).
    #[arg(long)]
    pub protocol: Option<Protocol>,
    /// Only connections of this container: an id prefix, the container's name or its pod's.
    #[arg(long, value_name = "CONTAINER")]
    pub container: Option<String>,
    /// Only connections in this network namespace (its inode number, `stat -L /proc/PID/ns/net`).
    #[arg(long, value_name = "INODE")]
    pub netns: Option<u64>,
}

impl Filters {
    /// True when `connection` passes every filter given.
    pub fn matches(&self, connection: &NetConnection) -> bool {
        self.pid.is_none_or(|pid| connection.pid == Some(pid))
            && self
                .port
                .is_none_or(|p| connection.local.port() == p || connection.remote.port() == p)
            && self.protocol.is_none_or(|p| connection.protocol == p)
            && self.netns.is_none_or(|n| connection.netns == Some(n))
            && self
                .container
                .as_deref()
                .is_none_or(|wanted| in_container(connection, wanted))
    }
}

/// Whether `connection` is in the container `wanted` names: a prefix of its id, its name, or
/// its pod's name (`name` or `namespace/name`).
fn in_container(connection: &NetConnection, wanted: &str) -> bool {
    let Some(container) = connection.attribution.container.as_deref() else {
        return false;
    };
    let name = container.name.as_deref();
    let pod = container.pod.as_deref();
    let pod_name = pod.and_then(|p| p.name.as_deref());
    let pod_path = pod.and_then(|p| Some(format!("{}/{}", p.namespace.as_deref()?, pod_name?)));
    (!wanted.is_empty() && container.id.starts_with(&wanted.to_ascii_lowercase()))
        || name == Some(wanted)
        // Docker names its containers with a leading slash in its own files.
        || name.is_some_and(|n| n.strip_prefix('/') == Some(wanted))
        || pod_name == Some(wanted)
        || pod_path.as_deref() == Some(wanted)
}

// One-line help: clap's summary of a command is the first paragraph of its doc comment with
// one trailing period removed. Every command's summary is one whole sentence on one line, kept
// with its period by `verbatim_doc_comment` (tests/cli_help.rs checks `flow --help`); details
// go in later paragraphs, which only `flow <command> --help` shows.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Live view of the connections using the network, busiest first.
    ///
    /// Keys: t, r, s, p sort by total, received, sent, process (or key); g switches the view
    /// (by connection, process, container, remote host); space pauses; arrows and
    /// PgUp/PgDn scroll; q, Esc or Ctrl-C quit. Prints plain tables when stdout is not a
    /// terminal.
    #[command(verbatim_doc_comment)]
    Top(TopArgs),
    /// Prometheus/OpenMetrics exporter: serves `/metrics` over HTTP.
    #[command(verbatim_doc_comment)]
    Serve(ServeArgs),
    /// Flight recorder: writes what every connection moved into an SQLite store.
    ///
    /// One transaction per interval (WAL): a crash loses at most the last interval. Samples are
    /// kept at full resolution for a recent span, then rolled up into coarser tiers; past the
    /// size cap the oldest go first. `sqlite3` opens the store; `flow report` reads it.
    #[command(verbatim_doc_comment)]
    Record(RecordArgs),
    /// Top talkers of a recorded range or instant, as a table, JSON or a plot.
    ///
    /// TIME is HH:MM[:SS] (local: the latest such moment), YYYY-MM-DD HH:MM[:SS] (local),
    /// RFC 3339, or a duration ago such as 10m or 2h.
    #[command(verbatim_doc_comment)]
    Report(ReportArgs),
    #[command(flatten)]
    List(ListCommand),
    /// Write the man pages or a shell completion script (`cargo xtask install` runs this).
    #[command(hide = true, verbatim_doc_comment)]
    Generate {
        #[command(subcommand)]
        what: Generate,
    },
}

/// What `flow generate` writes. The pages and scripts come from the same clap definitions as
/// `--help`, so they cannot drift from it.
#[derive(Debug, Subcommand)]
pub enum Generate {
    /// Write flow.1 and one page per command (flow-top.1, …) into a directory.
    #[command(verbatim_doc_comment)]
    Man {
        /// Directory for the pages (created when missing).
        dir: std::path::PathBuf,
    },
    /// Print the completion script for a shell on stdout.
    #[command(verbatim_doc_comment)]
    Completions {
        /// The shell the script is for.
        shell: clap_complete::Shell,
    },
}

/// Commands that measure once and print one table or JSON document.
#[derive(Debug, Subcommand)]
pub enum ListCommand {
    /// Bandwidth of every connection over one window.
    #[command(verbatim_doc_comment)]
    Bandwidth {
        /// How long to measure (e.g. 500ms, 1s, 1m).
        #[arg(long, default_value = "1s", value_parser = parse_window)]
        window: Duration,
        #[command(flatten)]
        filters: Filters,
        /// Sum the rows by connection, process, container (or service) or remote host.
        #[arg(long, value_enum, default_value_t = GroupBy::Connection)]
        group: GroupBy,
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Socket statistics: queues, inode, byte and segment counters.
    #[command(verbatim_doc_comment)]
    Stats {
        /// Only the socket with this inode (0: all).
        #[arg(long, default_value_t = 0)]
        inode: u64,
        #[command(flatten)]
        filters: Filters,
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Bandwidth samples of every connection, taken every interval over a window.
    ///
    /// Measures for the whole window, then prints each connection's samples, oldest first.
    #[command(verbatim_doc_comment)]
    History {
        /// How long to collect samples (e.g. 30s, 5m).
        #[arg(long, default_value = "30s", value_parser = parse_window)]
        window: Duration,
        /// Time between two samples (e.g. 500ms, 1s).
        #[arg(long, default_value = "1s", value_parser = parse_window)]
        interval: Duration,
        #[command(flatten)]
        filters: Filters,
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// HTTP seen on connections within a window, latest exchange per connection.
    ///
    /// Shows the method, Host and status of each connection's latest exchange. Needs eBPF mode
    /// with payload capture.
    #[command(verbatim_doc_comment)]
    Http {
        /// How long to watch (e.g. 5s, 1m).
        #[arg(long, default_value = "5s", value_parser = parse_window)]
        window: Duration,
        #[command(flatten)]
        filters: Filters,
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Live connections with protocol (and whether payload or port told it) and owner.
    #[command(verbatim_doc_comment)]
    Connections {
        #[command(flatten)]
        filters: Filters,
        /// Sum the rows by connection, process, container (or service) or remote host.
        #[arg(long, value_enum, default_value_t = GroupBy::Connection)]
        group: GroupBy,
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// How often to measure and redraw (e.g. 500ms, 1s, 2s).
    #[arg(long, default_value = "1s", value_parser = parse_window)]
    pub interval: Duration,
    #[command(flatten)]
    pub filters: Filters,
    /// Measure over one interval, print one plain table and exit.
    #[arg(long)]
    pub once: bool,
    /// Show at most this many connections (0: all, or as many as the screen holds).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// With --once: one JSON document (the rows of `flow bandwidth --json`) instead of a table.
    #[arg(long, requires = "once")]
    pub json: bool,
    /// The view to start with (g switches): rows by connection, process, container (or
    /// service) or remote host, each with its rates and its bytes since flow started.
    #[arg(long, value_enum, default_value_t = GroupBy::Connection)]
    pub group: GroupBy,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to serve `/metrics` on; loopback unless told otherwise.
    #[arg(long, default_value = "127.0.0.1:9464", value_name = "ADDR:PORT")]
    pub listen: String,
    /// How often to measure.
    #[arg(long, default_value = "1s", value_parser = parse_window)]
    pub interval: Duration,
    /// Also export one series per connection (bounded by --max-series).
    #[arg(long)]
    pub per_connection: bool,
    /// Most connections given their own series with --per-connection; the others are counted
    /// in `flow_connections_without_series` (their bytes still reach the per-process series).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_series: u64,
    /// A per-process series with no connection seen for this long is removed.
    #[arg(long, default_value = "5m", value_parser = parse_window)]
    pub expire_after: Duration,
    /// TLS and basic auth from a Prometheus exporter-toolkit web config (the YAML file
    /// node_exporter's --web.config.file takes: tls_server_config, basic_auth_users).
    #[arg(long, value_name = "FILE")]
    pub web_config: Option<std::path::PathBuf>,
    /// Also record into this flight-recorder store, as `flow record --db` does (the systemd
    /// unit records into /var/lib/flow/flow.db).
    #[arg(long, value_name = "PATH")]
    pub db: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Most containers given their own `container` label on the per-process series; the
    /// traffic of the others is summed under `container="other"` (counted in
    /// `flow_containers_over_cap`).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_containers: u64,
    #[command(flatten)]
    pub filters: Filters,
}

/// A positive duration such as `500ms`, `1s` or `2m`.
fn parse_window(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration such as 500ms, 1s or 2m ({e})"))?;
    if duration.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(duration)
}

/// Where `flow record`, `flow serve --db` (the systemd unit) and `flow report` keep the store.
pub const DEFAULT_DB: &str = "/var/lib/flow/flow.db";

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// The store: an SQLite file, created when missing (its directory must exist).
    #[arg(long, default_value = DEFAULT_DB, value_name = "PATH")]
    pub db: std::path::PathBuf,
    /// How often to measure and write (one transaction each).
    #[arg(long, default_value = "1s", value_parser = parse_window)]
    pub interval: Duration,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub filters: Filters,
    /// Benchmarks: write this much synthetic traffic, ending now, through the same writer (no
    /// kernel program), print one JSON line and exit.
    #[arg(long, hide = true, value_parser = parse_window, value_name = "DURATION")]
    pub synthetic: Option<Duration>,
    #[arg(long, hide = true, default_value_t = 10_000)]
    pub synthetic_connections: u64,
    #[arg(long, hide = true, default_value_t = 100)]
    pub synthetic_active: u64,
}

/// How a flight-recorder store is bounded (`flow record`, `flow serve --db`).
#[derive(Debug, Args, Clone)]
pub struct StoreArgs {
    /// Tiers as RESOLUTION:RETENTION, finest first: the interval's own samples (`raw`), then
    /// rollups; each tier's samples are rolled into the next when they outlive its retention,
    /// and the last tier's are deleted.
    #[arg(long, default_value = crate::record::DEFAULT_TIERS, value_name = "TIERS")]
    pub retention: String,
    /// Size cap of the store (e.g. 512MiB, 2GB); past it the oldest samples go first.
    #[arg(long, default_value = "512MiB", value_parser = crate::record::parse_size, value_name = "SIZE")]
    pub max_size: u64,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The store `flow record` or `flow serve --db` wrote.
    #[arg(long, default_value = DEFAULT_DB, value_name = "PATH")]
    pub db: std::path::PathBuf,
    /// What was live at this instant, and what it moved in the sample holding it.
    #[arg(long, value_name = "TIME", conflicts_with_all = ["since", "until"], required_unless_present = "since")]
    pub at: Option<String>,
    /// Start of the range.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// End of the range [default: now].
    #[arg(long, value_name = "TIME", requires = "since")]
    pub until: Option<String>,
    /// Group rows by connection, process, container, remote (name or address) or protocol.
    #[arg(
        long,
        default_value = "connection",
        value_name = "connection|process|container|remote|protocol"
    )]
    pub by: crate::record::GroupBy,
    /// Show the N busiest rows (0: all).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: usize,
    /// One JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also draw the top rows' bandwidth over the range into FILE: PNG or SVG by its
    /// extension (.png, .svg).
    #[arg(long, value_name = "FILE", requires = "since")]
    pub plot: Option<std::path::PathBuf>,
}
