//! Connection deadlines on one coarse timer wheel per thread, instead of a tokio timer per
//! connection.
//!
//! A tokio `Sleep` is 112 bytes per connection (a `mode http` connection's was allocated
//! apart, a TCP session's took that much of its future), and an idle keep-alive HTTP client
//! is ~1.2 KB in all; the wheel keeps 40 bytes per connection in a slab plus a 4-byte key in
//! a bucket. As in HAProxy (a connection's task has an expiry date, and pushing it
//! later does not requeue the task), a deadline that moves later is only written down: the
//! bucket it sits in re-files it when it comes due, without waking the connection. A
//! connection is woken only when its deadline has passed, or spuriously once if it stopped
//! waiting for the deadline it armed. A closed connection's key is left in its bucket (a
//! search there would cost as much as the bucket holds); once the stale keys outnumber the
//! live entries the buckets are rebuilt, so memory follows the live connections, not the
//! rate at which they come and go.
//!
//! Deadlines are in milliseconds on the coarse clock ([`crate::rate::now_ms`]); buckets are
//! [`GRANULARITY_MS`] wide, so a deadline is met up to that (plus the coarse clock's tick)
//! late. Each wheel is driven by one task, spawned on the runtime of the first connection to
//! arm it and again if that runtime went away (tests run many).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::rate::now_ms;

/// Width of a bucket: how late, at most, a deadline is noticed (besides the coarse clock).
pub(crate) const GRANULARITY_MS: u64 = 8;

/// A connection's registration: nothing until it first waits for a deadline.
#[derive(Default)]
pub(crate) struct Alarm {
    slot: Option<(Arc<Shared>, u32)>,
}

