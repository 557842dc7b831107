//! The run's clock and its stop signal, shared by the driver, the nemesis, the observer and
//! the run alike; this module depends on none of them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

/// The run's clock: one monotonic zero, with its wall-clock anchor.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    /// Monotonic zero.
    pub start: Instant,
    /// Wall-clock time at zero.
    pub started_at: SystemTime,
}

impl RunClock {
    /// A clock starting now.
    pub fn start() -> RunClock {
        RunClock { start: Instant::now(), started_at: SystemTime::now() }
    }

    /// µs since zero.
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }
}

/// A signal to stop (Ctrl-C, a failed injection, the run's end for background tasks): set
/// once, seen at once by everyone waiting on it, never polled.
#[derive(Debug, Default)]
pub struct Stop {
    flag: AtomicBool,
    notify: Notify,
}

impl Stop {
    /// Ask everyone to stop; those waiting wake now.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Whether a stop was asked for.
    pub fn stopped(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Return once a stop is asked for (at once if it was).
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the flag is read, so a stop in between is not missed.
            notified.as_mut().enable();
            if self.stopped() {
                return;
            }
            notified.await;
        }
    }

    /// Sleep until `deadline`: true when it came, false when a stop came first.
    pub async fn sleep_until(&self, deadline: Instant) -> bool {
        tokio::select! {
            () = tokio::time::sleep_until(deadline.into()) => !self.stopped(),
            () = self.wait() => false,
        }
    }

    /// Sleep for `d`: true when it passed, false when a stop came first.
    pub async fn sleep(&self, d: Duration) -> bool {
        self.sleep_until(Instant::now() + d).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_wakes_every_waiter_at_once_and_later_waits_return_at_once() {
        let stop = std::sync::Arc::new(Stop::default());
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let s = stop.clone();
                tokio::spawn(async move { s.sleep(Duration::from_secs(60)).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t = Instant::now();
        stop.stop();
        for w in waiters {
            assert!(!w.await.unwrap(), "woken by the stop, not the deadline");
        }
        assert!(t.elapsed() < Duration::from_secs(5));
        stop.wait().await;
        assert!(!stop.sleep(Duration::from_secs(60)).await);
    }

    #[tokio::test]
    async fn a_sleep_without_a_stop_reaches_its_deadline() {
        let stop = Stop::default();
        assert!(stop.sleep(Duration::from_millis(5)).await);
        assert!(!stop.stopped());
    }
}
