//! Checkers: pure functions over a [`History`](crate::history::History). They do no I/O,
//! never panic on odd histories, and never plot; reports only present what they return.

pub mod failover;
pub mod lost_writes;
pub mod operations;
pub mod predict;
pub mod rate_limit;
pub mod schedule;
pub mod slo;
pub mod windows;

use crate::history::{Event, EventKind};

/// A line for each thing that went wrong in slotstorm itself or in its chaos: a fault the
/// nemesis could not inject or heal, a driver worker that panicked. Where there is one, the
/// run did not test what it was asked to (the CLI exits 3).
pub fn run_errors(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| {
            let at = e.at_us as f64 / 1e6;
            match &e.kind {
                EventKind::FaultError { fault, error } => {
                    Some(format!("fault[{fault}] at {at:.1}s: {error}"))
                }
                EventKind::DriverError { worker, error } => {
                    Some(format!("driver worker {worker} at {at:.1}s: {error}"))
                }
                EventKind::OperationError { index, error } => {
                    Some(format!("operation[{index}] at {at:.1}s: {error}"))
                }
                _ => None,
            }
        })
        .collect()
}

/// Whether a fault could not be injected or healed: faults then left nothing to judge.
pub fn any_fault_error(events: &[Event]) -> bool {
    events.iter().any(|e| matches!(e.kind, EventKind::FaultError { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_and_driver_error_is_a_line_and_nothing_else_is() {
        let events = [
            Event { at_us: 3_000_000, kind: EventKind::FaultError { fault: 1, error: "boom".into() } },
            Event {
                at_us: 4_000_000,
                kind: EventKind::FaultHealed { fault: 0, repeat: 0, action: "kill".into(), targets: vec![] },
            },
            Event { at_us: 5_250_000, kind: EventKind::DriverError { worker: 7, error: "oops".into() } },
        ];
        assert_eq!(
            run_errors(&events),
            vec!["fault[1] at 3.0s: boom".to_string(), "driver worker 7 at 5.2s: oops".to_string()]
        );
        assert!(any_fault_error(&events));
        assert!(!any_fault_error(&events[1..]));
    }
}