impl Alarm {
    /// Ready once the coarse clock has reached `deadline_ms` (as the wheel's driver saw it:
    /// up to a bucket late); until then registers `cx`'s waker to be woken when it does.
    /// No clock read here: this runs at every poll of a connection that waits.
    pub(crate) fn poll_deadline(&mut self, deadline_ms: u64, cx: &mut Context<'_>) -> Poll<()> {
        let (shared, key) = self.slot.get_or_insert_with(|| {
            let shared = this_threads_wheel();
            let key = shared.lock().insert();
            (shared, key)
        });
        let (armed, start_driver) = {
            let mut wheel = shared.lock();
            (
                wheel.arm(*key, deadline_ms, cx.waker()),
                wheel.claim_driver(),
            )
        };
        if start_driver {
            // Outside the lock: a runtime that is shutting down drops the task (and with it
            // the guard, which locks the wheel) at once.
            let guard = DriverGuard(Arc::clone(shared));
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn(drive(guard))),
                // Not in a runtime: the next arm from within one starts the driver.
                Err(_) => drop(guard),
            }
        }
        match armed {
            Armed::Passed => Poll::Ready(()),
            Armed::Waiting(wake_driver) => {
                if let Some(driver) = wake_driver {
                    driver.wake();
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        if let Some((shared, key)) = self.slot.take() {
            // Its key may still sit in a bucket: that bucket skips it (the slot is gone, or
            // a later owner's was filed elsewhere).
            shared.lock().remove(key);
        }
    }
}

thread_local! {
    static WHEEL: Arc<Shared> = Arc::new(Shared::default());
}

fn this_threads_wheel() -> Arc<Shared> {
    WHEEL.with(Arc::clone)
}

#[derive(Default)]
struct Shared {
    // A mutex although each wheel is used by one thread in the server (its tasks never move
    // between threads): an alarm may be dropped elsewhere, and a test's multi-thread runtime
    // moves tasks. Uncontended, it costs two atomic operations.
    wheel: Mutex<Wheel>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Wheel> {
        crate::lock(&self.wheel)
    }
}

struct Entry {
    /// The deadline the connection waits for now.
    deadline: u64,
    /// The deadline its bucket was chosen for (`deadline` may be later since); or 0, in no
    /// bucket; or [`FIRED`], `deadline` has passed.
    filed: u64,
    waker: Option<Waker>,
}

const FIRED: u64 = u64::MAX;

impl Entry {
    fn is_filed(&self) -> bool {
        self.filed != 0 && self.filed != FIRED
    }
}

enum Armed {
    Passed,
    /// With the driver's waker if it must wake earlier than it sleeps.
    Waiting(Option<Waker>),
}

#[derive(Default)]
struct Wheel {
    entries: slab::Slab<Entry>,
    /// Bucket number (deadline / granularity, rounded up) → keys filed there. A key may be
    /// stale (its entry removed or filed elsewhere since): checked when the bucket is due.
    buckets: BTreeMap<u64, Vec<u32>>,
    /// Keys in `buckets` known to be stale: past as many as there are entries (and a floor),
    /// the buckets are built again from the entries, so that connections that come and go
    /// faster than their deadlines do not pile keys up.
    stale: usize,
    driver: Option<Waker>,
    /// The bucket the driver sleeps until, if it sleeps until one.
    driver_bucket: Option<u64>,
    driver_running: bool,
}

fn bucket_of(deadline_ms: u64) -> u64 {
    deadline_ms.div_ceil(GRANULARITY_MS)
}

impl Wheel {
    fn insert(&mut self) -> u32 {
        let key = self.entries.insert(Entry {
            deadline: 0,
            filed: 0,
            waker: None,
        });
        // More than 4 billion connections on one thread at once is not a case to handle
        // gracefully; saturating keeps it from aliasing a live entry's key silently.
        u32::try_from(key).unwrap_or(u32::MAX)
    }

    /// Sets `key`'s deadline and waker: whether that deadline has passed already.
    fn arm(&mut self, key: u32, deadline: u64, waker: &Waker) -> Armed {
        // `FIRED` is a state, not a time (and ~585 million years of uptime away).
        let deadline = deadline.min(FIRED - 1);
        let Some(entry) = self.entries.get_mut(key as usize) else {
            return Armed::Waiting(None);
        };
        if entry.filed == FIRED {
            if deadline <= entry.deadline {
                return Armed::Passed;
            }
            entry.filed = 0;
        }
        match &entry.waker {
            Some(known) if known.will_wake(waker) => {}
            _ => entry.waker = Some(waker.clone()),
        }
        entry.deadline = deadline;
        if entry.is_filed() && bucket_of(entry.filed) <= bucket_of(deadline) {
            // Later (or the same): its bucket re-files it when due.
            return Armed::Waiting(None);
        }
        if entry.is_filed() {
            self.stale += 1;
        }
        entry.filed = deadline;
        let bucket = bucket_of(deadline);
        self.buckets.entry(bucket).or_default().push(key);
        self.compact_if_stale();
        Armed::Waiting(match self.driver_bucket {
            Some(sleeping_until) if sleeping_until <= bucket => None,
            _ => self.driver.clone(),
        })
    }

    fn remove(&mut self, key: u32) {
        if let Some(entry) = self.entries.try_remove(key as usize) {
            if entry.is_filed() {
                self.stale += 1;
                self.compact_if_stale();
            }
        }
    }

    fn compact_if_stale(&mut self) {
        const FLOOR: usize = 1024;
        if self.stale <= FLOOR || self.stale <= self.entries.len() {
            return;
        }
        // Amortised: at least as many keys went stale since the last rebuild as it visits.
        self.buckets.clear();
        for (key, entry) in &self.entries {
            if entry.is_filed() {
                let key = u32::try_from(key).unwrap_or(u32::MAX);
                self.buckets
                    .entry(bucket_of(entry.filed))
                    .or_default()
                    .push(key);
            }
        }
        self.stale = 0;
    }

    /// Whether the caller is to start the driver (none runs): it then counts as running.
    fn claim_driver(&mut self) -> bool {
        if self.driver_running {
            return false;
        }
        self.driver_running = true;
        self.driver = None;
        self.driver_bucket = None;
        true
    }

    /// Wakes the entries whose deadline has passed by `now` (into `woken`), re-files the
    /// ones whose deadline moved later; the first bucket still to come.
    fn fire(&mut self, now: u64, woken: &mut Vec<Waker>) -> Option<u64> {
        while let Some(entry) = self.buckets.first_entry() {
            let bucket = *entry.key();
            if bucket.saturating_mul(GRANULARITY_MS) > now {
                return Some(bucket);
            }
            for key in entry.remove() {
                let Some(entry) = self.entries.get_mut(key as usize) else {
                    self.stale = self.stale.saturating_sub(1);
                    continue;
                };
                if !entry.is_filed() || bucket_of(entry.filed) != bucket {
                    self.stale = self.stale.saturating_sub(1);
                    continue;
                }
                if entry.deadline <= now {
                    entry.filed = FIRED;
                    woken.extend(entry.waker.take());
                } else {
                    entry.filed = entry.deadline;
                    self.buckets
                        .entry(bucket_of(entry.deadline))
                        .or_default()
                        .push(key);
                }
            }
        }
        None
    }
}

/// Ends the driver's turn: the next arm starts another (its runtime may have shut down).
struct DriverGuard(Arc<Shared>);

impl Drop for DriverGuard {
    fn drop(&mut self) {
        let mut wheel = self.0.lock();
        wheel.driver_running = false;
        wheel.driver = None;
        wheel.driver_bucket = None;
    }
}

async fn drive(guard: DriverGuard) {
    let mut sleep = Box::pin(tokio::time::sleep(Duration::ZERO));
    let mut woken = Vec::new();
    std::future::poll_fn(|cx| loop {
        let next = {
            let mut wheel = guard.0.lock();
            let now = now_ms();
            let next = wheel.fire(now, &mut woken);
            match &wheel.driver {
                Some(known) if known.will_wake(cx.waker()) => {}
                _ => wheel.driver = Some(cx.waker().clone()),
            }
            if wheel.driver_bucket != next {
                wheel.driver_bucket = next;
                if let Some(bucket) = next {
                    // At least a millisecond: the coarse clock lags the precise one by up to
                    // a tick, and a bucket the coarse clock has not reached is not yet due.
                    let wait = bucket.saturating_mul(GRANULARITY_MS).saturating_sub(now) + 1;
                    sleep
                        .as_mut()
                        .reset(tokio::time::Instant::now() + Duration::from_millis(wait));
                }
            }
            next
        };
        // Woken outside the lock: a waker may run code that arms another alarm.
        for waker in woken.drain(..) {
            waker.wake();
        }
        if next.is_none() || sleep.as_mut().poll(cx).is_pending() {
            return Poll::<()>::Pending;
        }
        // The sleep is spent: the next round sets it again, whatever the bucket.
        guard.0.lock().driver_bucket = None;
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::time::Instant;

    /// Waits on `alarm` for `deadline`.
    async fn wait(alarm: &mut Alarm, deadline: u64) {
        poll_fn(|cx| alarm.poll_deadline(deadline, cx)).await;
        assert!(now_ms() >= deadline);
    }

    #[test]
    fn an_entry_takes_32_bytes_and_an_alarm_16() {
        // The slab adds its vacant-or-occupied tag: 40 bytes a connection.
        assert!(std::mem::size_of::<Entry>() <= 32);
        assert!(std::mem::size_of::<Alarm>() <= 16);
    }

    #[tokio::test]
    async fn fires_when_the_deadline_passes_not_before() {
        let mut alarm = Alarm::default();
        let started = Instant::now();
        wait(&mut alarm, now_ms() + 100).await;
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(90), "{waited:?}");
        assert!(waited < Duration::from_millis(600), "{waited:?}");
    }

    #[tokio::test]
    async fn a_deadline_already_passed_is_noticed_at_once() {
        let mut alarm = Alarm::default();
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(5), wait(&mut alarm, now_ms() - 5))
            .await
            .expect("a passed deadline fires");
        assert!(started.elapsed() < Duration::from_millis(500));
        // Once fired, an earlier or equal deadline is passed without a round trip.
        let mut cx = Context::from_waker(Waker::noop());
        assert!(alarm.poll_deadline(now_ms() - 10, &mut cx).is_ready());
        assert!(alarm.poll_deadline(now_ms() + 60_000, &mut cx).is_pending());
    }

    #[tokio::test]
    async fn a_deadline_moved_later_does_not_wake_at_the_earlier_one() {
        let mut alarm = Alarm::default();
        let first = now_ms() + 50;
        let later = now_ms() + 250;
        let started = Instant::now();
        let mut polls = 0;
        poll_fn(|cx| {
            polls += 1;
            if polls == 1 {
                // Armed for 50 ms, then pushed to 250 ms, as a new request would.
                assert!(alarm.poll_deadline(first, cx).is_pending());
            }
            alarm.poll_deadline(later, cx)
        })
        .await;
        assert!(started.elapsed() >= Duration::from_millis(240));
        // The first poll, and the one that found the later deadline passed: the earlier
        // bucket re-filed the alarm without waking the task.
        assert_eq!(polls, 2);
    }

    #[tokio::test]
    async fn an_earlier_deadline_wakes_earlier() {
        let mut alarm = Alarm::default();
        let late = now_ms() + 5_000;
        let mut armed_late = false;
        let started = Instant::now();
        let early = now_ms() + 60;
        poll_fn(|cx| {
            if !armed_late {
                armed_late = true;
                let _ = alarm.poll_deadline(late, cx);
            }
            alarm.poll_deadline(early, cx)
        })
        .await;
        assert!(started.elapsed() < Duration::from_millis(1_000));
    }

    #[tokio::test]
    async fn many_alarms_fire_in_their_order_and_dropped_ones_leave_nothing() {
        let base = now_ms();
        let mut tasks = Vec::new();
        for i in 0..200u64 {
            tasks.push(tokio::spawn(async move {
                let mut alarm = Alarm::default();
                let deadline = base + 20 + (i % 10) * 15;
                wait(&mut alarm, deadline).await;
                now_ms() - deadline
            }));
        }
        for task in tasks {
            let late = task.await.expect("alarm task");
            assert!(late < 500, "fired {late} ms late");
        }
        // Alarms dropped while armed leave no entry behind.
        let mut dropped = Vec::new();
        for _ in 0..50 {
            let mut alarm = Alarm::default();
            let mut cx = Context::from_waker(Waker::noop());
            assert!(alarm.poll_deadline(now_ms() + 60_000, &mut cx).is_pending());
            dropped.push(alarm);
        }
        drop(dropped);
        assert_eq!(this_threads_wheel().lock().entries.len(), 0);
    }

    #[tokio::test]
    async fn connections_that_come_and_go_leave_no_keys_behind() {
        let mut cx = Context::from_waker(Waker::noop());
        let mut live = Vec::new();
        for i in 0..100_000u64 {
            let mut alarm = Alarm::default();
            // Deadlines far away, as `timeout client` is for a short connection.
            assert!(alarm
                .poll_deadline(now_ms() + 60_000 + i % 1_000, &mut cx)
                .is_pending());
            if i % 100 == 0 {
                live.push(alarm);
            }
        }
        let wheel = this_threads_wheel();
        let wheel = wheel.lock();
        assert_eq!(wheel.entries.len(), live.len());
        let keys: usize = wheel.buckets.values().map(Vec::len).sum();
        assert!(
            keys <= 2 * live.len() + 1_100,
            "{keys} keys for {} alarms",
            live.len()
        );
    }

    #[test]
    fn a_new_runtime_on_the_same_thread_gets_a_new_driver() {
        for _ in 0..2 {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let mut alarm = Alarm::default();
                tokio::time::timeout(Duration::from_secs(5), wait(&mut alarm, now_ms() + 30))
                    .await
                    .expect("the alarm fires on the second runtime too");
            });
        }
    }
}
