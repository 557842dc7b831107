//! Signals that end a command early. Every long-running command races its work against
//! [`signalled`] and, when a signal wins, heals and removes what it made before exiting.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// SIGINT and SIGTERM, listened to from creation on: a signal that arrives between two
/// [`Signals::next`] calls is not lost.
pub struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    /// Start listening.
    pub fn new() -> Signals {
        Signals {
            int: signal(SignalKind::interrupt()).expect("installing a SIGINT handler"),
            term: signal(SignalKind::terminate()).expect("installing a SIGTERM handler"),
        }
    }

    /// Wait for the next SIGINT (Ctrl-C) or SIGTERM and return its name.
    pub async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}

impl Default for Signals {
    fn default() -> Self {
        Signals::new()
    }
}

/// Wait for SIGINT (Ctrl-C) or SIGTERM and return the signal's name.
pub async fn signalled() -> &'static str {
    Signals::new().next().await
}
