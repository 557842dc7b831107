//! Verdicts on crafted histories: a failover within and beyond its limits, no faults, a
//! fault never recovered, one cut short by the next fault, steady-state percentiles that
//! leave out the warm-up and the fault windows, ops without samples, counts not measured.

use std::time::{Duration, SystemTime};

use super::*;
use crate::check::failover::{FailoverConfig, fault_reports};
use crate::history::{ErrorClass, Event, OpKind, OpStats};

const GET: OpKind = OpKind(0);
const SET: OpKind = OpKind(1);
/// A slot the faults' primary serves (it serves 0-99).
const VICTIM: u16 = 5;
/// A slot on another primary.
const OTHER: u16 = 150;

fn op(start_ms: u64, latency_ms: u64, kind: OpKind, slot: u16, outcome: OpOutcome) -> OpEvent {
    OpEvent::sample(start_ms, latency_ms, kind.0, slot, outcome)
}

fn injected(at_ms: u64, fault: usize, primary: bool) -> Event {
    Event {
        at_us: at_ms * 1000,
        kind: EventKind::FaultInjected {
            began_us: at_ms * 1000,
            fault,
            repeat: 0,
            action: "kill".into(),
            targets: vec!["redis-1".into()],
            primaries: vec![primary],
            slots: if primary { vec![(0, 99)] } else { vec![] },
        },
    }
}

fn healed(at_ms: u64, fault: usize) -> Event {
    Event {
        at_us: at_ms * 1000,
        kind: EventKind::FaultHealed {
            fault,
            repeat: 0,
            action: "kill".into(),
            targets: vec!["redis-1".into()],
        },
    }
}

/// Steady traffic over `0..run_s` seconds: a `get` (1 ms) and a `set` (2 ms) every 10 ms on
/// each of the two slots, except that `during(start_ms, slot)` may replace an op; ops started
/// in the first 400 ms of the warm-up (the first second) take 500 ms more. Intervals are built from the ops as the recorder does, by
/// completion time.
fn history(run_s: u64, events: Vec<Event>, during: impl Fn(u64, u16) -> Option<OpEvent>) -> History {
    let mut ops = Vec::new();
    for t in (0..run_s * 1000).step_by(10) {
        for slot in [VICTIM, OTHER] {
            if let Some(o) = during(t, slot) {
                ops.push(o);
                continue;
            }
            let warm = if t < 400 { 500 } else { 0 };
            ops.push(op(t, 1 + warm, GET, slot, OpOutcome::Ok));
            ops.push(op(t, 2 + warm, SET, slot, OpOutcome::Ok));
        }
    }
    let mut h = History {
        op_names: vec!["get".into(), "set".into(), "del".into()],
        interval: Duration::from_secs(1),
        warmup: Duration::from_secs(1),
        started_at: SystemTime::UNIX_EPOCH,
        elapsed: Duration::from_secs(run_s),
        intervals: Default::default(),
        ops: Vec::new(),
        errors: Vec::new(),
        events,
    };
    h.ops = ops;
    h.count_ops()
}

/// A timeout on the victim's slot every 100 ms from `from_ms` until `until_ms`.
fn timeouts(from_ms: u64, until_ms: u64) -> impl Fn(u64, u16) -> Option<OpEvent> {
    move |t, slot| {
        let hit = slot == VICTIM && (from_ms..until_ms).contains(&t) && t % 100 == 0;
        hit.then(|| op(t, 1000, GET, slot, OpOutcome::Unknown(ErrorClass::Timeout)))
    }
}

/// A kill at 10 s, healed at 20 s, whose victim's slot times out until 16 s: the client
/// recovers when the last timeout ends, at 16.9 s.
fn kill() -> (History, Vec<FaultReport>) {
    let h = history(30, vec![injected(10_000, 0, true), healed(20_000, 0)], timeouts(10_000, 16_000));
    let faults = fault_reports(&h, &FailoverConfig::default());
    (h, faults)
}

