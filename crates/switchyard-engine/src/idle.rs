//! `Idle_pct` (`show info`) and `haproxy_process_idle_time_percent`: the share of the last
//! half second or so that the session threads spent waiting for events, averaged over them.
//!
//! HAProxy measures, per thread, the time spent in its poller against the time elapsed, over
//! windows of at least half a second, and reports the threads' average. Here tokio already
//! measures the other side: the time each runtime spent running tasks
//! (`worker_total_busy_duration`); every thread's timer floor, which wakes it twice a second,
//! turns that into the idle share of its last window. Under `busy-polling`, HAProxy's loop
//! spins inside its poller, so its spinning counts as idle; ours spins in a task (`busy.rs`),
//! whose turns are counted idle here ([`spun`]) so that the two agree.

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
    /// Time the busy-polling task spent in its own turns on this thread.
    static SPUN: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// Counts `spent` of the busy-polling task's own time as waiting, not working.
pub(crate) fn spun(spent: Duration) {
    SPUN.with(|total| total.set(total.get() + spent));
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
            if let Ok(mut threads) = THREADS.lock() {
                threads.push(Arc::clone(&idle_pct));
            }
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
    let Ok(threads) = THREADS.lock() else {
        return 100;
    };
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
        // The spinner's own time counts as waiting.
        runtime.block_on(async {
            let until = Instant::now() + Duration::from_millis(600);
            tokio::spawn(async move {
                let started = Instant::now();
                while Instant::now() < until {}
                spun(started.elapsed());
            })
            .await
            .unwrap();
            sample();
        });
        let spinning = slot.load(Ordering::Relaxed);
        assert!(spinning >= 80, "busy polling reported {spinning} % idle");
        assert!((0..=100).contains(&percent()));
    }
}
