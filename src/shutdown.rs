//! Signals that end a command early. Every long-running command races its work against
//! [`signalled`] and, when a signal wins, heals and removes what it made before exiting.

/// Wait for SIGINT (Ctrl-C) or SIGTERM and return the signal's name.
pub async fn signalled() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