fn find<'a>(verdicts: &'a [Verdict], name: &str) -> &'a Verdict {
    verdicts.iter().find(|v| v.name == name).unwrap_or_else(|| panic!("no verdict {name:?} in {verdicts:#?}"))
}

#[test]
fn a_failover_within_its_limit_passes_and_one_beyond_fails() {
    let (h, faults) = kill();
    assert_eq!(faults[0].failover_duration_us(), Some(6_900_000));
    let slo = Slo {
        max_failover: Some(Duration::from_secs(10)),
        max_disruption: Some(Duration::from_secs(5)),
        max_error_window: Some(Duration::from_secs(7)),
        ..Slo::default()
    };
    let v = evaluate(&slo, &h, &faults, &Measured::default());
    assert_eq!(v.len(), 3);
    assert_eq!(
        find(&v, "max_failover fault[0] kill redis-1 @10.0s"),
        &Verdict {
            name: "max_failover fault[0] kill redis-1 @10.0s".into(),
            slo: "max_failover".into(),
            limit: "≤ 10s".into(),
            observed: "6.90s".into(),
            outcome: Outcome::Pass,
        }
    );
    let d = find(&v, "max_disruption fault[0] kill redis-1 @10.0s");
    assert_eq!((d.observed.as_str(), d.outcome), ("6.90s", Outcome::Fail));
    let e = find(&v, "max_error_window fault[0] kill redis-1 @10.0s");
    assert_eq!((e.limit.as_str(), e.outcome), ("≤ 7s", Outcome::Pass));
    assert_eq!(overall(&v), Outcome::Fail);
}

#[test]
fn per_fault_slos_pass_without_faults() {
    let h = history(10, vec![], |_, _| None);
    let slo = Slo {
        max_failover: Some(Duration::from_secs(10)),
        max_disruption: Some(Duration::from_secs(5)),
        max_error_window: Some(Duration::from_secs(3)),
        ..Slo::default()
    };
    let v = evaluate(&slo, &h, &[], &Measured::default());
    let got: Vec<_> = v.iter().map(|v| (v.name.as_str(), v.observed.as_str(), v.outcome)).collect();
    assert_eq!(
        got,
        [
            ("max_failover", "no faults", Outcome::Pass),
            ("max_disruption", "no faults", Outcome::Pass),
            ("max_error_window", "no faults", Outcome::Pass),
        ]
    );
    // A fault that was due but could not be injected: nothing to judge, not a pass.
    let mut h = h;
    h.events.push(Event { at_us: 2_000_000, kind: EventKind::FaultError { fault: 0, error: "x".into() } });
    let v = evaluate(&slo, &h, &[], &Measured::default());
    assert!(
        v.iter().all(|v| v.outcome == Outcome::Unknown && v.observed.starts_with("no fault was injected")),
        "{v:#?}"
    );
}

#[test]
fn a_fault_never_recovered_violates_its_limits() {
    let h = history(30, vec![injected(10_000, 0, true)], timeouts(10_000, 30_000));
    let faults = fault_reports(&h, &FailoverConfig::default());
    let slo = Slo {
        max_failover: Some(Duration::from_secs(60)),
        max_error_window: Some(Duration::from_secs(60)),
        p99: vec![("get".into(), Duration::from_millis(5))],
        ..Slo::default()
    };
    let v = evaluate(&slo, &h, &faults, &Measured::default());
    let f = find(&v, "max_failover fault[0] kill redis-1 @10.0s");
    // Within its limit so far, but the client never recovered.
    assert_eq!(f.observed, "≥ 20.90s, not recovered by the end of the run");
    assert_eq!(f.outcome, Outcome::Fail);
    assert_eq!(find(&v, "max_error_window fault[0] kill redis-1 @10.0s").outcome, Outcome::Fail);
    // The fault window runs to the end; the steady state is what came before it.
    assert_eq!(find(&v, "p99 get").outcome, Outcome::Pass);
}

