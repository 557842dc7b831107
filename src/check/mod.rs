//! Checkers: pure functions over a [`History`](crate::history::History). They do no I/O,
//! never panic on odd histories, and never plot; reports only present what they return.

pub mod failover;
pub mod lost_writes;
pub mod operations;
pub mod rate_limit;
pub mod slo;
pub mod windows;
