//! Yield the CPU before a session thread sleeps, after a short burst of work.
//!
//! A thread that wakes for one exchange (a request forwarded, an answer returned) has just
//! written to a local peer: a server, a client, a database backend on the same host. Linux
//! wakes that peer on the writer's CPU (a socket wake-up is synchronous) and, more often than
//! not, lets the writer run on, so the proxy goes to sleep in `epoll_wait` while the peer
//! waits behind it, and the peer's answer must wake it again, often on the other CPU (an IPI,
//! a VM exit on a virtual machine, and a migration). Yielding first lets the queued peer run:
//! its answer is then waiting when the thread polls, and the thread does not sleep at all.
//! With `nbthread 2`, unpinned, this took echo p50 from 1.25 to 0.94 of HAProxy's and the
//! proxy's CPU per echo from 28.0 to 23.4 µs (docs/performance.md, "Yield before sleeping").
//!
//! Two guards keep it from costing where it does not pay:
//! - only after a short burst ([`SHORT_BURST`]): a thread that worked longer served many
//!   connections, whose peers have had time to run elsewhere, and yielding before every
//!   park of a busy thread is a system call that buys nothing;
//! - a yield that did not come back quickly ([`SLOW_YIELD`]) means the CPU went to work that
//!   was not a peer's quick answer (another process spinning, a batch job): yielding again
//!   would queue every wake-up behind its time slice, so yields stop for [`PAUSE`].

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The longest burst of work after which the thread still yields before sleeping.
const SHORT_BURST: Duration = Duration::from_micros(30);
/// A yield that took longer gave the CPU to something other than a quick peer.
const SLOW_YIELD: Duration = Duration::from_micros(250);
/// How long yields stop after a slow one.
const PAUSE: Duration = Duration::from_secs(1);

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns yielding before sleep on or off for every thread (on by default; the binary turns it
/// off with `SWITCHYARD_PARK_YIELD=off`).
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// Whether threads yield their CPU to peers (here before sleeping; in `busy-polling`, between
/// polls).
pub(crate) fn is_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// One thread's state between its wake-ups.
#[derive(Default, Clone, Copy)]
struct ParkYield {
    /// When the thread last woke from a sleep; `None` before the first.
    woke_at: Option<Instant>,
    /// Yields are paused until then after a slow one.
    paused_until: Option<Instant>,
}

impl ParkYield {
    fn unparked(&mut self, now: Instant) {
        self.woke_at = Some(now);
    }

    /// Called before sleeping: yields with `yield_now` when the burst since the last wake-up
    /// was short, and pauses yields after a slow one. `yield_now` returns when it came back.
    fn before_park(&mut self, now: Instant, yield_now: impl FnOnce() -> Instant) {
        let Some(woke_at) = self.woke_at.take() else {
            return;
        };
        if self.paused_until.is_some_and(|until| now < until) {
            return;
        }
        self.paused_until = None;
        if now.saturating_duration_since(woke_at) > SHORT_BURST {
            return;
        }
        let back = yield_now();
        if back.saturating_duration_since(now) > SLOW_YIELD {
            self.paused_until = Some(back + PAUSE);
        }
    }
}

thread_local! {
    static STATE: Cell<ParkYield> = Cell::new(ParkYield::default());
}

/// The runtime's `on_thread_park` hook.
pub(crate) fn before_park() {
    with_state(|state| {
        state.before_park(Instant::now(), || {
            std::thread::yield_now();
            Instant::now()
        })
    });
}

/// The runtime's `on_thread_unpark` hook.
pub(crate) fn after_unpark() {
    with_state(|state| state.unparked(Instant::now()));
}

/// Runs `update` on this thread's state, unless yielding is off.
fn with_state(update: impl FnOnce(&mut ParkYield)) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    STATE.with(|cell| {
        let mut state = cell.get();
        update(&mut state);
        cell.set(state);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// Runs `before_park` at `at`, with a yield lasting `lasts`; whether it yielded.
    fn park(state: &mut ParkYield, at: Instant, lasts: Duration) -> bool {
        let mut yielded = false;
        state.before_park(at, || {
            yielded = true;
            at + lasts
        });
        yielded
    }

    #[test]
    fn a_short_burst_yields_and_a_long_one_does_not() {
        let t0 = Instant::now();
        let mut state = ParkYield::default();
        assert!(!park(&mut state, t0, us(1)), "no wake-up seen yet");
        state.unparked(t0);
        assert!(park(&mut state, t0 + us(10), us(5)));
        state.unparked(t0 + us(100));
        assert!(!park(&mut state, t0 + us(100) + SHORT_BURST + us(1), us(5)));
        // Parking again without a wake-up in between (the hook saw no sleep) does not yield.
        assert!(!park(&mut state, t0 + us(200), us(5)));
    }

    #[test]
    fn a_slow_yield_pauses_yields_for_a_while() {
        let t0 = Instant::now();
        let mut state = ParkYield::default();
        state.unparked(t0);
        assert!(park(&mut state, t0 + us(5), SLOW_YIELD + us(1)));
        let back = t0 + us(5) + SLOW_YIELD + us(1);
        state.unparked(back + us(10));
        assert!(!park(&mut state, back + us(20), us(1)), "paused");
        let later = back + PAUSE + us(1);
        state.unparked(later);
        assert!(park(&mut state, later + us(5), us(1)), "the pause is over");
        state.unparked(later + us(10));
        assert!(
            park(&mut state, later + us(15), SLOW_YIELD),
            "a yield of exactly the limit is not slow"
        );
        state.unparked(later + us(300));
        assert!(park(&mut state, later + us(305), us(1)));
    }

    #[test]
    fn session_runtimes_call_the_hooks() {
        let runtime = crate::workers::runtime().expect("runtime");
        runtime.block_on(async { tokio::time::sleep(Duration::from_millis(2)).await });
        assert!(
            STATE.with(|cell| cell.get().woke_at.is_some()),
            "the thread slept and woke, so the unpark hook ran"
        );
    }
}
