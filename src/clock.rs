//! The proxy's clock: the wall clock, shifted when a test asks for another "now", and the
//! town's local dates (midnight in its time zone, DST-correct).
//!
//! Everything that dates something the trace or its life depends on (a record's time,
//! the day a trace file belongs to, when it rotates, what retention deletes) reads
//! [`now`], so a test can start the proxy at 23:59:58 on New Year's Eve
//! (`CHARTE_FAKE_NOW`) and watch the real binary rotate at midnight without waiting for
//! a day. The shift is one atomic read: [`now`] is on the request path.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// Nanoseconds added to the wall clock; 0 outside tests.
static SHIFT_NANOS: AtomicI64 = AtomicI64::new(0);

/// The environment variable that sets "now" at start (RFC 3339, e.g.
/// `2026-12-31T23:59:58+01:00`); time then runs on from there. For tests only: the
/// server logs a warning when it is set.
pub const FAKE_NOW_ENV: &str = "CHARTE_FAKE_NOW";

/// The time zone the town lives in unless the server file says otherwise.
pub const DEFAULT_TIME_ZONE: &str = "Europe/Paris";

/// The current time, as the proxy sees it.
pub fn now() -> SystemTime {
    let shift = SHIFT_NANOS.load(Ordering::Relaxed);
    let real = SystemTime::now();
    if shift == 0 {
        return real;
    }
    let d = Duration::from_nanos(shift.unsigned_abs());
    if shift > 0 { real + d } else { real - d }
}

/// Makes [`now`] read `t` at this instant, and run on from there.
pub fn set_now(t: SystemTime) {
    let real = SystemTime::now();
    let shift = match t.duration_since(real) {
        Ok(ahead) => i64::try_from(ahead.as_nanos()).unwrap_or(i64::MAX),
        Err(behind) => -i64::try_from(behind.duration().as_nanos()).unwrap_or(i64::MAX),
    };
    SHIFT_NANOS.store(shift, Ordering::Relaxed);
}

/// Reads [`FAKE_NOW_ENV`] and shifts the clock to it. `Ok(Some(t))`: shifted to `t`;
/// `Ok(None)`: not set; `Err`: set but not a time.
pub fn from_env() -> Result<Option<SystemTime>, String> {
    let Ok(v) = std::env::var(FAKE_NOW_ENV) else {
        return Ok(None);
    };
    let t = parse_instant(&v).map_err(|e| format!("{FAKE_NOW_ENV}={v:?}: {e}"))?;
    set_now(t);
    Ok(Some(t))
}

/// An RFC 3339 instant (`2026-12-31T23:59:58+01:00`, `…Z`).
pub fn parse_instant(s: &str) -> Result<SystemTime, String> {
    let ts: Timestamp = s
        .parse()
        .map_err(|e| format!("not an RFC 3339 time ({e})"))?;
    Ok(SystemTime::from(ts))
}

/// A time zone by its IANA name (`Europe/Paris`), from the bundled database.
pub fn zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name)
        .map_err(|_| format!("unknown time zone {name:?} (an IANA name such as Europe/Paris)"))
}

/// `t` in `tz`.
pub fn zoned(t: SystemTime, tz: &TimeZone) -> Zoned {
    let ts = Timestamp::try_from(t).unwrap_or(Timestamp::UNIX_EPOCH);
    ts.to_zoned(tz.clone())
}

/// The wall-clock date and time of `t` in `tz` (what `schedule` conditions test).
pub fn civil(t: SystemTime, tz: &TimeZone) -> jiff::civil::DateTime {
    let ts = Timestamp::try_from(t).unwrap_or(Timestamp::UNIX_EPOCH);
    tz.to_datetime(ts)
}

/// The local date of `t` in `tz`.
pub fn local_date(t: SystemTime, tz: &TimeZone) -> Date {
    zoned(t, tz).date()
}

/// The first instant of the local day after the one `t` is in (the next midnight, or
/// the first hour of the day where a DST change skips midnight).
pub fn next_midnight(t: SystemTime, tz: &TimeZone) -> SystemTime {
    let day = local_date(t, tz);
    let next = day
        .tomorrow()
        .ok()
        .and_then(|d| d.to_zoned(tz.clone()).ok());
    match next {
        Some(z) => SystemTime::from(z.timestamp()),
        // Past year 9999: never.
        None => t + Duration::from_secs(86_400 * 365 * 100),
    }
}

/// The first instant of the local date `d` in `tz`.
pub fn start_of(d: Date, tz: &TimeZone) -> SystemTime {
    d.to_zoned(tz.clone())
        .map(|z| SystemTime::from(z.timestamp()))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        parse_instant(s).unwrap()
    }

    #[test]
    fn midnight_in_paris_winter_and_summer() {
        let paris = zone("Europe/Paris").unwrap();
        assert_eq!(
            next_midnight(at("2026-12-31T23:59:58+01:00"), &paris),
            at("2027-01-01T00:00:00+01:00")
        );
        assert_eq!(
            next_midnight(at("2026-07-14T12:00:00+02:00"), &paris),
            at("2026-07-15T00:00:00+02:00")
        );
        // 22:30 UTC on 31 December is already 1 January in Paris.
        assert_eq!(
            local_date(at("2026-12-31T23:30:00Z"), &paris).to_string(),
            "2027-01-01"
        );
    }

    #[test]
    fn days_around_the_dst_changes_are_23_and_25_hours() {
        let paris = zone("Europe/Paris").unwrap();
        let spring = next_midnight(at("2027-03-28T00:00:00+01:00"), &paris);
        let d = spring
            .duration_since(at("2027-03-28T00:00:00+01:00"))
            .unwrap();
        assert_eq!(d, Duration::from_secs(23 * 3600));
        let autumn = next_midnight(at("2027-10-31T00:00:00+02:00"), &paris);
        let d = autumn
            .duration_since(at("2027-10-31T00:00:00+02:00"))
            .unwrap();
        assert_eq!(d, Duration::from_secs(25 * 3600));
    }

    #[test]
    fn unknown_zones_and_bad_instants_are_errors() {
        assert!(zone("Europe/Arras").unwrap_err().contains("Europe/Arras"));
        assert!(parse_instant("demain").is_err());
    }
}
