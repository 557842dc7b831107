//! Turning what the client library reports into slotstorm's error classes, and deciding
//! whether a failed request may still have been applied (unknown) or surely was not (fail).

use redis::{ErrorKind, RedisError, ServerError, ServerErrorKind};

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

/// Classify an error reply from the server (never applied).
pub fn server_error(e: &ServerError) -> ErrorClass {
    match e.kind() {
        Some(kind) => server_kind(kind),
        None => match e.code() {
            "LOADING" => ErrorClass::Loading,
            _ => ErrorClass::Other,
        },
    }
}

fn server_kind(kind: ServerErrorKind) -> ErrorClass {
    match kind {
        ServerErrorKind::ClusterDown | ServerErrorKind::MasterDown => ErrorClass::ClusterDown,
        ServerErrorKind::TryAgain => ErrorClass::TryAgain,
        ServerErrorKind::Moved => ErrorClass::Moved,
        ServerErrorKind::Ask => ErrorClass::Ask,
        ServerErrorKind::ReadOnly => ErrorClass::ReadOnly,
        ServerErrorKind::BusyLoading => ErrorClass::Loading,
        ServerErrorKind::NoScript => ErrorClass::NoScript,
        _ => ErrorClass::Other,
    }
}

/// Classify a request that failed as a whole (no reply, or a broken connection). `sent`
/// says whether the request had been handed to the connection: a request that never left
/// cannot have been applied.
pub fn request_error(e: &RedisError, sent: bool) -> Failure {
    if let ErrorKind::Server(kind) = e.kind() {
        return Failure::definite(server_kind(kind));
    }
    let class = if e.is_timeout() {
        ErrorClass::Timeout
    } else if e.is_connection_refusal() {
        ErrorClass::Refused
    } else if e.is_connection_dropped() || e.is_io_error() {
        ErrorClass::Reset
    } else {
        ErrorClass::Other
    };
    let maybe_applied = sent && matches!(class, ErrorClass::Timeout | ErrorClass::Reset);
    Failure { class, maybe_applied }
}

/// Where a `MOVED` or `ASK` reply points: `(slot, "host:port")`.
pub fn redirect_target(e: &ServerError) -> Option<(u16, String)> {
    let mut parts = e.details()?.split_whitespace();
    let slot = parts.next()?.parse().ok()?;
    let addr = parts.next()?.to_string();
    Some((slot, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: std::io::ErrorKind) -> RedisError {
        RedisError::from(std::io::Error::from(kind))
    }

    #[test]
    fn io_failures_after_sending_are_unknown_before_sending_are_failures() {
        let t = request_error(&io(std::io::ErrorKind::TimedOut), true);
        assert_eq!(t, Failure { class: ErrorClass::Timeout, maybe_applied: true });
        let t = request_error(&io(std::io::ErrorKind::TimedOut), false);
        assert_eq!(t, Failure { class: ErrorClass::Timeout, maybe_applied: false });
        let r = request_error(&io(std::io::ErrorKind::ConnectionRefused), true);
        assert_eq!(r, Failure { class: ErrorClass::Refused, maybe_applied: false });
        let b = request_error(&io(std::io::ErrorKind::BrokenPipe), true);
        assert_eq!(b, Failure { class: ErrorClass::Reset, maybe_applied: true });
        let c = request_error(&io(std::io::ErrorKind::ConnectionReset), true);
        assert_eq!(c.class, ErrorClass::Reset);
    }
}
