//! Per-second event rates and "seconds since" stamps, as HAProxy's `freq_ctr` and `last_sess`
//! compute them: `show stat`'s `rate`/`rate_max`/`conn_rate`/`conn_rate_max`/`lastsess` and
//! `show info`'s `SessRate`/`ConnRate`/`Max*Rate`.
//!
//! Time is a process-wide monotonic millisecond count ([`now_ms`]); every operation takes it
//! as an argument, so the arithmetic is tested without sleeping and a caller that records
//! several events at once reads the clock once.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Milliseconds on the kernel's coarse monotonic clock (wall-clock jumps must not fake or
/// hide a rate). It advances by the scheduler tick (1–4 ms), plenty for rates over one
/// second, and is read without the TSC: ~5 ns against ~21 ns for `Instant::now` here, and a
/// request reads it up to four times (request, session, server and backend rates).
pub fn now_ms() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_COARSE) {
        Ok(now) => {
            let secs = u64::try_from(now.tv_sec()).unwrap_or(0);
            let millis = u64::try_from(now.tv_nsec()).unwrap_or(0) / 1_000_000;
            secs.saturating_mul(1000).saturating_add(millis)
        }
        // Not expected on Linux; the precise clock keeps rates going (from the first call).
        Err(_) => {
            static BASE: OnceLock<Instant> = OnceLock::new();
            let elapsed = BASE.get_or_init(Instant::now).elapsed();
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        }
    }
}

/// The second `now_ms` falls in; u32 lasts 136 years of uptime.
fn second(now_ms: u64) -> u32 {
    u32::try_from(now_ms / 1000).unwrap_or(u32::MAX)
}

/// `(second << 32) | count`: a second and its count change together in one atomic, so a
/// rotation and an increment can never mix two seconds.
fn pack(second: u32, count: u32) -> u64 {
    (u64::from(second) << 32) | u64::from(count)
}

fn unpack(packed: u64) -> (u32, u32) {
    ((packed >> 32) as u32, packed as u32)
}

/// Events per second, HAProxy's `freq_ctr` over a 1 s period: the count of the current second
/// plus the previous second's count weighted by what remains of the current second, so the
/// rate slides smoothly instead of dropping to 0 at each second boundary, and reaches 0 after
/// two idle seconds. The maximum is, as in HAProxy (`sps_max`, `cps_max`), the most events
/// counted within one second.
///
/// Lock-free: recording an event is one load and one `fetch_add` within a second, a
/// compare-and-swap once per second.
#[derive(Debug, Default)]
pub struct FreqCtr {
    /// The current second and its count.
    current: AtomicU64,
    /// The last finished second and its count. Packed with the second in the high bits, so
    /// `fetch_max` keeps the newest even if two rotations' stores land out of order; it only
    /// counts when it is the second just before `current`'s.
    previous: AtomicU64,
    max: AtomicU32,
}

impl FreqCtr {
    /// Records one event at `now_ms`; returns the count of the current second, this event
    /// included.
    pub fn add(&self, now_ms: u64) -> u32 {
        let now = second(now_ms);
        let mut current = self.current.load(Ordering::Relaxed);
        let count = loop {
            let (at, _) = unpack(current);
            // A second at or after ours (another thread read the clock a moment later and
            // rotated already) is the current one: count there.
            if at >= now {
                let before = self.current.fetch_add(1, Ordering::Relaxed);
                break unpack(before).1.wrapping_add(1);
            }
            match self.current.compare_exchange_weak(
                current,
                pack(now, 1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(finished) => {
                    self.previous.fetch_max(finished, Ordering::Relaxed);
                    break 1;
                }
                Err(actual) => current = actual,
            }
        };
        // Most events do not raise the maximum: a load keeps the cache line shared.
        if count > self.max.load(Ordering::Relaxed) {
            self.max.fetch_max(count, Ordering::Relaxed);
        }
        count
    }

    /// Events per second at `now_ms` (HAProxy's `read_freq_ctr`).
    pub fn rate(&self, now_ms: u64) -> u32 {
        let now = second(now_ms);
        let (at, count) = unpack(self.current.load(Ordering::Relaxed));
        let (previous_at, previous_count) = unpack(self.previous.load(Ordering::Relaxed));
        let (current, past) = if at >= now {
            let past = if previous_at.wrapping_add(1) == at {
                previous_count
            } else {
                0
            };
            (count, past)
        } else if at.wrapping_add(1) == now {
            // Nothing yet this second: the counted second is the previous one.
            (0, count)
        } else {
            return 0;
        };
        let remaining_ms = 1000 - now_ms % 1000;
        let weighted = u64::from(past) * remaining_ms / 1000;
        current.saturating_add(u32::try_from(weighted).unwrap_or(u32::MAX))
    }

    /// The most events counted within one second.
    pub fn max(&self) -> u32 {
        self.max.load(Ordering::Relaxed)
    }

    /// `clear counters`: HAProxy zeroes the maxima, not the rates.
    pub fn clear_max(&self) {
        self.max.store(0, Ordering::Relaxed);
    }
}

/// When something last happened, to the second (HAProxy's `last_sess`), or never.
#[derive(Debug, Default)]
pub struct LastEvent {
    /// The second plus one; 0 means never.
    at: AtomicU32,
}

impl LastEvent {
    pub fn record(&self, now_ms: u64) {
        let stamp = second(now_ms).saturating_add(1);
        // At most one write per second: sessions in the same second only read.
        if self.at.load(Ordering::Relaxed) < stamp {
            self.at.fetch_max(stamp, Ordering::Relaxed);
        }
    }

