//! `Idle_pct` (`show info`) and `haproxy_process_idle_time_percent`: the share of the last
//! half second or so that the session threads spent waiting for events, averaged over them.
//!
//! HAProxy measures, per thread, the time spent in its poller against the time elapsed, over
//! windows of at least half a second, and reports the threads' average. Here tokio already
//! measures the other side: the time each runtime spent running tasks
//! (`worker_total_busy_duration`); every thread's timer floor, which wakes it twice a second,
//! turns that into the idle share of its last window. Under `busy-polling`, HAProxy's loop
//! spins inside its poller, so its spinning counts as idle; ours spins in a task (`busy.rs`),
//! whose turns are counted idle here ([`Spinning`]) so that the two agree: a turn in which no
//! session was polled is idle as a whole (tokio's work between turns included), and of a turn
//! with sessions, only the time its `sched_yield` gave away.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A window shorter than this is not reported (HAProxy's minimum sample time).
const WINDOW: Duration = Duration::from_millis(500);

/// Each session thread's idle percentage over its last window.
static THREADS: Mutex<Vec<Arc<AtomicU32>>> = Mutex::new(Vec::new());

thread_local! {
    static SAMPLER: RefCell<Option<Sampler>> = const { RefCell::new(None) };
    /// Time tokio counted busy on this thread that busy polling spent waiting.
    static SPUN: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    /// Polls of sessions' tasks on this thread.
    static SESSION_POLLS: Cell<u64> = const { Cell::new(0) };
}

/// Counts `spent` of tokio's busy time as waiting, not working.
fn spun(spent: Duration) {
    SPUN.with(|total| total.set(total.get() + spent));
}

/// Called at every poll of a session's task: busy polling's turns without one are idle.
pub(crate) fn session_polled() {
    SESSION_POLLS.with(|polls| polls.set(polls.get().wrapping_add(1)));
}

fn session_polls() -> u64 {
    SESSION_POLLS.with(Cell::get)
}

/// The accounting of one busy-polling loop, from turn to turn. Tokio adds each batch of task
/// polls to its busy total when it polls its driver; the busy-polling task is polled once per
/// batch, so at each turn the total has grown by the previous batch, which held the previous
/// turn and its `sched_yield`.
pub(crate) struct Spinning {
    busy: Duration,
    polls: u64,
    yielded: Duration,
}

impl Spinning {
    /// Starts counting from tokio's busy total `busy`.
    pub(crate) fn new(busy: Duration) -> Self {
        Spinning {
            busy,
            polls: session_polls(),
            yielded: Duration::ZERO,
        }
    }

    /// A new turn, tokio's busy total now `busy`: the batch since the last turn was waiting
    /// as a whole if no session was polled since, else only for its `sched_yield`.
    pub(crate) fn turned(&mut self, busy: Duration) {
        let polls = session_polls();
        let batch = busy.saturating_sub(self.busy);
        spun(if polls == self.polls {
            batch
        } else {
            self.yielded.min(batch)
        });
        self.busy = busy;
        self.polls = polls;
        self.yielded = Duration::ZERO;
    }

    /// This turn gave the CPU away for `yielded`.
    pub(crate) fn yielded(&mut self, yielded: Duration) {
        self.yielded = yielded;
    }
}

/// One thread's measurements at the start of its current window.
struct Sampler {
    idle_pct: Arc<AtomicU32>,
    since: Instant,
    busy: Duration,
    spun: Duration,
}

/// Closes this thread's window if it is long enough: called from its timer floor, on the
/// runtime whose busy time it reads.
pub(crate) fn sample() {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let busy = handle.metrics().worker_total_busy_duration(0);
    let spun = SPUN.with(Cell::get);
    let now = Instant::now();
    SAMPLER.with(|sampler| {
        let mut sampler = sampler.borrow_mut();
        let Some(sampler) = sampler.as_mut() else {
            let idle_pct = Arc::new(AtomicU32::new(100));
            crate::lock(&THREADS).push(Arc::clone(&idle_pct));
            *sampler = Some(Sampler {
                idle_pct,
                since: now,
                busy,
                spun,
            });
            return;
        };
        let elapsed = now.saturating_duration_since(sampler.since);
        if elapsed < WINDOW {
            return;
        }
        let worked = busy
            .saturating_sub(sampler.busy)
            .saturating_sub(spun.saturating_sub(sampler.spun));
        sampler
            .idle_pct
            .store(idle_percent(worked, elapsed), Ordering::Relaxed);
        sampler.since = now;
        sampler.busy = busy;
        sampler.spun = spun;
    });
}

