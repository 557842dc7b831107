//! Checkers: pure functions over a [`History`](crate::history::History). They do no I/O,
//! never panic on odd histories, and never plot; reports only present what they return.

pub mod failover;
pub mod lost_writes;
pub mod operations;
pub mod rate_limit;
pub mod schedule;
pub mod slo;
pub mod windows;

use crate::history::{Event, EventKind};

/// A line for each fault the nemesis could not inject or heal: where there is one, the run
/// did not test what its chaos file asked.
pub fn chaos_errors(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::FaultError { fault, error } => {
                Some(format!("fault[{fault}] at {:.1}s: {error}", e.at_us as f64 / 1e6))
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_error_is_a_line_and_nothing_else_is() {
        let events = [
            Event { at_us: 3_000_000, kind: EventKind::FaultError { fault: 1, error: "boom".into() } },
            Event {
                at_us: 4_000_000,
                kind: EventKind::FaultHealed { fault: 0, repeat: 0, action: "kill".into(), targets: vec![] },
            },
        ];
        assert_eq!(chaos_errors(&events), vec!["fault[1] at 3.0s: boom".to_string()]);
    }
}
