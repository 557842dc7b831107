//! The numbers a comparison sets side by side, taken from one run's history, its fault
//! reports and what its `run.json` recorded (lost writes, over-admissions). Pure: the same
//! run folder always gives the same figures, so `slotstorm report` can rebuild a comparison.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::check::failover::FaultReport;
use crate::history::{History, OpEvent, Recording, new_histogram};

/// One fault of one run, in seconds after its `t0`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultFigures {
    /// The action and its targets (`kill redis-3`).
    pub fault: String,
    /// First node marks the victim failed.
    pub detection_s: Option<f64>,
    /// A replica reports itself primary.
    pub election_s: Option<f64>,
    /// Every reachable node agrees on the new owner and reports `cluster_state:ok`.
    pub convergence_s: Option<f64>,
    /// End of the client-visible disruption on the victim's slots: the failover duration.
    pub recovery_s: Option<f64>,
    /// From the first to the last failed op on the victim's slots.
    pub error_window_s: f64,
    /// Errors on the victim's slots.
    pub errors: u64,
    /// The error window on every other slot (CLUSTERDOWN with full coverage required).
    pub other_error_window_s: f64,
}

/// One run, reduced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFigures {
    /// Each fault, in order.
    pub faults: Vec<FaultFigures>,
    /// Acknowledged writes lost, when the workload has a set-full op.
    pub lost_writes: Option<u64>,
    /// Windows in which the limiter over-admitted, when the workload has a limiter op.
    pub over_admissions: Option<u64>,
    /// p99 of every op (failed ones included) that started while a fault was in effect:
    /// from `t0` to the later of its heal and the client's recovery, ms.
    pub p99_during_faults_ms: Option<f64>,
    /// p99 of the ops after the warm-up that started outside every fault, ms.
    pub p99_steady_ms: Option<f64>,
    /// Ops per second after the warm-up.
    pub ops_per_s: f64,
}

/// What a comparison takes from a run's `run.json` as the run recorded it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Recorded {
    /// Lost acknowledged writes, when a set-full op was checked.
    pub lost_writes: Option<u64>,
    /// Windows over the limit, when a limiter op was checked.
    pub over_admissions: Option<u64>,
    /// Measured ops per second.
    pub ops_per_s: f64,
}

impl Recorded {
    /// From `run.json`.
    pub fn of(run: &crate::report::model::RunFile) -> Recorded {
        Recorded {
            lost_writes: run.lost_writes_total(),
            over_admissions: run.over_admissions_total(),
            ops_per_s: run.totals.ops_per_s,
        }
    }
}