/// The idle share of `elapsed`, rounded, when `worked` of it went to tasks.
fn idle_percent(worked: Duration, elapsed: Duration) -> u32 {
    let idle = elapsed.saturating_sub(worked).as_secs_f64() / elapsed.as_secs_f64();
    (idle * 100.0).round().clamp(0.0, 100.0) as u32
}

/// The session threads' average idle percentage (100 before any has measured a window).
pub fn percent() -> u32 {
    let threads = crate::lock(&THREADS);
    if threads.is_empty() {
        return 100;
    }
    let sum: u64 = threads
        .iter()
        .map(|pct| u64::from(pct.load(Ordering::Relaxed)))
        .sum();
    (sum as f64 / threads.len() as f64).round() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idle_share_of_a_window() {
        let ms = Duration::from_millis;
        assert_eq!(idle_percent(ms(0), ms(500)), 100);
        assert_eq!(idle_percent(ms(200), ms(500)), 60);
        assert_eq!(idle_percent(ms(500), ms(500)), 0);
        // Busy time read a little after the window closed can exceed it.
        assert_eq!(idle_percent(ms(520), ms(500)), 0);
        assert_eq!(idle_percent(Duration::from_micros(2_497), ms(500)), 100);
    }

    /// A runtime kept busy for most of a window reports it; one left waiting reports idle.
    #[test]
    fn a_thread_reports_its_busy_and_idle_windows() {
        let runtime = crate::workers::runtime().expect("runtime");
        let slot = runtime.block_on(async {
            sample();
            SAMPLER.with(|s| Arc::clone(&s.borrow().as_ref().expect("registered").idle_pct))
        });
        // Busy: a task spins for 600 ms, then the window closes.
        runtime.block_on(async {
            let until = Instant::now() + Duration::from_millis(600);
            tokio::spawn(async move { while Instant::now() < until {} })
                .await
                .unwrap();
            sample();
        });
        let busy = slot.load(Ordering::Relaxed);
        assert!(busy <= 20, "a spinning window reported {busy} % idle");
        // Idle: the thread sleeps 600 ms.
        runtime.block_on(async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            sample();
        });
        let idle = slot.load(Ordering::Relaxed);
        assert!(idle >= 80, "a sleeping window reported {idle} % idle");
        assert!((0..=100).contains(&percent()));
    }

    /// Busy polling with nothing to do is idle, as HAProxy's spinning in its poller.
    #[test]
    fn busy_polling_alone_is_idle() {
        let runtime = crate::workers::runtime().expect("runtime");
        let (_setting, receiver) = tokio::sync::watch::channel(true);
        let slot = runtime.block_on(async {
            tokio::spawn(crate::busy::spin(receiver));
            sample();
            SAMPLER.with(|s| Arc::clone(&s.borrow().as_ref().expect("registered").idle_pct))
        });
        runtime.block_on(async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            sample();
        });
        let idle = slot.load(Ordering::Relaxed);
        assert!(idle >= 97, "busy polling alone reported {idle} % idle");
    }

    /// The turns' accounting: a batch without a session poll is waiting as a whole, one with
    /// a session only for its `sched_yield` (whatever the machine's load, which decides how
    /// long a yield takes in a real loop).
    #[test]
    fn spinning_turns_count_idle_unless_a_session_was_polled() {
        let us = Duration::from_micros;
        let total = || SPUN.with(Cell::get);
        let start = total();
        let mut turns = Spinning::new(us(1_000));
        turns.yielded(us(3));
        turns.turned(us(1_010));
        assert_eq!(total() - start, us(10), "an idle batch, its yield included");
        turns.yielded(us(4));
        session_polled();
        turns.turned(us(1_300));
        assert_eq!(total() - start, us(14), "a working batch: its yield only");
        turns.yielded(us(500));
        session_polled();
        turns.turned(us(1_302));
        assert_eq!(
            total() - start,
            us(16),
            "a yield longer than its batch (read late) counts the batch"
        );
        turns.turned(us(1_302));
        assert_eq!(total() - start, us(16), "tokio's total not yet grown");
    }
}
