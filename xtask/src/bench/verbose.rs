//! What `flow -v` says about each poll, in either of its two wordings:
//!
//! - new: `poll: read R rows in T (L sockets live)`: R rows the read returned (on the typed
//!   rungs only the sockets that changed since the previous poll), T a Rust `Duration` debug
//!   string, L the live sockets the observer keeps;
//! - old: `poll: drained N entries (M sockets) in T, owners resolved in T2`: N entries read
//!   (every socket with an entry, each poll), which stands for both R and L.
//!
//! A line cut short (the last one of a killed process) is left out rather than half read.
//! Also here: the "history samples dropped" count of flow's loss warning.

/// One poll, as `flow -v` logged it.
#[derive(Clone, Debug, PartialEq)]
pub struct Poll {
    /// Rows (or entries) the read returned.
    pub rows: u64,
    /// How long the read took, ms.
    pub read_ms: f64,
    /// Sockets the observer keeps (old wording: the entries drained).
    pub live: u64,
}

/// The poll a line logs, if it logs one in full.
pub fn poll(line: &str) -> Option<Poll> {
    if let Some(at) = line.find("poll: read ") {
        // `R rows in T (L sockets live)`
        let rest = &line[at + "poll: read ".len()..];
        let (rows, rest) = rest.split_once(" rows in ")?;
        let (time, rest) = rest.split_once(" (")?;
        let (live, _) = rest.split_once(" sockets live)")?;
        return Some(Poll {
            rows: rows.trim().parse().ok()?,
            read_ms: duration_ms(time.trim())?,
            live: live.trim().parse().ok()?,
        });
    }
    let at = line.find("drained ")?;
    // `N entries (M sockets) in T, owners resolved in T2`
    let rest = &line[at + "drained ".len()..];
    let (entries, rest) = rest.split_once(" entries")?;
    let (_, rest) = rest.split_once(" in ")?;
    let time = rest.split(|c: char| c.is_whitespace() || c == ',').next()?;
    let entries: u64 = entries.trim().parse().ok()?;
    Some(Poll {
        rows: entries,
        read_ms: duration_ms(time)?,
        live: entries,
    })
}

/// Every poll logged in `lines`, in order.
pub fn polls<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<Poll> {
    lines.into_iter().filter_map(poll).collect()
}

/// `1.234ms`, `830µs`, `12ns`, `1.5s` (Rust's `Duration` debug form) in ms; `None` for
/// anything else, including a number whose unit was cut off.
pub fn duration_ms(token: &str) -> Option<f64> {
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

/// History samples the tracker dropped, from flow's warnings (`N history samples dropped
/// (bounds reached)`, one part of a `; `-joined line); 0 when no warning says so. A part that
/// says "dropped" without a number counts 1, so a changed wording cannot read as 0.
pub fn dropped_samples(warnings: &[String]) -> u64 {
    warnings
        .iter()
        .flat_map(|w| w.split("; "))
        .filter(|part| part.contains("dropped") && part.contains("sample"))
        .map(|part| {
            part.split_whitespace()
                .find_map(|w| w.parse::<u64>().ok())
                .unwrap_or(1)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_wording() {
        let line =
            "[2026-12-02T10:00:00Z INFO ] poll: read 1200 rows in 1.234ms (200010 sockets live)";
        assert_eq!(
            poll(line),
            Some(Poll {
                rows: 1200,
                read_ms: 1.234,
                live: 200_010
            })
        );
        let idle = "poll: read 0 rows in 830µs (12 sockets live)";
        assert_eq!(
            poll(idle).map(|p| (p.rows, p.read_ms, p.live)),
            Some((0, 0.83, 12))
        );
    }

    #[test]
    fn old_wording() {
        let line = "flow: poll: drained 200000 entries (200010 sockets) in 12.5ms, owners resolved in 830µs";
        assert_eq!(
            poll(line),
            Some(Poll {
                rows: 200_000,
                read_ms: 12.5,
                live: 200_000
            })
        );
        assert_eq!(
            poll("poll: drained 0 entries (3 sockets) in 1.5s, owners resolved in 2ms")
                .map(|p| p.read_ms),
            Some(1500.0)
        );
    }

    #[test]
    fn torn_and_other_lines_are_left_out() {
        let lines = [
            "flow: mode ebpf: attached the tp_btf rung",
            "poll: read 5 rows in 2ms (40 sockets live)",
            "poll: drained 7 entries (9 sockets) in 3ms, owners resolved in 1ms",
            "flow: something else 5ms",
            // Cut off mid-line: a killed process's last write.
            "poll: read 5 rows in 2.5",
            "poll: read 5 rows in 2.5ms (40 sock",
            "poll: drained 7 entries (9 sockets) in 3",
            "poll: drained 7",
        ];
        let got = polls(lines);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!((got[0].live, got[1].live), (40, 7));
    }

    #[test]
    fn dropped_samples_from_warnings() {
        assert_eq!(dropped_samples(&[]), 0);
        let w = vec![
            "3 close events lost; 1800000 history samples dropped (bounds reached)".to_string(),
        ];
        assert_eq!(dropped_samples(&w), 1_800_000);
        assert_eq!(dropped_samples(&["3 close events lost".into()]), 0);
        assert_eq!(dropped_samples(&["some samples dropped".into()]), 1);
    }
}