#[test]
fn a_fault_cut_short_by_the_next_one_is_not_recovered() {
    let events = vec![injected(10_000, 0, true), injected(15_000, 1, true)];
    let h = history(30, events, timeouts(10_000, 18_000));
    let faults = fault_reports(&h, &FailoverConfig::default());
    let slo = Slo { max_failover: Some(Duration::from_secs(60)), ..Slo::default() };
    let v = evaluate(&slo, &h, &faults, &Measured::default());
    let first = find(&v, "max_failover fault[0] kill redis-1 @10.0s");
    // Its windows end with the last op that was over before the next injection began (the
    // ones still in flight then are the next fault's to explain): at least 4.9 s.
    assert_eq!(first.observed, "≥ 4.90s, not recovered before the next fault");
    assert_eq!(first.outcome, Outcome::Fail);
    let second = find(&v, "max_failover fault[1] kill redis-1 @15.0s");
    assert_eq!((second.observed.as_str(), second.outcome), ("3.90s", Outcome::Pass));
}

#[test]
fn a_fault_on_no_primary_or_without_impact_passes() {
    let h = history(20, vec![injected(10_000, 0, false), injected(15_000, 1, true)], |_, _| None);
    let faults = fault_reports(&h, &FailoverConfig::default());
    let slo = Slo { max_error_window: Some(Duration::ZERO), ..Slo::default() };
    let v = evaluate(&slo, &h, &faults, &Measured::default());
    let got: Vec<_> = v.iter().map(|v| (v.observed.as_str(), v.outcome)).collect();
    assert_eq!(
        got,
        [("no primary among the targets", Outcome::Pass), ("0s (no client-visible impact)", Outcome::Pass)]
    );
}

#[test]
fn steady_state_percentiles_leave_out_the_warm_up_and_the_fault_windows() {
    let (h, faults) = kill();
    // Over the whole run (and with the warm-up), p99 of get is one of the timeouts.
    assert!(h.totals()[0].latency.value_at_quantile(0.99) >= 500_000);
    let slo = Slo {
        p99: vec![("get".into(), Duration::from_millis(5)), ("set".into(), Duration::from_millis(1))],
        p99_9: vec![("get".into(), Duration::from_millis(5))],
        ..Slo::default()
    };
    let v = evaluate(&slo, &h, &faults, &Measured::default());
    let got: Vec<_> =
        v.iter().map(|v| (v.name.as_str(), v.slo.as_str(), v.observed.as_str(), v.outcome)).collect();
    assert_eq!(
        got,
        [
            ("p99 get", "p99.get", "1.000ms", Outcome::Pass),
            ("p99 set", "p99.set", "2.000ms", Outcome::Fail),
            ("p99.9 get", "p99_9.get", "1.000ms", Outcome::Pass),
        ]
    );
    // The window runs from t0 to the heal at 20 s: intervals 10 to 19 are left out.
    assert_eq!(fault_window(&faults[0]), (10_000_000, 20_000_000));
}

#[test]
fn an_op_without_samples_is_unknown() {
    let (h, faults) = kill();
    let slo = Slo {
        p99: vec![("del".into(), Duration::from_millis(5)), ("gone".into(), Duration::from_millis(5))],
        ..Slo::default()
    };
    let v = evaluate(&slo, &h, &faults, &Measured::default());
    let got: Vec<_> = v.iter().map(|v| (v.observed.as_str(), v.outcome)).collect();
    assert_eq!(
        got,
        [("no samples in steady state", Outcome::Unknown), ("no such op in the history", Outcome::Unknown)]
    );
    assert_eq!(overall(&v), Outcome::Unknown);
}

