//! Lost acknowledged writes, Jepsen's set-full idea: an op adds a run-unique id (`$uid`) to
//! a per-key set (`SADD <key> $uid`); after the run, with faults healed and the cluster
//! converged, every set is read back. An acknowledged id that is gone was lost. An add that
//! timed out or was cut off is *unknown*: it is never counted as lost, and its presence is
//! never an anomaly. An add that definitely failed (an error reply, a refused connection)
//! but is present is an anomaly of its own.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::failover::FaultReport;
use crate::history::{OpEvent, OpKind, Outcome};

/// What the read-back found: for each key id read, the uids in its set.
#[derive(Debug, Clone, Default)]
pub struct ReadBack {
    /// Key id → uids present.
    pub sets: HashMap<u64, HashSet<u64>>,
    /// Key ids whose set could not be read (their adds are not judged).
    pub unread: HashSet<u64>,
}

/// One add, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Add {
    /// The uid added.
    pub uid: u64,
    /// The key id.
    pub id: u64,
    /// When the add completed (was acknowledged or failed), µs since the run began.
    pub at_us: u64,
}

/// The verdict on one set-full op.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct LostWrites {
    /// The op's name.
    pub op: String,
    /// Adds made.
    pub adds: u64,
    /// Of those, acknowledged.
    pub acknowledged: u64,
    /// Of those, with an unknown outcome.
    pub unknown: u64,
    /// Of those, definitely failed.
    pub failed: u64,
    /// Acknowledged adds whose id is gone: lost writes.
    pub acknowledged_lost: Vec<Add>,
    /// Unknown adds found present (they did land) — not an anomaly.
    pub unknown_present: u64,
    /// Unknown adds not found — not an anomaly either.
    pub unknown_absent: u64,
    /// Definitely failed adds found present: the client was told no, the write happened.
    pub failed_present: Vec<Add>,
    /// Adds whose key could not be read back, left unjudged.
    pub unjudged: u64,
    /// Lost writes by the fault whose window (from when its injection began until the next
    /// one's) the acknowledgement fell in; faults without any are left out.
    pub lost_by_fault: Vec<FaultLoss>,
    /// Lost writes acknowledged before any fault.
    pub lost_before_faults: u64,
}

/// Lost writes acknowledged during one fault's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct FaultLoss {
    /// The fault report's index (in `run.json`'s `faults`).
    pub fault: usize,
    /// Lost writes acknowledged in its window.
    pub lost: u64,
}

impl LostWrites {
    /// Number of lost acknowledged writes.
    pub fn lost(&self) -> u64 {
        self.acknowledged_lost.len() as u64
    }
}

