//! Scale: N concurrent loopback connections (held by child processes, see `hold.rs`), a
//! fraction of them active, while `flow history --interval 1s -v` runs: flow's CPU per
//! second, peak RSS, map entries, and per-poll timings when flow prints them.

use super::{
    flow::Running,
    hold::{raise_nofile, Spec},
    proc::{cpu_seconds, status_kib, Spawned},
    profile,
    results::Scale,
    Ctx,
};
use anyhow::{bail, Context, Result};
use std::{
    fs::{self, File},
    io::Write,
    net::{IpAddr, Ipv4Addr},
    process::Command,
    thread,
    time::{Duration, Instant},
};

/// fds a holder keeps for itself besides two per connection.
const SPARE_FDS: u64 = 64;
/// One connection in this many moves data every second.
const ACTIVE_EVERY: u64 = 100;

pub fn measure(ctx: &mut Ctx, connections: u64) -> Scale {
    let mut scale = Scale {
        connections,
        active: connections.div_ceil(ACTIVE_EVERY),
        ..Scale::default()
    };
    if let Err(err) = run(ctx, &mut scale) {
        scale.error = Some(format!("{err:#}"));
    }
    scale
}

/// How many holders for `connections` when each may have `fd_limit` fds, and how many each.
pub fn split(connections: u64, fd_limit: u64) -> Vec<u64> {
    let per = (fd_limit.saturating_sub(SPARE_FDS) / 2).max(1);
    let holders = connections.div_ceil(per).max(1);
    (0..holders)
        .map(|h| connections / holders + u64::from(h < connections % holders))
        .collect()
}

fn run(ctx: &mut Ctx, scale: &mut Scale) -> Result<()> {
    let n = scale.connections;
    // Raised here so every holder inherits it; it is capped by the hard limit.
    let fd_limit = raise_nofile(2 * n + SPARE_FDS);
    let counts = split(n, fd_limit);
    if counts.len() > 250 {
        bail!(
            "{n} connections need {} holders (fd limit {fd_limit}); at most 250 addresses",
            counts.len()
        );
    }
    scale.holders = counts.len();
    println!(
        "bench: scale {n} connections in {} holder(s) (fd limit {fd_limit})",
        counts.len()
    );
    let exe = std::env::current_exe().context("finding the xtask binary")?;
    let started = Instant::now();
    let mut holders = Vec::new();
    for (h, count) in counts.iter().enumerate() {
        let spec = Spec {
            addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + h as u8)),
            count: *count as usize,
            active: count.div_ceil(ACTIVE_EVERY) as usize,
        };
        let mut cmd = Command::new(&exe);
        cmd.args(["bench", "--hold", &spec.arg()]);
        let log = ctx.raw(&format!("scale-{n}-holder{h}.log"));
        holders.push(Spawned::start_with_stdin("holder", &mut cmd, Some(&log))?);
    }
    for holder in &mut holders {
        if holder
            .wait_line(|l| l.starts_with("ready"), Duration::from_secs(600))
            .is_none()
        {
            bail!("a holder did not get ready: {}", holder.tail(3));
        }
    }
    scale.setup_s = started.elapsed().as_secs_f64();

    // flow's window leaves room before the measurement (touching every socket) and after it
    // (counting the map), so only steady polling is measured, not start-up or the last render.
    let measure = Duration::from_secs(if ctx.plan.quick { 2 } else { 10 });
    let window = measure.as_secs() + 4;
    let mut global = vec!["-v".to_string()];
    // Every socket gets an entry once touched: both ends of every connection, plus room.
    let entries = (2 * n + 8192).next_power_of_two();
    if entries > 65536 {
        global.extend(["--map-entries".to_string(), entries.to_string()]);
    }
    let args = [
        "history",
        "--window",
        &format!("{window}s"),
        "--interval",
        "1s",
    ]
    .map(String::from);
    let out_path = ctx.raw(&format!("scale-{n}-flow.out"));
    let log = ctx.raw(&format!("scale-{n}-flow.log"));
    let mut running = ctx
        .flow
        .start(&global, &args, Some(File::create(&out_path)?), Some(&log))?;
    for holder in &mut holders {
        writeln!(holder.stdin().context("holder stdin")?, "touch")?;
    }
    for holder in &mut holders {
        if holder
            .wait_line(|l| l.starts_with("touched"), Duration::from_secs(300))
            .is_none()
        {
            bail!("a holder did not touch its connections: {}", holder.tail(3));
        }
    }
    let pid = running.proc.pid();
    let profile = if ctx.plan.quick {
        None
    } else {
        let data = ctx.raw(&format!("scale-{n}-flow.perf.data"));
        profile::start(pid, &data, &ctx.raw(&format!("scale-{n}-perf.log")))
    };
    // CPU over `measure` (or until flow exits, if the touch took too long); peak RSS until exit.
    let first = (Instant::now(), cpu_seconds(pid, false));
    let mut last = first;
    let mut peak = None;
    let alive = |r: &mut Running| matches!(r.proc.wait(Duration::ZERO), Ok(None));
    while alive(&mut running) && first.0.elapsed() < measure {
        thread::sleep(Duration::from_millis(250));
        if let Some(cpu) = cpu_seconds(pid, false) {
            last = (Instant::now(), Some(cpu));
        }
        peak = status_kib(pid, "VmHWM").or(peak);
    }
    let wall = last.0.duration_since(first.0).as_secs_f64();
    if let (Some(a), Some(b)) = (first.1, last.1) {
        if wall > 0.5 {
            scale.cores = Some((b - a) / wall);
        }
    }
    scale.measured_s = wall;
    if let Some(profile) = profile {
        scale.profile = profile.finish();
    }
    let limit = Instant::now() + Duration::from_secs(window + 600);
    while alive(&mut running) && Instant::now() < limit {
        peak = status_kib(pid, "VmHWM").or(peak);
        thread::sleep(Duration::from_millis(100));
    }
    scale.peak_rss_kib = peak;
    let finished = running.finish(Duration::from_secs(60));
    for holder in &mut holders {
        holder.close_stdin();
    }
    for holder in &mut holders {
        holder.stop("TERM", Duration::from_secs(30));
    }
    let finished = finished?;
    scale.warnings = finished.warnings;
    let texts: Vec<&str> = finished.lines.iter().map(|l| l.text.as_str()).collect();
    scale.drain_ms = timings(&texts, "drain");
    // What flow -v says it drained: socket-local storage has no map to count with bpftool.
    scale.map_entries = drained_entries(&texts);
    if scale.map_entries.is_none() {
        ctx.notes
            .push(format!("scale {n}: flow -v printed no drain line"));
    }
    scale.owners_ms = timings(&texts, "owner");
    // The listing of 2N connections is not worth keeping.
    let _ = fs::remove_file(&out_path);
    if scale.cores.is_none() {
        bail!("flow exited before it could be measured (touching the sockets outlasted its {window} s window)");
    }
    Ok(())
}

