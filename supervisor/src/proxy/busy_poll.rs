//! Busy polling while traffic flows: after the proxy's thread wakes for I/O it keeps asking
//! the reactor (without sleeping) until no connection has moved anything for a short quiet
//! window, then sleeps again.
//!
//! Why: a sleeping CPU takes long to wake, above all a virtual machine's vCPU, where each
//! wake-up is a trip through the hypervisor (tens of microseconds). A proxied request pays
//! that twice (request in, answer back) on top of what a direct one pays; polling through
//! the gaps of a burst removes it. The cost is bounded: at most one quiet window of CPU per
//! burst, nothing while the sandbox is idle. A window of zero turns it off.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The quiet window when none is configured: about what Linux's own guest halt-polling
/// waits before it lets a vCPU halt.
pub const DEFAULT_QUIET: Duration = Duration::from_micros(200);

thread_local! {
    /// Bumped by every connection that moved something; the runtime is one thread.
    static ACTIVITY: Cell<u64> = const { Cell::new(0) };
}

/// Marks that a connection moved a small message (a request, an answer, a handshake) or that
/// a connection arrived. Bulk transfers (spliced tunnels) do not call it.
#[inline]
pub fn moved() {
    ACTIVITY.with(|a| a.set(a.get().wrapping_add(1)));
}

fn activity() -> u64 {
    ACTIVITY.with(Cell::get)
}

/// The poller of one current-thread runtime: [`BusyPoll::on_unpark`] goes to the runtime's
/// builder, [`BusyPoll::run`] is spawned on it.
#[derive(Clone)]
pub struct BusyPoll {
    woken: Arc<Notify>,
    quiet: Duration,
}

impl BusyPoll {
    pub fn new(quiet: Duration) -> BusyPoll {
        BusyPoll {
            woken: Arc::new(Notify::new()),
            quiet,
        }
    }

    /// For `on_thread_unpark`: the runtime slept and the reactor woke it.
    pub fn on_unpark(&self) -> impl Fn() + Send + Sync + 'static {
        let woken = self.woken.clone();
        let on = !self.quiet.is_zero();
        move || {
            if on {
                woken.notify_one();
            }
        }
    }

    /// Polls after a wake-up that moved small messages (see [`moved`]) until a quiet window
    /// passes with nothing moved. Yielding makes the runtime check the reactor without
    /// blocking before it runs this again.
    pub async fn run(self) {
        if self.quiet.is_zero() {
            return;
        }
        let mut seen = activity();
        loop {
            self.woken.notified().await;
            // Let the woken connections run first: a wake-up that moved only bulk data (or
            // nothing) is not followed by polling. Bulk data in flight sits in deep buffers
            // and gains nothing from it, while a spinning thread would take a CPU from the
            // processes at either end moving it.
            tokio::task::yield_now().await;
            if activity() == seen {
                continue;
            }
            seen = activity();
            let mut since = Instant::now();
            loop {
                tokio::task::yield_now().await;
                let now = activity();
                if now != seen {
                    seen = now;
                    since = Instant::now();
                } else if since.elapsed() >= self.quiet {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `activity` on a runtime with a poller of `quiet`; how often the runtime slept
    /// during it, and whether it slept again once things were quiet.
    fn parks_during(quiet: Duration, small: bool) -> (u64, bool) {
        use std::sync::atomic::{AtomicU64, Ordering};
        let poll = BusyPoll::new(quiet);
        let parks = Arc::new(AtomicU64::new(0));
        let counted = parks.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(move || {
                counted.fetch_add(1, Ordering::Relaxed);
            })
            .on_thread_unpark(poll.on_unpark())
            .build()
            .expect("runtime");
        rt.block_on(async {
            tokio::spawn(poll.run());
            // A first wake-up from the reactor starts the polling.
            tokio::time::sleep(Duration::from_millis(2)).await;
            let before = parks.load(Ordering::Relaxed);
            // Something moves every millisecond, well inside the quiet window: between
            // moves nothing is runnable, so without polling the runtime would sleep each time.
            for _ in 0..20 {
                if small {
                    moved();
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let during = parks.load(Ordering::Relaxed) - before;
            let end = parks.load(Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(60)).await;
            (during, parks.load(Ordering::Relaxed) > end)
        })
    }

    #[test]
    fn polls_through_a_burst_and_sleeps_once_quiet() {
        let (during, slept_after) = parks_during(Duration::from_millis(20), true);
        assert!(
            during <= 1,
            "the runtime slept {during} times while traffic flowed"
        );
        assert!(slept_after, "the runtime never slept again after the burst");
        // Without polling the same burst puts the runtime to sleep between every move.
        let (during, _) = parks_during(Duration::ZERO, true);
        assert!(during >= 15, "only {during} sleeps without polling");
    }

    /// Wake-ups that move no small message (bulk tunnels, timers) are not followed by
    /// polling: the runtime sleeps between them as if polling were off.
    #[test]
    fn wake_ups_without_small_messages_do_not_poll() {
        let (during, _) = parks_during(Duration::from_millis(20), false);
        assert!(during >= 15, "only {during} sleeps: it polled for bulk");
    }

    #[test]
    fn zero_turns_it_off() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // Off: `run` returns at once instead of waiting for wake-ups forever.
        rt.block_on(BusyPoll::new(Duration::ZERO).run());
    }
}