#[test]
fn counts_are_unknown_until_measured() {
    let (h, faults) = kill();
    let slo = Slo { max_lost_writes: Some(0), max_over_admissions: Some(2), ..Slo::default() };
    let v = evaluate(&slo, &h, &faults, &Measured::default());
    assert!(v.iter().all(|v| v.outcome == Outcome::Unknown && v.observed == "not measured"), "{v:#?}");
    let measured = Measured { lost_writes: Some(3), over_admissions: Some(2), send_lag_max_us: None };
    let v = evaluate(&slo, &h, &faults, &measured);
    let got: Vec<_> =
        v.iter().map(|v| (v.name.as_str(), v.limit.as_str(), v.observed.as_str(), v.outcome)).collect();
    assert_eq!(
        got,
        [
            ("max_lost_writes", "≤ 0", "3 lost", Outcome::Fail),
            ("max_over_admissions", "≤ 2", "2 windows over the limit", Outcome::Pass),
        ]
    );
}

#[test]
fn send_lag_is_judged_on_the_largest_lag_and_unknown_unmeasured() {
    let (h, faults) = kill();
    let slo = Slo { max_send_lag: Some(Duration::from_millis(50)), ..Slo::default() };
    let judged = |lag: Option<u64>| {
        let v = evaluate(&slo, &h, &faults, &Measured { send_lag_max_us: lag, ..Measured::default() });
        (v[0].observed.clone(), v[0].outcome)
    };
    assert_eq!(judged(None), ("not measured".to_string(), Outcome::Unknown));
    assert_eq!(judged(Some(50_000)).1, Outcome::Pass, "the limit is inclusive");
    assert_eq!(judged(Some(50_001)).1, Outcome::Fail);
}

#[test]
fn throughput_counts_the_successful_ops_of_the_measured_part() {
    let (h, faults) = kill();
    // Successful ops after the warm-up, over the 29 s measured: the failed ones of the
    // failover do not count (an open-loop schedule completes its rate whatever happens).
    let ok: u64 = h.totals().iter().map(|s| s.ok).sum();
    let all: u64 = h.totals().iter().map(OpStats::count).sum();
    assert!(ok < all, "the history has failed ops");
    let rate = ok as f64 / 29.0;
    let slo = Slo { min_throughput: Some(rate.floor()), ..Slo::default() };
    let v = evaluate(&slo, &h, &faults, &Measured::default());
    assert_eq!(v[0].outcome, Outcome::Pass, "{v:#?}");
    assert!(v[0].observed.ends_with("ops/s in all)"), "{}", v[0].observed);
    // Every op of every outcome would pass this limit; the successful ones do not.
    let limit = rate.ceil() + 1.0;
    assert!(all as f64 / 29.0 > limit);
    let slo = Slo { min_throughput: Some(limit), ..Slo::default() };
    let v = evaluate(&slo, &h, &faults, &Measured::default());
    assert_eq!((v[0].limit.as_str(), v[0].outcome), (format!("≥ {limit} ok/s").as_str(), Outcome::Fail));
    let mut short = h.clone();
    short.elapsed = Duration::from_millis(500);
    assert_eq!(evaluate(&slo, &short, &faults, &Measured::default())[0].outcome, Outcome::Unknown);
}

#[test]
fn an_empty_slo_gives_no_verdicts() {
    let (h, faults) = kill();
    assert!(evaluate(&Slo::default(), &h, &faults, &Measured::default()).is_empty());
    assert_eq!(overall(&[]), Outcome::Pass);
}

#[test]
fn verdicts_compose_fail_over_unknown_over_pass() {
    let v = |outcome| Verdict {
        name: String::new(),
        slo: String::new(),
        limit: String::new(),
        observed: String::new(),
        outcome,
    };
    use Outcome::{Fail, Pass, Unknown};
    assert_eq!(overall(&[v(Pass), v(Pass)]), Pass);
    assert_eq!(overall(&[v(Pass), v(Unknown), v(Pass)]), Unknown);
    assert_eq!(overall(&[v(Unknown), v(Fail), v(Pass)]), Fail);
    assert_eq!(overall(&[v(Fail), v(Unknown)]), Fail);
}