    /// Whole seconds between the event's second and `now_ms`'s (as HAProxy subtracts
    /// `now.tv_sec`s), `None` if it never happened.
    pub fn seconds_ago(&self, now_ms: u64) -> Option<u32> {
        match self.at.load(Ordering::Relaxed) {
            0 => None,
            stamp => Some(second(now_ms).saturating_add(1).saturating_sub(stamp)),
        }
    }

    /// `clear counters all`: back to never, as HAProxy.
    pub fn clear(&self) {
        self.at.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// `n` events at `at_ms`.
    fn burst(counter: &FreqCtr, n: u32, at_ms: u64) {
        for _ in 0..n {
            counter.add(at_ms);
        }
    }

    #[test]
    fn the_coarse_clock_follows_real_time() {
        let before = now_ms();
        std::thread::sleep(std::time::Duration::from_millis(30));
        // The sleep lasts at least 30 ms; the clock may lag by one scheduler tick (≤ 4 ms).
        let elapsed = now_ms() - before;
        assert!(elapsed >= 25, "{elapsed} ms");
    }

    #[test]
    fn counts_the_current_second() {
        let c = FreqCtr::default();
        assert_eq!(c.rate(0), 0);
        assert_eq!(c.add(10_100), 1);
        assert_eq!(c.add(10_200), 2);
        assert_eq!(c.add(10_999), 3);
        assert_eq!(c.rate(10_999), 3);
        assert_eq!(c.max(), 3);
    }

    #[test]
    fn previous_second_weighs_by_what_remains_of_this_one() {
        let c = FreqCtr::default();
        burst(&c, 10, 5_500);
        // Next second, nothing new yet: 10 weighted by the remaining fraction.
        assert_eq!(c.rate(6_000), 10);
        assert_eq!(c.rate(6_250), 7); // 10 * 750 / 1000
        assert_eq!(c.rate(6_500), 5);
        assert_eq!(c.rate(6_900), 1);
        assert_eq!(c.rate(6_999), 0);
        // Events in the new second add to the weighted past.
        burst(&c, 4, 6_500);
        assert_eq!(c.rate(6_500), 4 + 5);
        assert_eq!(c.rate(6_800), 4 + 2);
        // The second after: the 4 are the past now, the 10 are forgotten.
        assert_eq!(c.rate(7_500), 2);
        assert_eq!(c.max(), 10);
    }

    #[test]
    fn falls_to_zero_after_two_idle_seconds() {
        let c = FreqCtr::default();
        burst(&c, 50, 3_100);
        assert_eq!(c.rate(3_100), 50);
        assert_eq!(c.rate(4_100), 45);
        assert_eq!(c.rate(5_000), 0);
        assert_eq!(c.rate(3_600_000), 0);
        assert_eq!(c.max(), 50);
    }

    #[test]
    fn a_gap_of_more_than_a_second_forgets_the_old_count() {
        let c = FreqCtr::default();
        burst(&c, 20, 1_000);
        // Two seconds later: the 20 are not the previous second's count.
        burst(&c, 3, 3_200);
        assert_eq!(c.rate(3_200), 3);
        assert_eq!(c.rate(4_000), 3);
        assert_eq!(c.rate(4_500), 1);
    }

    #[test]
    fn max_is_the_busiest_second_and_clears_alone() {
        let c = FreqCtr::default();
        burst(&c, 7, 1_000);
        burst(&c, 3, 2_000);
        assert_eq!(c.max(), 7);
        c.clear_max();
        assert_eq!(c.max(), 0);
        assert_eq!(c.rate(2_000), 3 + 7);
        c.add(2_001);
        assert_eq!(c.max(), 4);
    }

    #[test]
    fn a_reader_or_writer_with_a_slightly_older_clock_counts_in_the_current_second() {
        let c = FreqCtr::default();
        c.add(9_000);
        // A thread that read its clock just before the rotation.
        assert_eq!(c.add(8_999), 2);
        assert_eq!(c.rate(8_999), 2);
    }

    #[test]
    fn concurrent_events_are_all_counted_across_a_rotation() {
        let c = Arc::new(FreqCtr::default());
        let run = |n: u32, at_ms: u64| {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let c = Arc::clone(&c);
                    std::thread::spawn(move || burst(&c, n, at_ms))
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
        };
        run(10_000, 1_500);
        assert_eq!(c.rate(1_500), 40_000);
        // All four threads find the second over at once: one rotates, none loses an event.
        run(5_000, 2_200);
        assert_eq!(c.rate(2_500), 20_000 + 20_000);
        assert_eq!(c.max(), 40_000);
    }

    #[test]
    fn last_event_counts_whole_seconds() {
        let last = LastEvent::default();
        assert_eq!(last.seconds_ago(0), None);
        last.record(0);
        assert_eq!(last.seconds_ago(999), Some(0));
        last.record(12_900);
        assert_eq!(last.seconds_ago(12_999), Some(0));
        // HAProxy subtracts seconds: 100 ms later across a boundary is 1.
        assert_eq!(last.seconds_ago(13_000), Some(1));
        assert_eq!(last.seconds_ago(20_500), Some(8));
        // An older clock never moves it back.
        last.record(11_000);
        assert_eq!(last.seconds_ago(13_000), Some(1));
        last.clear();
        assert_eq!(last.seconds_ago(13_000), None);
    }

    #[test]
    fn the_clock_is_monotonic_and_in_milliseconds() {
        let a = now_ms();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = now_ms();
        assert!(b >= a + 20, "{a} -> {b}");
    }
}