/// The figures of a run whose history is `history`, faults `faults` and `run.json` says
/// `recorded`.
pub fn figures(history: &History, faults: &[FaultReport], recorded: Recorded) -> RunFigures {
    let secs = |at: Option<u64>, t0: u64| at.map(|u| u.saturating_sub(t0) as f64 / 1e6);
    let fault_figures = faults
        .iter()
        .map(|f| FaultFigures {
            fault: format!("{} {}", f.action, f.targets.join(",")),
            detection_s: secs(f.detected_us, f.t0_us),
            election_s: secs(f.elected_us, f.t0_us),
            convergence_s: secs(f.converged_us, f.t0_us),
            recovery_s: secs(f.client_recovered_us, f.t0_us),
            error_window_s: f.victim_slots.error_span_us() as f64 / 1e6,
            errors: f.victim_slots.errors(),
            other_error_window_s: f.other_slots.error_span_us() as f64 / 1e6,
        })
        .collect();
    let end_us = history.elapsed.as_micros() as u64;
    let spans: Vec<(u64, u64)> = faults
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let horizon = faults.get(i + 1).map_or(end_us, |n| n.t0_us);
            let end = [f.healed_us, f.client_recovered_us].into_iter().flatten().max().unwrap_or(horizon);
            // Every op is kept only until 30 s after the heal (or the injection, without
            // one): "during" ends there at the latest, so it is never only the slow ops.
            let kept_until = f.healed_us.unwrap_or(f.t0_us) + Recording::AFTER_HEAL.as_micros() as u64;
            (f.t0_us, end.min(kept_until).max(f.t0_us))
        })
        .collect();
    // Every op near a fault is kept one by one: "during" comes from them. Every op is
    // counted in the intervals: "steady" is all the measured ones (the intervals after the
    // warm-up) less those.
    let len = history.interval.as_micros().max(1) as u64;
    let measured = |o: &OpEvent| !history.in_warmup((o.end_us() / len) as u32);
    let mut during = new_histogram();
    for op in history.ops.iter().filter(|o| measured(o)) {
        if spans.iter().any(|&(a, b)| op.start_us >= a && op.start_us <= b) {
            during.saturating_record(op.latency_us.max(1));
        }
    }
    let mut steady = new_histogram();
    for s in history.totals() {
        steady.add(&s.latency).expect("histograms share bounds");
    }
    // Both hold the same values of the same ops, so nothing can go below zero; a history
    // whose ops were not counted (built by hand) has no steady part.
    if steady.subtract(&during).is_err() {
        steady.reset();
    }
    let p99 = |h: &Histogram<u64>| (!h.is_empty()).then(|| h.value_at_quantile(0.99) as f64 / 1000.0);
    RunFigures {
        faults: fault_figures,
        lost_writes: recorded.lost_writes,
        over_admissions: recorded.over_admissions,
        p99_during_faults_ms: p99(&during),
        p99_steady_ms: p99(&steady),
        ops_per_s: recorded.ops_per_s,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::check::failover::Impact;
    use crate::history::{OpEvent, Outcome};

    fn fault(t0_s: u64, healed_s: u64, recovered_s: Option<f64>) -> FaultReport {
        let at = |s: f64| (s * 1e6) as u64;
        FaultReport {
            fault: 0,
            repeat: 0,
            action: "kill".into(),
            targets: vec!["redis-3".into()],
            victims: vec!["redis-3".into()],
            t0_us: at(t0_s as f64),
            began_us: at(t0_s as f64),
            healed_us: Some(at(healed_s as f64)),
            detected_us: Some(at(t0_s as f64 + 1.0)),
            detected_log_us: None,
            elected_us: Some(at(t0_s as f64 + 2.0)),
            elected_node: Some("redis-6".into()),
            elected_log_us: None,
            converged_us: Some(at(t0_s as f64 + 2.5)),
            learned_us: Some(at(t0_s as f64 + 2.2)),
            table_seen: true,
            client_recovered_us: recovered_s.map(at),
            backlog_drained_us: None,
            delayed_sends: 0,
            disruption_threshold_us: 100_000,
            acked_on_victim_slots_before_election: 0,
            victim_slots: Impact::default(),
            other_slots: Impact::default(),
            predicted: None,
        }
    }

    fn op(start_s: f64, latency_ms: u64) -> OpEvent {
        OpEvent::sample((start_s * 1000.0) as u64, latency_ms, 0, 0, Outcome::Ok)
    }

    fn history(ops: Vec<OpEvent>) -> History {
        History {
            op_names: vec!["get".into()],
            interval: Duration::from_secs(1),
            warmup: Duration::from_secs(1),
            started_at: std::time::SystemTime::UNIX_EPOCH,
            elapsed: Duration::from_secs(30),
            intervals: Default::default(),
            ops,
            errors: Vec::new(),
            events: Vec::new(),
        }
        .count_ops()
    }

    #[test]
    fn phases_are_seconds_after_t0() {
        let f = figures(&history(vec![]), &[fault(10, 20, Some(13.5))], Recorded::default());
        let p = &f.faults[0];
        assert_eq!(
            (p.detection_s, p.election_s, p.convergence_s, p.recovery_s),
            (Some(1.0), Some(2.0), Some(2.5), Some(3.5))
        );
        assert_eq!(p.fault, "kill redis-3");
        assert_eq!((f.p99_during_faults_ms, f.p99_steady_ms), (None, None));
    }

    #[test]
    fn ops_split_into_during_faults_and_steady_at_the_span_edges() {
        // Fault from 10 s to its heal at 20 s (recovery earlier): an op starting at 20 s is
        // inside, at 20.5 s outside; ops that end in the warm-up count nowhere.
        // The p99 of a few values is their largest.
        let mut ops = vec![op(0.2, 700), op(10.0, 500), op(20.0, 400), op(20.5, 50)];
        ops.extend((0..50).map(|i| op(2.0 + f64::from(i) * 0.01, 1)));
        let f = figures(&history(ops), &[fault(10, 20, Some(12.0))], Recorded::default());
        let near = |v: Option<f64>, want: f64| v.is_some_and(|v| (v - want).abs() <= want * 0.001);
        assert!(near(f.p99_during_faults_ms, 500.0), "{:?}", f.p99_during_faults_ms);
        assert!(near(f.p99_steady_ms, 50.0), "{:?}", f.p99_steady_ms);
    }

    #[test]
    fn a_recovery_after_the_heal_extends_the_span() {
        let ops = vec![op(24.0, 300), op(26.0, 1)];
        let f = figures(&history(ops), &[fault(10, 20, Some(25.0))], Recorded::default());
        assert!(
            f.p99_during_faults_ms.is_some_and(|v| (v - 300.0).abs() < 0.5),
            "{:?}",
            f.p99_during_faults_ms
        );
        assert_eq!(f.p99_steady_ms, Some(1.0));
    }

    #[test]
    fn lost_writes_and_over_admissions_come_from_run_json_and_are_absent_without_checks() {
        let recorded = Recorded { lost_writes: Some(3), over_admissions: None, ops_per_s: 1234.5 };
        let f = figures(&history(vec![]), &[], recorded);
        assert_eq!(f.lost_writes, Some(3));
        assert_eq!(f.over_admissions, None);
        assert_eq!(f.ops_per_s, 1234.5);
    }
}
