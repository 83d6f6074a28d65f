//! Times on the command line and in reports: `HH:MM[:SS]` (local, the latest such moment not in
//! the future), `YYYY-MM-DD HH:MM[:SS]` (local), RFC 3339, `now`, or a duration ago (`10m`).

use jiff::{civil, tz::TimeZone, Timestamp};

/// The zone local times are read and printed in (`TZ`, else `/etc/localtime`, else UTC).
pub fn local_zone() -> TimeZone {
    TimeZone::try_system().unwrap_or(TimeZone::UTC)
}

const FORMS: &str =
    "HH:MM[:SS] local, YYYY-MM-DD HH:MM[:SS], RFC 3339, now, or a duration ago such as 10m";

/// Unix milliseconds of `text`, read relative to `now_ms` in `zone`.
pub fn parse_time(text: &str, now_ms: i64, zone: &TimeZone) -> Result<i64, String> {
    let text = text.trim();
    let bad = |why: &str| format!("`{text}` is not a time ({FORMS}){why}");
    if text.is_empty() {
        return Err(bad(""));
    }
    if text.eq_ignore_ascii_case("now") {
        return Ok(now_ms);
    }
    if text.starts_with(|c: char| c.is_ascii_digit()) && !text.contains([':', '-']) {
        let ago = humantime::parse_duration(text).map_err(|e| bad(&format!(": {e}")))?;
        return Ok(now_ms - ago.as_millis().min(i64::MAX as u128) as i64);
    }
    if let Some(time) = clock_time(text) {
        let time = time.ok_or_else(|| bad(": hours 0-23, minutes and seconds 0-59"))?;
        let now = Timestamp::from_millisecond(now_ms)
            .map_err(|e| bad(&format!(": {e}")))?
            .to_zoned_datetime(zone.clone());
        let mut date = now.date();
        for _ in 0..2 {
            let at = date
                .to_datetime(time)
                .to_zoned_datetime(zone.clone())
                .map_err(|e| bad(&format!(": {e}")))?
                .timestamp()
                .as_millisecond();
            if at <= now_ms {
                return Ok(at);
            }
            date = date.yesterday().map_err(|e| bad(&format!(": {e}")))?;
        }
        return Err(bad(""));
    }
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Ok(ts.as_millisecond());
    }
    if let Ok(dt) = text.parse::<civil::DateTime>() {
        return dt
            .to_zoned_datetime(zone.clone())
            .map(|z| z.timestamp().as_millisecond())
            .map_err(|e| bad(&format!(": {e}")));
    }
    Err(bad(""))
}

/// `Some(Some(time))` for a valid `HH:MM[:SS]`, `Some(None)` for that shape out of range, `None`
/// for another shape.
fn clock_time(text: &str) -> Option<Option<civil::Time>> {
    let parts: Vec<&str> = text.split(':').collect();
    if !(2..=3).contains(&parts.len())
        || parts
            .iter()
            .any(|p| p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let number = |i: usize| parts.get(i).map_or(Some(0), |p| p.parse::<i8>().ok());
    let (h, m, s) = (number(0)?, number(1)?, number(2)?);
    Some(civil::Time::new(h, m, s, 0).ok())
}

/// RFC 3339 in UTC with milliseconds (`2026-05-01T03:12:00.250Z`).
pub fn rfc3339(ms: i64) -> String {
    Timestamp::from_millisecond(ms)
        .map(|t| format!("{t:.3}"))
        .unwrap_or_else(|_| ms.to_string())
}

/// `YYYY-MM-DD HH:MM:SS` in `zone`.
pub fn local(ms: i64, zone: &TimeZone) -> String {
    Timestamp::from_millisecond(ms)
        .map(|t| {
            t.to_zoned_datetime(zone.clone())
                .strftime("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| ms.to_string())
}

/// `HH:MM` (or `MM-DD HH:MM` when `with_date`) in `zone`: the plot's time axis.
pub fn axis_label(ms: i64, zone: &TimeZone, with_date: bool, with_seconds: bool) -> String {
    let format = match (with_date, with_seconds) {
        (true, _) => "%m-%d %H:%M",
        (false, true) => "%H:%M:%S",
        (false, false) => "%H:%M",
    };
    Timestamp::from_millisecond(ms)
        .map(|t| {
            t.to_zoned_datetime(zone.clone())
                .strftime(format)
                .to_string()
        })
        .unwrap_or_default()
}
