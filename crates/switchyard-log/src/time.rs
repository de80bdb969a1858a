//! Calendar conversion for log timestamps, through libc's `localtime_r` / `gmtime_r`.
//!
//! HAProxy prints every date in the process' local time zone. The conversion is cached per
//! thread for the current second, so a busy data path pays for at most one libc call per
//! second and thread.

use std::cell::Cell;
use std::sync::Once;
use std::time::{SystemTime, UNIX_EPOCH};

/// Which clock dates are rendered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeZone {
    /// The process' local time zone (`TZ` / `/etc/localtime`), as HAProxy does.
    #[default]
    Local,
    /// UTC, independent of the environment (deterministic; used by tests).
    Utc,
}

pub(crate) const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A broken-down date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tm {
    pub year: i32,
    /// 0..=11
    pub mon: usize,
    pub mday: u32,
    pub hour: u32,
    pub min: u32,
    pub sec: u32,
    /// Offset east of UTC, in seconds.
    pub gmtoff: i64,
}

impl Tm {
    const EPOCH: Tm = Tm {
        year: 1970,
        mon: 0,
        mday: 1,
        hour: 0,
        min: 0,
        sec: 0,
        gmtoff: 0,
    };

    pub fn month_name(&self) -> &'static str {
        MONTHS[self.mon.min(11)]
    }
}

extern "C" {
    // Not exported by the `libc` crate for Unix targets; it is POSIX and present in every libc.
    fn tzset();
}

static TZSET: Once = Once::new();

/// Re-reads the `TZ` environment variable / system zone (libc `tzset`).
///
/// Called automatically once before the first local-time conversion. Call it again after
/// changing `TZ` (per-thread caches are keyed by second only and may serve the old zone for
/// up to one second).
pub fn reload_timezone() {
    // SAFETY: tzset has no arguments; it only updates libc's global zone state.
    unsafe { tzset() };
}

/// Seconds and microseconds since the epoch; dates before 1970 are clamped to the epoch.
pub(crate) fn split(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_micros(),
        ),
        Err(_) => (0, 0),
    }
}

thread_local! {
    static CACHE: Cell<Option<(i64, TimeZone, Tm)>> = const { Cell::new(None) };
}

/// Converts epoch seconds to a calendar date in `tz`.
pub(crate) fn broken_down(secs: i64, tz: TimeZone) -> Tm {
    let cached = CACHE.try_with(Cell::get).ok().flatten();
    if let Some((s, z, tm)) = cached {
        if s == secs && z == tz {
            return tm;
        }
    }
    let tm = convert(secs, tz);
    let _ = CACHE.try_with(|c| c.set(Some((secs, tz, tm))));
    tm
}

fn convert(secs: i64, tz: TimeZone) -> Tm {
    // Only narrower on 32-bit `time_t` targets, where dates past 2038 saturate.
    let t = libc::time_t::try_from(secs).unwrap_or(libc::time_t::MAX);
    // SAFETY: an all-zero `tm` is a valid value (the pointer field, where present, is null).
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call; the *_r variants are
    // thread-safe and write only into `tm`.
    let res = unsafe {
        match tz {
            TimeZone::Local => {
                TZSET.call_once(reload_timezone);
                libc::localtime_r(&t, &mut tm)
            }
            TimeZone::Utc => libc::gmtime_r(&t, &mut tm),
        }
    };
    if res.is_null() {
        return Tm::EPOCH;
    }
    Tm {
        year: tm.tm_year.saturating_add(1900),
        mon: usize::try_from(tm.tm_mon).unwrap_or(0).min(11),
        mday: u32::try_from(tm.tm_mday).unwrap_or(1),
        hour: u32::try_from(tm.tm_hour).unwrap_or(0),
        min: u32::try_from(tm.tm_min).unwrap_or(0),
        // A leap second (60) is printed as is, like HAProxy would.
        sec: u32::try_from(tm.tm_sec).unwrap_or(0),
        gmtoff: match tz {
            TimeZone::Utc => 0,
            TimeZone::Local => gmtoff(&tm),
        },
    }
}

#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly"
))]
#[allow(clippy::useless_conversion)] // `c_long` is only `i64` on 64-bit targets.
fn gmtoff(tm: &libc::tm) -> i64 {
    i64::from(tm.tm_gmtoff)
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly"
)))]
fn gmtoff(_tm: &libc::tm) -> i64 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_conversion() {
        // 2009-02-06 12:12:51 UTC
        let tm = broken_down(1_233_922_371, TimeZone::Utc);
        assert_eq!(
            tm,
            Tm {
                year: 2009,
                mon: 1,
                mday: 6,
                hour: 12,
                min: 12,
                sec: 51,
                gmtoff: 0
            }
        );
        assert_eq!(tm.month_name(), "Feb");
    }

    #[test]
    fn split_clamps_pre_epoch() {
        assert_eq!(split(UNIX_EPOCH - Duration::from_secs(5)), (0, 0));
        assert_eq!(
            split(UNIX_EPOCH + Duration::from_micros(1_500_123)),
            (1, 500_123)
        );
    }
}