/// Durations (in ms) that `flow -v` printed on lines mentioning `keyword`: the first
/// `<number><unit>` after the keyword, unit ns/µs/us/ms/s.
pub fn timings(lines: &[&str], keyword: &str) -> Vec<f64> {
    lines
        .iter()
        .filter_map(|line| {
            let lower = line.to_lowercase();
            let at = lower.find(keyword)?;
            lower[at..]
                .split(|c: char| {
                    c.is_whitespace() || c == ',' || c == ';' || c == '=' || c == '(' || c == ')'
                })
                .find_map(duration_ms)
        })
        .collect()
}

/// The most entries one poll drained, from `flow -v`'s "drained N entries" lines.
pub fn drained_entries(lines: &[&str]) -> Option<u64> {
    drained_per_poll(lines).into_iter().max()
}

/// Entries each poll drained, in order, from `flow -v`'s "drained N entries" lines.
pub fn drained_per_poll(lines: &[&str]) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|line| {
            let rest = &line[line.find("drained ")? + "drained ".len()..];
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

fn duration_ms(token: &str) -> Option<f64> {
    let split = token.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = token.split_at(split);
    let value: f64 = number.parse().ok()?;
    // Divide rather than multiply by 1e-3: 830µs reads back as exactly 0.83 ms.
    match unit {
        "ns" => Some(value / 1e6),
        "µs" | "us" => Some(value / 1e3),
        "ms" => Some(value),
        "s" => Some(value * 1e3),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_stay_under_the_fd_limit() {
        assert_eq!(split(500, 20000), vec![500]);
        let counts = split(100_000, 20000);
        assert_eq!(counts.iter().sum::<u64>(), 100_000);
        assert!(
            counts.iter().all(|c| 2 * c + SPARE_FDS <= 20000),
            "{counts:?}"
        );
        assert_eq!(counts.len(), 11);
        assert_eq!(split(10_000, 1 << 20), vec![10_000]);
    }

    #[test]
    fn timings_from_verbose_lines() {
        let lines = [
            "flow: poll: drained 200000 entries (200010 sockets) in 12.5ms, owners resolved in 830µs",
            "flow: poll: map drain=3ms (batch)",
            "flow: something else 5ms",
        ];
        assert_eq!(timings(&lines, "drain"), vec![12.5, 3.0]);
        assert_eq!(timings(&lines, "owner"), vec![0.83]);
        assert!(timings(&lines, "nothing").is_empty());
        assert_eq!(drained_entries(&lines), Some(200_000));
        assert_eq!(drained_entries(&lines[1..]), None);
    }
}