/// Judge the adds of op `kind` (named `name`) in `ops` against `read`.
pub fn check(
    ops: &[OpEvent],
    kind: OpKind,
    name: &str,
    read: &ReadBack,
    faults: &[FaultReport],
) -> LostWrites {
    let mut out = LostWrites { op: name.to_string(), ..Default::default() };
    let mut by_fault = vec![0u64; faults.len()];
    for op in ops.iter().filter(|o| o.kind == kind) {
        out.adds += 1;
        let add = Add { uid: op.uid, id: op.id, at_us: op.start_us + op.latency_us };
        let present = match (read.sets.get(&op.id), read.unread.contains(&op.id)) {
            (_, true) => None,
            (Some(set), false) => Some(set.contains(&op.uid)),
            (None, false) => Some(false),
        };
        match op.outcome {
            Outcome::Ok => out.acknowledged += 1,
            Outcome::Unknown(_) => out.unknown += 1,
            Outcome::Fail(_) => out.failed += 1,
        }
        let Some(present) = present else {
            out.unjudged += 1;
            continue;
        };
        match (op.outcome, present) {
            (Outcome::Ok, false) => {
                match faults.iter().rposition(|f| f.began_us <= add.at_us) {
                    Some(i) => by_fault[i] += 1,
                    None => out.lost_before_faults += 1,
                }
                out.acknowledged_lost.push(add);
            }
            (Outcome::Unknown(_), true) => out.unknown_present += 1,
            (Outcome::Unknown(_), false) => out.unknown_absent += 1,
            (Outcome::Fail(_), true) => out.failed_present.push(add),
            (Outcome::Ok, true) | (Outcome::Fail(_), false) => {}
        }
    }
    out.lost_by_fault = by_fault
        .into_iter()
        .enumerate()
        .filter(|&(_, lost)| lost > 0)
        .map(|(fault, lost)| FaultLoss { fault, lost })
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::failover::Impact;
    use crate::history::ErrorClass;

    fn add(uid: u64, id: u64, at_ms: u64, outcome: Outcome) -> OpEvent {
        OpEvent { id, uid, ..OpEvent::sample(at_ms, 1, 1, 0, outcome) }
    }

    fn fault(t0_ms: u64) -> FaultReport {
        FaultReport {
            fault: 0,
            repeat: 0,
            action: "partition".into(),
            targets: vec!["redis-1".into()],
            victims: vec!["redis-1".into()],
            t0_us: t0_ms * 1000,
            began_us: t0_ms * 1000,
            healed_us: None,
            detected_us: None,
            detected_log_us: None,
            elected_us: None,
            elected_node: None,
            elected_log_us: None,
            converged_us: None,
            learned_us: None,
            table_seen: true,
            client_recovered_us: None,
            backlog_drained_us: None,
            delayed_sends: 0,
            disruption_threshold_us: 0,
            acked_on_victim_slots_before_election: 0,
            victim_slots: Impact::default(),
            other_slots: Impact::default(),
            predicted: None,
        }
    }

    fn sets(entries: &[(u64, &[u64])]) -> ReadBack {
        ReadBack {
            sets: entries.iter().map(|(id, uids)| (*id, uids.iter().copied().collect())).collect(),
            unread: HashSet::new(),
        }
    }

    #[test]
    fn acknowledged_adds_that_are_gone_are_lost_and_attributed_to_their_fault() {
        let ops = vec![
            add(1, 7, 100, Outcome::Ok),
            add(2, 7, 5_000, Outcome::Ok), // acked after the fault began: lost in its window
            add(3, 8, 5_100, Outcome::Ok),
            add(4, 8, 9_000, Outcome::Ok), // acked in the second fault's window, kept
            add(5, 9, 50, Outcome::Ok),    // lost before any fault
        ];
        let read = sets(&[(7, &[1]), (8, &[4])]);
        let r = check(&ops, OpKind(1), "register", &read, &[fault(4_000), fault(8_000)]);
        assert_eq!(r.adds, 5);
        assert_eq!(r.acknowledged, 5);
        assert_eq!(r.lost(), 3);
        assert_eq!(r.lost_by_fault, vec![FaultLoss { fault: 0, lost: 2 }]);
        assert_eq!(r.lost_before_faults, 1);
        assert_eq!(r.acknowledged_lost[0], Add { uid: 2, id: 7, at_us: 5_001_000 });
    }

    #[test]
    fn unknown_adds_are_never_lost_nor_anomalies_but_failed_ones_present_are() {
        let ops = vec![
            add(1, 7, 0, Outcome::Unknown(ErrorClass::Timeout)),
            add(2, 7, 0, Outcome::Unknown(ErrorClass::Reset)),
            add(3, 7, 0, Outcome::Fail(ErrorClass::ClusterDown)),
            add(4, 7, 0, Outcome::Fail(ErrorClass::Refused)),
            // Another op kind is not judged here.
            OpEvent { kind: OpKind(0), ..add(5, 7, 0, Outcome::Ok) },
        ];
        let read = sets(&[(7, &[1, 3])]);
        let r = check(&ops, OpKind(1), "register", &read, &[]);
        assert_eq!((r.adds, r.unknown, r.failed), (4, 2, 2));
        assert_eq!(r.lost(), 0);
        assert_eq!((r.unknown_present, r.unknown_absent), (1, 1));
        assert_eq!(r.failed_present.len(), 1);
        assert_eq!(r.failed_present[0].uid, 3);
    }

    #[test]
    fn the_same_uid_present_twice_or_keys_not_read_are_handled() {
        // A retry re-sends the same uid: a set holds it once, and one ack counts once.
        let ops = vec![add(1, 7, 0, Outcome::Ok), add(2, 8, 0, Outcome::Ok)];
        let mut read = sets(&[(7, &[1, 1])]);
        read.unread.insert(8);
        let r = check(&ops, OpKind(1), "register", &read, &[]);
        assert_eq!(r.lost(), 0);
        assert_eq!(r.unjudged, 1);
    }
}
