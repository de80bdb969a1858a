//! `busy-polling`: session threads look for events without ever sleeping.
//!
//! HAProxy's `busy-polling` calls its poller with a zero timeout in a loop, so that a thread
//! never sleeps in `epoll_wait` and an event is seen without a wake-up: no scheduler wake-up
//! and, on a virtual machine, no halt and VM exit of an idle vCPU (HAProxy's documentation
//! reports 30 to 100 µs less latency). The price is a CPU at 100 % per thread, which
//! HAProxy advises only for threads with CPUs of their own.
//!
//! Here each session runtime runs one [`spin`] task. While the setting is on, it yields to
//! the runtime at every turn: tokio's current-thread scheduler then polls its I/O driver
//! with a zero timeout instead of parking (a deferred task counts as pending work), which is
//! the same loop. Unlike HAProxy, it also yields the CPU to the kernel at every turn, so
//! that a peer on the same CPU is not kept waiting for a whole time slice.
//! While off, it waits for the setting to change and costs nothing. The setting follows the
//! configuration through reloads and is dropped when the process stops (as HAProxy's old
//! process does on a soft stop), so that a draining process does not burn CPU.

use std::sync::LazyLock;

use tokio::sync::watch;

static SETTING: LazyLock<watch::Sender<bool>> = LazyLock::new(|| watch::channel(false).0);

/// Turns busy polling on or off on every session thread.
pub fn set(on: bool) {
    SETTING.send_if_modified(|current| std::mem::replace(current, on) != on);
}

/// Whether the session threads busy-poll (`show info`'s `BusyPolling`).
pub fn is_on() -> bool {
    *SETTING.borrow()
}

/// Runs on each session runtime for the life of the process: [`crate::workers::start`]
/// spawns it on the threads it starts, the binary on the main thread's runtime.
pub async fn run() {
    spin(SETTING.subscribe()).await;
}

/// Keeps the runtime polling without sleeping while `setting` is on. Returns when the
/// setting's sender is gone.
pub(crate) async fn spin(mut setting: watch::Receiver<bool>) {
    loop {
        if *setting.borrow_and_update() {
            let metrics = tokio::runtime::Handle::current().metrics();
            let mut idle = crate::idle::Spinning::new(metrics.worker_total_busy_duration(0));
            // A `has_changed` is one atomic load: cheap enough for every turn of the loop.
            while let Ok(false) = setting.has_changed() {
                tokio::task::yield_now().await;
                idle.turned(metrics.worker_total_busy_duration(0));
                // The thread never sleeps, so nothing wakes it for a hand-over.
                crate::workers::take_arrivals();
                // The tasks the last poll woke have run (a deferred task runs after them): a
                // peer waiting for this CPU (a client, a server) runs now instead of at the
                // end of the spinning thread's time slice. A spinning thread sharing its CPU
                // held them for whole time slices: at `nbthread 2` on two CPUs, echo p99 was
                // 3.2 ms without this, 0.16 ms with it (HAProxy's busy polling: 1.8 ms).
                // Alone on its CPU, the call returns at once (docs/performance.md, "Busy
                // polling").
                if crate::park::is_enabled() {
                    let started = std::time::Instant::now();
                    std::thread::yield_now();
                    // HAProxy spins inside its poller: waiting, for `Idle_pct`.
                    idle.yielded(started.elapsed());
                }
            }
        } else if setting.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// A runtime like a session thread's, counting how often it went to sleep.
    fn counting_runtime(parks: &Arc<AtomicUsize>) -> tokio::runtime::Runtime {
        let parks = Arc::clone(parks);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(move || {
                parks.fetch_add(1, Ordering::Relaxed);
            })
            .build()
            .unwrap()
    }

    /// The parks counted while the runtime waits for 20 timers of 1 ms in a row.
    fn parks_while_waiting(runtime: &tokio::runtime::Runtime, parks: &AtomicUsize) -> usize {
        let before = parks.load(Ordering::Relaxed);
        runtime.block_on(async {
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        parks.load(Ordering::Relaxed) - before
    }

    #[test]
    fn the_runtime_never_sleeps_while_on_and_sleeps_again_once_off() {
        let parks = Arc::new(AtomicUsize::new(0));
        let runtime = counting_runtime(&parks);
        let (setting, receiver) = watch::channel(false);
        let spinner = runtime.spawn(spin(receiver));

        assert!(
            parks_while_waiting(&runtime, &parks) >= 20,
            "off: each timer is waited for asleep"
        );
        setting.send_replace(true);
        // Timers still fire (the driver is polled with a zero timeout), with no sleep at all.
        assert_eq!(parks_while_waiting(&runtime, &parks), 0, "on");
        setting.send_replace(false);
        // The spinner sees the change at its next turn and waits asleep again.
        assert!(parks_while_waiting(&runtime, &parks) >= 20, "off again");

        drop(setting);
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), spinner)
                .await
                .expect("the spinner ends with its setting")
                .unwrap();
        });
    }

    #[test]
    fn set_reports_the_setting() {
        // The process-wide setting; no runtime of this test binary spins on it.
        set(true);
        assert!(is_on());
        set(false);
        assert!(!is_on());
    }
}
