//! Scale: N concurrent loopback connections (held by child processes, see `hold.rs`; set up
//! once per count), a fraction of them active, while each command people leave running runs in
//! turn over the same connections: `flow history --window W --interval 1s -v`, `flow serve
//! --interval 1s -v` (scraped during the run, so the exporter path runs too) and `flow top
//! --interval 1s -v` with stdout piped to a file (plain tables each interval). For each: CPU per
//! second over the steady seconds, peak RSS (VmHWM, start-up included), and per-poll read
//! timings and live sockets from `flow -v`.

use super::{
    flow::Running,
    hold::{raise_nofile, Spec},
    proc::{cpu_seconds, status_kib, Spawned},
    profile,
    results::{Scale, ScaleRun},
    verbose, walk, Ctx,
};
use anyhow::{bail, Context, Result};
use std::{
    fs::{self, File},
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    process::Command,
    thread,
    time::{Duration, Instant},
};

/// fds a holder keeps for itself besides two per connection.
const SPARE_FDS: u64 = 64;
/// One connection in this many moves data every second.
const ACTIVE_EVERY: u64 = 100;
/// The commands measured at each count, in this order.
pub const COMMANDS: [&str; 3] = ["history", "serve", "top"];

pub fn measure(ctx: &mut Ctx, connections: u64) -> Scale {
    let mut scale = Scale {
        connections,
        active: connections.div_ceil(ACTIVE_EVERY),
        ..Scale::default()
    };
    let mut holders = match set_up(ctx, &mut scale) {
        Ok(holders) => holders,
        Err(err) => {
            scale.error = Some(format!("{err:#}"));
            return scale;
        }
    };
    for command in COMMANDS {
        println!("bench: scale {connections}: flow {command}");
        let mut run = ScaleRun {
            command: command.to_string(),
            ..ScaleRun::default()
        };
        if let Err(err) = run_one(ctx, connections, &mut holders, &mut run) {
            run.error = Some(format!("{err:#}"));
        }
        scale.runs.push(run);
    }
    for holder in &mut holders {
        holder.close_stdin();
    }
    for holder in &mut holders {
        holder.stop("TERM", Duration::from_secs(30));
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

/// Starts the holders and waits until every connection is open.
fn set_up(ctx: &mut Ctx, scale: &mut Scale) -> Result<Vec<Spawned>> {
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
    Ok(holders)
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// One flow command over the held connections.
fn run_one(ctx: &mut Ctx, n: u64, holders: &mut [Spawned], run: &mut ScaleRun) -> Result<()> {
    let command = run.command.clone();
    // Steady polling only: the touch (every socket moving a byte) comes before, and history's
    // window leaves room after for its listing.
    let measure = Duration::from_secs(if ctx.plan.quick { 2 } else { 10 });
    // The walk program's stats window follows the measured seconds; history polls through it.
    let walk_seconds = walk::seconds(ctx.plan.quick);
    let window = measure.as_secs() + walk_seconds + 4;
    let mut global = vec!["-v".to_string()];
    // Every socket gets an entry once touched: both ends of every connection, plus room.
    let entries = (2 * n + 8192).next_power_of_two();
    if entries > 65536 {
        global.extend(["--map-entries".to_string(), entries.to_string()]);
    }
    let port = free_port()?;
    let args: Vec<String> = match command.as_str() {
        "history" => vec![
            "history".into(),
            "--window".into(),
            format!("{window}s"),
            "--interval".into(),
            "1s".into(),
        ],
        "serve" => vec![
            "serve".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--interval".into(),
            "1s".into(),
        ],
        "top" => vec!["top".into(), "--interval".into(), "1s".into()],
        other => bail!("no scale run for `flow {other}`"),
    };
    let out_path = ctx.raw(&format!("scale-{n}-{command}.out"));
    let log = ctx.raw(&format!("scale-{n}-{command}.log"));
    let mut running = ctx
        .flow
        .start(&global, &args, Some(File::create(&out_path)?), Some(&log))?;
    for holder in holders.iter_mut() {
        writeln!(holder.stdin().context("holder stdin")?, "touch")?;
    }
    for holder in holders.iter_mut() {
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
        let data = ctx.raw(&format!("scale-{n}-{command}.perf.data"));
        profile::start(
            pid,
            &data,
            &ctx.raw(&format!("scale-{n}-{command}-perf.log")),
        )
    };
    // Scrapes of `flow serve`, evenly within the measured seconds.
    let scrape_count = if ctx.plan.quick { 1 } else { 2 };
    let mut scrape_due: Vec<Duration> = (1..=scrape_count)
        .map(|i| measure * i / (scrape_count + 1))
        .collect();
    if command != "serve" {
        scrape_due.clear();
    }
    // CPU over `measure` (or until flow exits, if the touch took too long); peak RSS until exit.
    let first = (Instant::now(), cpu_seconds(pid, false));
    let mut last = first;
    let mut peak = None;
    let alive = |r: &mut Running| matches!(r.proc.wait(Duration::ZERO), Ok(None));
    while alive(&mut running) && first.0.elapsed() < measure {
        thread::sleep(Duration::from_millis(250));
        if scrape_due
            .first()
            .is_some_and(|due| first.0.elapsed() >= *due)
        {
            scrape_due.remove(0);
            run.scrapes += 1;
            match scrape(port) {
                Ok(bytes) => {
                    run.scrapes_ok += 1;
                    run.scrape_bytes = bytes;
                }
                Err(err) => run.warnings.push(format!("scrape: {err:#}")),
            }
        }
        if let Some(cpu) = cpu_seconds(pid, false) {
            last = (Instant::now(), Some(cpu));
        }
        peak = status_kib(pid, "VmHWM").or(peak);
    }
    let wall = last.0.duration_since(first.0).as_secs_f64();
    if let (Some(a), Some(b)) = (first.1, last.1) {
        if wall > 0.5 {
            run.cores = Some((b - a) / wall);
        }
    }
    run.measured_s = wall;
    if alive(&mut running) {
        match walk::measure(pid, walk_seconds) {
            Ok(cost) => run.walk = cost,
            Err(err) => run.warnings.push(format!("walk program stats: {err:#}")),
        }
    }
    if let Some(profile) = profile {
        run.profile = profile.finish();
    }
    let finished = if command == "history" {
        let limit = Instant::now() + Duration::from_secs(window + 600);
        while alive(&mut running) && Instant::now() < limit {
            peak = status_kib(pid, "VmHWM").or(peak);
            thread::sleep(Duration::from_millis(100));
        }
        run.peak_rss_kib = peak;
        running.finish(Duration::from_secs(60))
    } else {
        run.peak_rss_kib = status_kib(pid, "VmHWM").or(peak);
        running.interrupt(Duration::from_secs(30))
    };
    // The listing of 2N connections (or top's tables of them) is not worth keeping.
    let out_bytes = fs::metadata(&out_path).map_or(0, |m| m.len());
    let _ = fs::remove_file(&out_path);
    let finished = finished?;
    run.warnings.extend(finished.warnings);
    run.dropped_samples = verbose::dropped_samples(&run.warnings);
    // Polls logged within the measured seconds: the touch's poll, with every socket changed,
    // and the last of history's are not steady polling.
    let steady: Vec<&str> = finished
        .lines
        .iter()
        .filter(|l| l.at >= first.0 && l.at <= last.0)
        .map(|l| l.text.as_str())
        .collect();
    let polls = verbose::polls(steady.iter().copied());
    run.rows = polls.iter().map(|p| p.rows).collect();
    run.read_ms = polls.iter().map(|p| p.read_ms).collect();
    run.live = polls.iter().map(|p| p.live).max();
    run.owners_ms = timings(&steady, "owner");
    if run.live.is_none() {
        ctx.notes.push(format!(
            "scale {n} flow {command}: flow -v logged no poll line in the measured seconds"
        ));
    }
    if command == "top" && out_bytes == 0 {
        bail!("flow top printed no table to its piped stdout");
    }
    if command == "serve" && run.scrapes_ok == 0 {
        bail!(
            "no scrape of flow serve's /metrics answered 200: {}",
            run.warnings.join("; ")
        );
    }
    if run.cores.is_none() {
        bail!("flow exited before it could be measured (touching the sockets outlasted its {window} s window)");
    }
    Ok(())
}

/// A plain `GET /metrics` on `port`; the bytes of the answer when it is a 200.
pub fn scrape(port: u16) -> Result<u64> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .context("reading the answer")?;
    let status = answer.split(|b| *b == b'\n').next().unwrap_or_default();
    let status = String::from_utf8_lossy(status);
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("answered `{}`", status.trim());
    }
    Ok(answer.len() as u64)
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
                .find_map(verbose::duration_ms)
        })
        .collect()
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
    }
}
