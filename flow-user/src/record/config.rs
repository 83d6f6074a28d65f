//! How the store is bounded: the tiers of resolution and their retention, and the size cap.

use std::{fmt, time::Duration};

/// One tier: samples of `resolution` kept for `retention`, then rolled into the next tier (or,
/// for the last, dropped as expired).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tier {
    /// Length of one sample; for the first tier, the recording interval.
    pub resolution_ms: i64,
    /// How long this tier's samples are kept (measured from their start).
    pub retention_ms: i64,
}

/// The tiers, finest first. The first holds the raw per-interval samples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tiers(pub Vec<Tier>);

/// The default tiers: the interval's samples for an hour, 1-minute rollups for a day, 10-minute
/// rollups for 30 days.
pub const DEFAULT_TIERS: &str = "raw:1h,1m:1d,10m:30d";

/// The default size cap: 512 MiB.
pub const DEFAULT_MAX_SIZE: u64 = 512 << 20;

impl Tiers {
    pub fn default_for(interval: Duration) -> Tiers {
        parse_tiers(DEFAULT_TIERS, interval).expect("default tiers parse")
    }

    /// The longest span any tier's sample can have (how far before a time a sample covering it
    /// may start).
    pub fn longest_resolution_ms(&self) -> i64 {
        self.0.iter().map(|t| t.resolution_ms).max().unwrap_or(0)
    }
}

impl fmt::Display for Tiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, tier) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(
                f,
                "{}:{}",
                humantime::format_duration(Duration::from_millis(tier.resolution_ms as u64)),
                humantime::format_duration(Duration::from_millis(tier.retention_ms as u64))
            )?;
        }
        Ok(())
    }
}

/// Parses `RES:KEEP,RES:KEEP,…` (e.g. `raw:1h,1m:1d,10m:30d`). The first tier's resolution is the
/// recording interval (`raw`, or the interval itself); each later resolution is a whole multiple
/// of the one before, and longer.
pub fn parse_tiers(text: &str, interval: Duration) -> Result<Tiers, String> {
    let interval_ms = interval.as_millis().max(1) as i64;
    let mut tiers = Vec::new();
    for (i, part) in text.split(',').enumerate() {
        let (resolution, retention) = part.trim().split_once(':').ok_or_else(|| {
            format!("`{part}` is not RESOLUTION:RETENTION (e.g. raw:1h,1m:1d,10m:30d)")
        })?;
        let duration = |what: &str| -> Result<i64, String> {
            let d = humantime::parse_duration(what.trim())
                .map_err(|e| format!("`{what}` is not a duration ({e})"))?;
            if d.is_zero() {
                return Err(format!("`{what}`: must be longer than zero"));
            }
            Ok(d.as_millis() as i64)
        };
        let resolution_ms = if i == 0 {
            if resolution.trim() != "raw" && duration(resolution)? != interval_ms {
                return Err(format!(
                    "the first tier is the recording interval's samples: write `raw:{retention}`"
                ));
            }
            interval_ms
        } else {
            duration(resolution)?
        };
        let retention_ms = duration(retention)?;
        if let Some(previous) = tiers.last() {
            let previous: &Tier = previous;
            if resolution_ms <= previous.resolution_ms
                || (i > 1 && resolution_ms % previous.resolution_ms != 0)
            {
                return Err(format!(
                    "tier `{part}`: each resolution must be longer than the one before and a whole multiple of it"
                ));
            }
        }
        if retention_ms < resolution_ms {
            return Err(format!(
                "tier `{part}`: the retention must be at least the resolution"
            ));
        }
        tiers.push(Tier {
            resolution_ms,
            retention_ms,
        });
    }
    if tiers.len() > 8 {
        return Err("at most 8 tiers".into());
    }
    Ok(Tiers(tiers))
}

/// A size such as `512MiB`, `2GB`, `100M` or a number of bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as 512MiB, 2GB or 100M"))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "kb" => 1e3,
        "m" | "mib" => 1024.0 * 1024.0,
        "mb" => 1e6,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "gb" => 1e9,
        "t" | "tib" => 1024.0f64.powi(4),
        "tb" => 1e12,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}` (B, KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    let bytes = (number * factor) as u64;
    if bytes < 64 * 1024 {
        return Err(format!("`{text}`: the store needs at least 64KiB"));
    }
    Ok(bytes)
}

/// Everything the writer is told.
#[derive(Clone, Debug)]
pub struct RecordConfig {
    pub interval: Duration,
    pub tiers: Tiers,
    pub max_size: u64,
}

impl RecordConfig {
    pub fn new(interval: Duration) -> RecordConfig {
        RecordConfig {
            interval,
            tiers: Tiers::default_for(interval),
            max_size: DEFAULT_MAX_SIZE,
        }
    }
}
