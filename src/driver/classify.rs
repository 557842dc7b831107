//! Turning what the connection reports into slotstorm's error classes, and deciding
//! whether a failed request may still have been applied (unknown) or surely was not (fail).
//!
//! Error *replies* are classified by their code where they are parsed
//! ([`super::resp::error_class`]); this module classifies requests that got no reply.

use std::io;

use crate::history::ErrorClass;

/// A request's failure: its class, and whether the request may have been applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// The error class.
    pub class: ErrorClass,
    /// True when the request may have reached the server and been applied (a timeout, a
    /// connection cut after sending): such an op's outcome is unknown, never failed.
    pub maybe_applied: bool,
}

impl Failure {
    /// A failure that surely left the data untouched.
    pub fn definite(class: ErrorClass) -> Failure {
        Failure { class, maybe_applied: false }
    }
}

/// Classify an I/O error on a connection (connecting, writing or reading). `sent` says
/// whether the request had been handed to the connection: a request that never left
/// cannot have been applied. The classes are those the `redis` crate's error predicates
/// gave before slotstorm spoke RESP itself: timed out (or would block) is `timeout`,
/// refused (or, for a socket path, not found) is `refused`, any other is `reset`.
pub fn io_error(e: &io::Error, sent: bool) -> Failure {
    let class = match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ErrorClass::Timeout,
        io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => ErrorClass::Refused,
        _ => ErrorClass::Reset,
    };
    let maybe_applied = sent && matches!(class, ErrorClass::Timeout | ErrorClass::Reset);
    Failure { class, maybe_applied }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: io::ErrorKind) -> io::Error {
        io::Error::from(kind)
    }

    #[test]
    fn io_failures_after_sending_are_unknown_before_sending_are_failures() {
        let t = io_error(&io(io::ErrorKind::TimedOut), true);
        assert_eq!(t, Failure { class: ErrorClass::Timeout, maybe_applied: true });
        let t = io_error(&io(io::ErrorKind::TimedOut), false);
        assert_eq!(t, Failure { class: ErrorClass::Timeout, maybe_applied: false });
        let r = io_error(&io(io::ErrorKind::ConnectionRefused), true);
        assert_eq!(r, Failure { class: ErrorClass::Refused, maybe_applied: false });
        let b = io_error(&io(io::ErrorKind::BrokenPipe), true);
        assert_eq!(b, Failure { class: ErrorClass::Reset, maybe_applied: true });
        let c = io_error(&io(io::ErrorKind::ConnectionReset), true);
        assert_eq!(c.class, ErrorClass::Reset);
        let u = io_error(&io(io::ErrorKind::HostUnreachable), false);
        assert_eq!(u, Failure { class: ErrorClass::Reset, maybe_applied: false });
    }
}
