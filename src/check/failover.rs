//! Failover phases per fault, from one history: `t0` (injected), `detected` (a node marks
//! the victim failed), `elected` (a replica reports itself primary), `converged` (every
//! other reachable node reports `cluster_state:ok` and the new owner), `client_recovered`
//! (end of the client-visible disruption on the victim's slots), `learned` (the driver's own
//! slot table names the new primary and no victim), plus the error and
//! disruption windows on the victim's slots and, apart, on every other slot.
//!
//! Length: about 250 lines are unit tests on crafted histories; the check itself is ~380.

use serde::Serialize;

use super::windows::{Badness, Window, windows};
use crate::history::{EventKind, History, OpEvent, Outcome};

/// Settings of the failover checks.
#[derive(Debug, Clone, Copy)]
pub struct FailoverConfig {
    /// The least latency that counts as a disruption; the threshold used is the larger of
    /// this and `p99_factor` × the p99 before the fault.
    pub min_disruption_us: u64,
    /// See `min_disruption_us`.
    pub p99_factor: u64,
    /// Bad ops closer than this share a window.
    pub merge_gap_us: u64,
    /// Disruption that begins after the client has been fine for this long, once the cluster
    /// converged, is not the fault's (a GC pause, a noisy neighbour): the client recovered
    /// before it.
    pub settled_gap_us: u64,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            min_disruption_us: 100_000,
            p99_factor: 10,
            merge_gap_us: 500_000,
            settled_gap_us: 3_000_000,
        }
    }
}

/// What the client saw on a set of slots during one fault.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Impact {
    /// The error windows, in order.
    pub error_windows: Vec<Window>,
    /// The disruption windows (errors or slow ops), in order.
    pub disruption_windows: Vec<Window>,
}

impl Impact {
    /// From the first error window's start to the last one's end (0 without errors).
    pub fn error_span_us(&self) -> u64 {
        span(&self.error_windows)
    }

    /// From the first disruption's start to the last one's end.
    pub fn disruption_span_us(&self) -> u64 {
        span(&self.disruption_windows)
    }

    /// Errors in all windows, by class summed.
    pub fn errors(&self) -> u64 {
        self.error_windows.iter().map(Window::error_count).sum()
    }
}

fn span(w: &[Window]) -> u64 {
    match (w.first(), w.last()) {
        (Some(a), Some(b)) => b.end_us - a.start_us,
        _ => 0,
    }
}

/// One fault, measured.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct FaultReport {
    /// The fault's number in the chaos file.
    pub fault: usize,
    /// Which repetition.
    pub repeat: u32,
    /// The action.
    pub action: String,
    /// The nodes hit.
    pub targets: Vec<String>,
    /// Those of them that were primaries.
    pub victims: Vec<String>,
    /// Injected (the injection returned), µs since the run began; for a graceful stop
    /// (`stop`, `shutdown-failover`) when it began: the node hands its slots over, or stops
    /// answering, while the Docker call waits for it to exit.
    pub t0_us: u64,
    /// When the injection began.
    pub began_us: u64,
    /// Healed, if it was within the run.
    pub healed_us: Option<u64>,
    /// First node to mark a victim failed, by the poller.
    pub detected_us: Option<u64>,
    /// The same, by the nodes' own logs ("Marking node … as failing").
    pub detected_log_us: Option<u64>,
    /// First replica to report itself primary, by the poller.
    pub elected_us: Option<u64>,
    /// Which node it was.
    pub elected_node: Option<String>,
    /// The same, by the nodes' logs ("Failover election won").
    pub elected_log_us: Option<u64>,
    /// Every other reachable node reports `cluster_state:ok` and the new primary.
    pub converged_us: Option<u64>,
    /// The driver's slot table first named the elected node serving slots and no victim
    /// serving any (a `TableChanged` event): when the client learned of the failover. Looked
    /// for from `t0` on, not from `elected_us`: the poller sees the election up to a poll
    /// later than it happened, and the driver may learn of it in between.
    pub learned_us: Option<u64>,
    /// Whether the client's slot table was seen: slotstorm's own client's is, a real
    /// library's is not (`learned_us` is then not measured). Absent in older files: seen.
    #[serde(default = "seen")]
    pub table_seen: bool,
    /// End of the client-visible disruption on the victims' slots (failed ops, and ops the
    /// client took longer than the threshold to complete from their send).
    pub client_recovered_us: Option<u64>,
    /// When ops were no longer sent late: the send of the last op, after `t0`, that waited
    /// longer than the threshold to be sent (a full pool, or the driver's own in-flight
    /// limit). None when every op was sent on time.
    pub backlog_drained_us: Option<u64>,
    /// Ops of any slot that waited longer than the threshold to be sent, after `t0`.
    pub delayed_sends: u64,
    /// The slowness that counted as disruption, µs.
    pub disruption_threshold_us: u64,
    /// Ops on the victims' slots acknowledged between `t0` and the election (or the next
    /// fault): writes a cut-off primary accepts there are the ones a split brain loses.
    pub acked_on_victim_slots_before_election: u64,
    /// What the client saw on the victims' slots.
    pub victim_slots: Impact,
    /// What it saw on every other slot (with `cluster-require-full-coverage yes`, every
    /// slot goes down until the election).
    pub other_slots: Impact,
    /// What the engine's rules predict for it, beside the measurement ([`super::predict`]);
    /// known where the cluster's engine and node timeout are (an embedded cluster).
    #[serde(default)]
    pub predicted: Option<super::predict::Predicted>,
}

/// Every fault of `history` measured, as a run and a report of it show them: with what the
/// rules predict for `cluster`, and whether `client` (run.json's `client`) had a slot table
/// slotstorm could see (its own; a real library's is inside the library).
pub fn fault_reports_of(
    history: &History,
    cluster: &crate::report::model::ClusterInfo,
    client: &str,
) -> Vec<FaultReport> {
    let mut faults = fault_reports(history, &FailoverConfig::default());
    for f in &mut faults {
        f.predicted = super::predict::failover(cluster, f);
        f.table_seen = client == crate::spec::ClientLibrary::Slotstorm.name();
    }
    faults
}

/// A table seen, in files written before [`FaultReport::table_seen`].
fn seen() -> bool {
    true
}

/// Fault reports for tests elsewhere.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::FaultReport;

    /// A fault on redis-3 of `action` at `t0_us`, detected and elected when given.
    pub(crate) fn fault(
        action: &str,
        t0_us: u64,
        detected_us: Option<u64>,
        elected_us: Option<u64>,
    ) -> FaultReport {
        FaultReport {
            action: action.into(),
            targets: vec!["redis-3".into()],
            victims: vec!["redis-3".into()],
            t0_us,
            began_us: t0_us,
            detected_us,
            elected_us,
            ..FaultReport::default()
        }
    }
}

impl FaultReport {
    /// Whether a replica took over.
    pub fn failed_over(&self) -> bool {
        self.elected_us.is_some()
    }

    /// The headline failover duration: `client_recovered − t0`.
    pub fn failover_duration_us(&self) -> Option<u64> {
        self.client_recovered_us.map(|r| r - self.t0_us)
    }
}

/// Measure every fault in `history`.
pub fn fault_reports(history: &History, config: &FailoverConfig) -> Vec<FaultReport> {
    let injected: Vec<(u64, &EventKind)> = history
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::FaultInjected { .. }))
        .map(|e| (e.at_us, &e.kind))
        .collect();
    let end_us = history.elapsed.as_micros() as u64;
    injected
        .iter()
        .enumerate()
        .map(|(i, (t0, kind))| {
            let next = injected.get(i + 1);
            // What happens once the next injection began is the next fault's (a graceful
            // stop's handover happens inside its Docker call).
            let horizon = next.map_or(end_us, |(t, k)| match k {
                EventKind::FaultInjected { began_us, .. } => (*began_us).min(*t),
                _ => *t,
            });
            // An op still in flight when the next injection began may fail because of that
            // one: it is not this fault's.
            let cutoff = next.map_or(u64::MAX, |(_, k)| match k {
                EventKind::FaultInjected { began_us, .. } => *began_us,
                _ => horizon,
            });
            one_fault(history, config, *t0, (horizon, cutoff), kind)
        })
        .collect()
}

fn one_fault(
    history: &History,
    config: &FailoverConfig,
    t0: u64,
    (horizon, cutoff): (u64, u64),
    kind: &EventKind,
) -> FaultReport {
    let EventKind::FaultInjected { began_us, fault, repeat, action, targets, primaries, slots } = kind else {
        unreachable!("only injections are measured")
    };
    let victims: Vec<String> =
        targets.iter().zip(primaries).filter(|(_, p)| **p).map(|(t, _)| t.clone()).collect();
    let t0 = if matches!(action.as_str(), "stop" | "shutdown-failover") { (*began_us).min(t0) } else { t0 };
    let in_window = |at: u64| at >= t0 && at < horizon;
    let events = || history.events.iter().filter(|e| in_window(e.at_us));
    let is_victim = |n: &str| victims.iter().any(|v| v == n);

    let healed_us = events()
        .find(|e| matches!(&e.kind, EventKind::FaultHealed { fault: f, repeat: r, .. } if f == fault && r == repeat))
        .map(|e| e.at_us);
    let detected_us = events()
        .find(|e| matches!(&e.kind, EventKind::Flagged { subject, flag, .. } if flag == "fail" && is_victim(subject)))
        .map(|e| e.at_us);
    let detected_log_us = events()
        .find(|e| {
            matches!(&e.kind, EventKind::Log { what, line, .. }
                if what == "marked_failing" && victims.iter().any(|v| line.contains(&format!("[{v}]"))))
        })
        .map(|e| e.at_us);
    let elected = if victims.is_empty() {
        None
    } else {
        events().find_map(|e| match &e.kind {
            EventKind::Role { node, role, slots, .. }
                if role == "primary" && *slots > 0 && !is_victim(node) =>
            {
                // A node that was a primary all along reports its role when first seen;
                // only a change after t0 by a node that was a replica counts.
                was_replica_before(history, node, e.at_us).then(|| (e.at_us, node.clone()))
            }
            _ => None,
        })
    };
    let elected_log_us = events()
        .find(|e| matches!(&e.kind, EventKind::Log { what, node, .. } if what == "election_won" && !is_victim(node)))
        .map(|e| e.at_us);
    let converged_us =
        elected.as_ref().and_then(|(at, node)| converged(history, &victims, node, *at, horizon));
    let learned_us = elected.as_ref().and_then(|(_, new_primary)| {
        events().find_map(|e| match &e.kind {
            EventKind::TableChanged { owners, .. }
                if owners.iter().any(|(n, c)| n == new_primary && *c > 0)
                    && !owners.iter().any(|(n, c)| is_victim(n) && *c > 0) =>
            {
                Some(e.at_us)
            }
            _ => None,
        })
    });

    let in_victim_slots = |o: &OpEvent| slots.iter().any(|&(a, b)| a <= o.slot && o.slot <= b);
    let threshold = disruption_threshold(history, config, t0);
    let ops_after =
        || history.ops.iter().filter(|o| o.end_us() >= t0 && o.start_us < horizon && o.end_us() < cutoff);
    let impact = |keep: &dyn Fn(&OpEvent) -> bool| Impact {
        error_windows: windows(ops_after(), keep, Badness::Errors, config.merge_gap_us),
        disruption_windows: windows(
            ops_after(),
            keep,
            Badness::ErrorsOrSlowerThan(threshold),
            config.merge_gap_us,
        ),
    };
    let victim_slots = impact(&in_victim_slots);
    let other_slots = impact(&|o: &OpEvent| !in_victim_slots(o));
    // The fault is over for the cluster once it converged (or, without a failover, once it
    // was healed): the client recovered at the end of the disruption that reaches past that
    // moment, including any that follows within `settled_gap_us`; a later disruption is
    // someone else's.
    let settled_at = converged_us.or(elected.as_ref().map(|(at, _)| *at)).or(healed_us).unwrap_or(t0);
    // A heal after the cluster settled (the killed node started again, rejoining as a
    // replica) brings its own disruption: a machine-wide stall while the container starts,
    // for one. That is the heal's, not the failover's.
    let before_heal: Vec<Window> = match healed_us.filter(|&h| h > settled_at) {
        Some(h) => victim_slots.disruption_windows.iter().filter(|w| w.start_us < h).cloned().collect(),
        None => victim_slots.disruption_windows.clone(),
    };
    let client_recovered_us = recovery_end(&before_heal, settled_at, config.settled_gap_us);
    let late: Vec<&OpEvent> = history
        .ops
        .iter()
        .filter(|o| o.sent_us >= t0 && o.sent_us < horizon && o.send_lag_us() > threshold)
        .collect();
    let backlog_drained_us = late.iter().map(|o| o.sent_us).max();
    // Until the election; without one, until the heal (every op is kept until 30 s after
    // it, `history::Recording`), else the next fault.
    let until = elected.as_ref().map(|(at, _)| *at).or(healed_us).unwrap_or(horizon);
    let acked = history
        .ops
        .iter()
        .filter(|o| o.start_us >= t0 && o.start_us + o.latency_us < until)
        .filter(|o| o.outcome == Outcome::Ok && in_victim_slots(o))
        .count() as u64;
    let acked = if victims.is_empty() { 0 } else { acked };
    FaultReport {
        fault: *fault,
        repeat: *repeat,
        action: action.clone(),
        targets: targets.clone(),
        victims,
        t0_us: t0,
        began_us: *began_us,
        healed_us,
        detected_us,
        detected_log_us,
        elected_us: elected.as_ref().map(|(at, _)| *at),
        elected_node: elected.map(|(_, n)| n),
        elected_log_us,
        converged_us,
        learned_us,
        table_seen: true,
        client_recovered_us,
        backlog_drained_us,
        delayed_sends: late.len() as u64,
        disruption_threshold_us: threshold,
        acked_on_victim_slots_before_election: acked,
        victim_slots,
        other_slots,
        predicted: None,
    }
}

/// The end of the disruption `windows` (in order) that lasts past `settled_at` (or starts
/// within `gap` after it), joined with those that follow it within `gap`; without one, the
/// end of the last window before `settled_at`: the client recovered before the cluster
/// settled, and what comes later is not the fault's.
fn recovery_end(windows: &[Window], settled_at: u64, gap: u64) -> Option<u64> {
    let before = || windows.iter().rev().find(|w| w.end_us < settled_at).map(|w| w.end_us);
    let Some(first) = windows.iter().position(|w| w.end_us >= settled_at) else {
        return before();
    };
    if windows[first].start_us > settled_at + gap {
        return before();
    }
    let mut end = windows[first].end_us;
    for w in &windows[first + 1..] {
        if w.start_us > end + gap {
            break;
        }
        end = end.max(w.end_us);
    }
    Some(end)
}

/// Whether `node`'s last reported role before `at` was replica.
fn was_replica_before(history: &History, node: &str, at: u64) -> bool {
    history.events.iter().rev().filter(|e| e.at_us < at).find_map(|e| match &e.kind {
        EventKind::Role { node: n, role, .. } if n == node => Some(role.as_str()),
        _ => None,
    }) == Some("replica")
}

/// The first moment from `from` on when every node that is neither a victim nor
/// unreachable reports `cluster_state:ok` and sees `new_primary` serving slots and no victim
/// serving any.
fn converged(
    history: &History,
    victims: &[String],
    new_primary: &str,
    from: u64,
    horizon: u64,
) -> Option<u64> {
    use std::collections::BTreeMap;
    let mut state: BTreeMap<&str, &str> = BTreeMap::new();
    let mut owners_ok: BTreeMap<&str, bool> = BTreeMap::new();
    let mut reachable: BTreeMap<&str, bool> = BTreeMap::new();
    let is_victim = |n: &str| victims.iter().any(|v| v == n);
    for e in history.events.iter().filter(|e| e.at_us < horizon) {
        match &e.kind {
            EventKind::State { node, state: s } => {
                state.insert(node, s);
            }
            EventKind::Owners { node, owners } => {
                let ok = owners.iter().any(|(n, c)| n == new_primary && *c > 0)
                    && !owners.iter().any(|(n, _)| is_victim(n));
                owners_ok.insert(node, ok);
            }
            EventKind::Reachable { node, reachable: r } => {
                reachable.insert(node, *r);
            }
            _ => continue,
        }
        if e.at_us < from {
            continue;
        }
        let nodes = state.keys().filter(|n| !is_victim(n) && reachable.get(*n).copied().unwrap_or(true));
        let mut any = false;
        let mut all = true;
        for n in nodes {
            any = true;
            all &= state.get(n) == Some(&"ok") && owners_ok.get(n).copied().unwrap_or(false);
        }
        if any && all {
            return Some(e.at_us);
        }
    }
    None
}

/// The larger of the configured minimum and `p99_factor` × the p99 of the client's time (send
/// to end) over the 10 s before `t0` (after the warm-up).
fn disruption_threshold(history: &History, config: &FailoverConfig, t0: u64) -> u64 {
    let warmup = history.warmup.as_micros() as u64;
    let from = t0.saturating_sub(10_000_000).max(warmup);
    let mut h = crate::history::new_histogram();
    for o in history.ops.iter().filter(|o| o.start_us >= from && o.end_us() < t0) {
        h.saturating_record(o.service_us().max(1));
    }
    let p99 = if h.is_empty() { 0 } else { h.value_at_quantile(0.99) };
    config.min_disruption_us.max(p99 * config.p99_factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{ErrorClass, Event};
    use std::time::{Duration, SystemTime};

    fn ev(at_ms: u64, kind: EventKind) -> Event {
        Event { at_us: at_ms * 1000, kind }
    }

    fn op(start_ms: u64, latency_ms: u64, outcome: Outcome, slot: u16) -> OpEvent {
        OpEvent::sample(start_ms, latency_ms, 0, slot, outcome)
    }

    fn s(x: &str) -> String {
        x.to_string()
    }

    fn role(at: u64, node: &str, role: &str, slots: u32) -> Event {
        ev(at, EventKind::Role { node: s(node), role: s(role), primary: None, slots })
    }

    fn state(at: u64, node: &str, st: &str) -> Event {
        ev(at, EventKind::State { node: s(node), state: s(st) })
    }

    fn owners(at: u64, node: &str, o: &[(&str, u32)]) -> Event {
        ev(at, EventKind::Owners { node: s(node), owners: o.iter().map(|(n, c)| (s(n), *c)).collect() })
    }

    /// A kill of redis-1 (slots 0-99 here) at 10 s; redis-2 stays primary of 100-199;
    /// redis-3 is redis-1's replica and wins at 12 s.
    fn kill_history(ops: Vec<OpEvent>) -> History {
        let mut events = vec![
            role(0, "redis-1", "primary", 100),
            role(0, "redis-2", "primary", 100),
            role(0, "redis-3", "replica", 0),
            state(0, "redis-2", "ok"),
            state(0, "redis-3", "ok"),
            owners(0, "redis-2", &[("redis-1", 100), ("redis-2", 100)]),
            owners(0, "redis-3", &[("redis-1", 100), ("redis-2", 100)]),
            ev(
                10_000,
                EventKind::FaultInjected {
                    began_us: 9_990_000,
                    fault: 0,
                    repeat: 0,
                    action: s("kill"),
                    targets: vec![s("redis-1")],
                    primaries: vec![true],
                    slots: vec![(0, 99)],
                },
            ),
            ev(10_050, EventKind::Reachable { node: s("redis-1"), reachable: false }),
            ev(
                11_000,
                EventKind::Flagged { observer: s("redis-2"), subject: s("redis-1"), flag: s("fail?") },
            ),
            ev(11_200, EventKind::Flagged { observer: s("redis-2"), subject: s("redis-1"), flag: s("fail") }),
            ev(
                11_190,
                EventKind::Log {
                    node: s("redis-2"),
                    what: s("marked_failing"),
                    line: s("Marking node x as failing [redis-1]"),
                },
            ),
            state(11_210, "redis-2", "fail"),
            state(11_220, "redis-3", "fail"),
            role(12_000, "redis-3", "primary", 100),
            owners(12_000, "redis-3", &[("redis-2", 100), ("redis-3", 100)]),
            state(12_050, "redis-3", "ok"),
            owners(12_100, "redis-2", &[("redis-2", 100), ("redis-3", 100)]),
            state(12_150, "redis-2", "ok"),
            ev(
                20_000,
                EventKind::FaultHealed {
                    fault: 0,
                    repeat: 0,
                    action: s("kill"),
                    targets: vec![s("redis-1")],
                },
            ),
        ];
        events.sort_by_key(|e| e.at_us);
        History {
            op_names: vec![s("set")],
            interval: Duration::from_secs(1),
            warmup: Duration::from_secs(1),
            started_at: SystemTime::UNIX_EPOCH,
            elapsed: Duration::from_secs(30),
            intervals: Default::default(),
            ops,
            errors: vec![],
            events,
        }
    }

    #[test]
    fn phases_of_a_primary_kill_are_found_and_ordered() {
        let mut ops = Vec::new();
        for t in (5_000..10_000).step_by(10) {
            ops.push(op(t, 1, Outcome::Ok, 5));
        }
        // The victim's slots: timeouts while the node is gone, CLUSTERDOWN until elected.
        ops.push(op(10_010, 1000, Outcome::Unknown(ErrorClass::Timeout), 5));
        ops.push(op(11_300, 1, Outcome::Fail(ErrorClass::ClusterDown), 5));
        ops.push(op(12_200, 2, Outcome::Ok, 5));
        // Another shard: CLUSTERDOWN while the cluster is down (full coverage).
        ops.push(op(11_250, 1, Outcome::Fail(ErrorClass::ClusterDown), 150));
        ops.push(op(11_600, 1, Outcome::Fail(ErrorClass::ClusterDown), 150));
        let h = kill_history(ops);
        let r = &fault_reports(&h, &FailoverConfig::default())[0];
        assert_eq!(r.victims, vec![s("redis-1")]);
        assert_eq!(r.t0_us, 10_000_000);
        assert_eq!(r.detected_us, Some(11_200_000));
        assert_eq!(r.detected_log_us, Some(11_190_000));
        assert_eq!(r.elected_us, Some(12_000_000));
        assert_eq!(r.elected_node.as_deref(), Some("redis-3"));
        assert_eq!(r.converged_us, Some(12_150_000));
        assert_eq!(r.client_recovered_us, Some(11_301_000));
        assert_eq!(r.healed_us, Some(20_000_000));
        let phases = [r.t0_us, r.detected_us.unwrap(), r.elected_us.unwrap(), r.converged_us.unwrap()];
        assert!(phases.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(r.victim_slots.errors(), 2);
        assert_eq!(r.victim_slots.error_span_us(), 11_301_000 - 10_010_000);
        assert_eq!(r.other_slots.errors(), 2, "full coverage: the other shard failed too");
        assert_eq!(r.other_slots.error_windows.len(), 1);
        assert_eq!(r.failover_duration_us(), Some(1_301_000));
        assert_eq!(r.acked_on_victim_slots_before_election, 0);
    }

    #[test]
    fn the_ops_a_run_keeps_give_the_same_figures_as_every_op() {
        // 199 s of ops every 10 ms on the victim's slot and another, a kill at 10 s healed at
        // 20 s, and trouble far from it (a slow op, a failure, a late send at 60-70 s).
        let mut ops = Vec::new();
        for t in (1_000..200_000).step_by(10) {
            ops.push(op(t, 1 + t % 7, Outcome::Ok, if t % 20 == 0 { 5 } else { 150 }));
        }
        ops.push(op(10_015, 1000, Outcome::Unknown(ErrorClass::Timeout), 5));
        ops.push(op(11_305, 1, Outcome::Fail(ErrorClass::ClusterDown), 5));
        ops.push(op(11_255, 1, Outcome::Fail(ErrorClass::ClusterDown), 150));
        ops.push(op(12_305, 400, Outcome::Ok, 5));
        ops.push(op(60_005, 250, Outcome::Ok, 150));
        ops.push(op(65_005, 1, Outcome::Fail(ErrorClass::Other), 150));
        let mut late = op(70_005, 30, Outcome::Ok, 5);
        late.sent_us += 20_000;
        ops.push(late);
        ops.sort_by_key(|o| o.start_us);
        let mut full = kill_history(ops);
        full.elapsed = Duration::from_secs(200);
        let full = full.count_ops();
        let rule = crate::history::Recording::new(
            vec![false],
            &[(Duration::from_secs(10), Duration::from_secs(20))],
            &[vec![(0, 99)], vec![(100, 16383)]],
        );
        let kept =
            History { ops: full.ops.iter().filter(|o| rule.keeps(o)).cloned().collect(), ..full.clone() };
        assert!(kept.ops.len() * 3 < full.ops.len(), "{} of {} kept", kept.ops.len(), full.ops.len());
        let config = FailoverConfig::default();
        let json = |h: &History| serde_json::to_value(fault_reports(h, &config)).unwrap();
        assert_eq!(json(&kept), json(&full));
        let r = &fault_reports(&kept, &config)[0];
        assert!(r.acked_on_victim_slots_before_election > 0 && r.client_recovered_us.is_some(), "{r:?}");
        // The schedule check agrees too: the late send far from the fault is kept.
        let in_flight = crate::spec::InFlight { limit: 16, source: crate::spec::LimitSource::Workers };
        let schedule =
            |h: &History| crate::check::schedule::schedule_report(h, crate::spec::Pacing::Closed, in_flight);
        assert_eq!(schedule(&kept), schedule(&full));
        assert_eq!(schedule(&kept).send_lag_max_us, 20_000);
    }

    #[test]
    fn an_op_the_next_fault_failed_is_not_the_previous_ones() {
        // A second kill of the same slots' new owner at 30 s: an op sent just before its
        // injection returned (after it began) times out because of it, and is its own.
        let mut ops = vec![
            op(10_010, 1000, Outcome::Unknown(ErrorClass::Timeout), 5),
            op(11_300, 1, Outcome::Fail(ErrorClass::ClusterDown), 5),
            op(12_200, 2, Outcome::Ok, 5),
            op(29_995, 1000, Outcome::Unknown(ErrorClass::Timeout), 5),
        ];
        ops.push(op(31_500, 1, Outcome::Fail(ErrorClass::ClusterDown), 5));
        let mut h = kill_history(ops);
        h.elapsed = Duration::from_secs(40);
        h.events.push(ev(
            30_000,
            EventKind::FaultInjected {
                began_us: 29_990_000,
                fault: 0,
                repeat: 1,
                action: s("kill"),
                targets: vec![s("redis-3")],
                primaries: vec![true],
                slots: vec![(0, 99)],
            },
        ));
        h.events.sort_by_key(|e| e.at_us);
        let r = fault_reports(&h, &FailoverConfig::default());
        assert_eq!(r[0].victim_slots.error_span_us(), 11_301_000 - 10_010_000, "{:?}", r[0].victim_slots);
        assert_eq!(r[1].victim_slots.errors(), 2, "{:?}", r[1].victim_slots);
    }

    fn table(at: u64, source: &str, o: &[(&str, u32)]) -> Event {
        ev(
            at,
            EventKind::TableChanged {
                source: s(source),
                owners: o.iter().map(|(n, c)| (s(n), *c)).collect(),
            },
        )
    }

    #[test]
    fn the_client_learned_of_the_failover_when_its_table_named_the_new_primary_and_no_victim() {
        let mut h = kill_history(vec![]);
        h.events.extend([
            table(0, "connect", &[("redis-1", 100), ("redis-2", 100)]),
            // A refresh during the outage: same owners as before, the victim still listed.
            table(10_500, "refresh", &[("redis-1", 99), ("redis-2", 101)]),
            // The new primary beside the victim (a half-merged table) is not yet learned.
            table(12_030, "moved", &[("redis-1", 50), ("redis-2", 100), ("redis-3", 50)]),
            table(12_080, "refresh", &[("redis-2", 100), ("redis-3", 100)]),
            table(12_500, "refresh", &[("redis-2", 101), ("redis-3", 99)]),
        ]);
        h.events.sort_by_key(|e| e.at_us);
        let r = &fault_reports(&h, &FailoverConfig::default())[0];
        assert_eq!(r.learned_us, Some(12_080_000));

        // Learned before the poller saw the election (it polls): still the learning.
        let mut early = kill_history(vec![]);
        early.events.push(table(11_990, "refresh", &[("redis-2", 100), ("redis-3", 100)]));
        early.events.sort_by_key(|e| e.at_us);
        assert_eq!(fault_reports(&early, &FailoverConfig::default())[0].learned_us, Some(11_990_000));

        // Never learned within the fault's horizon, or no failover at all: none.
        let mut never = kill_history(vec![]);
        never.events.push(table(25_000, "refresh", &[("redis-1", 100), ("redis-2", 100)]));
        never.events.sort_by_key(|e| e.at_us);
        assert_eq!(fault_reports(&never, &FailoverConfig::default())[0].learned_us, None);
        let mut none = kill_history(vec![]);
        none.events.retain(|e| !matches!(&e.kind, EventKind::Role { node, .. } if node == "redis-3"));
        none.events.push(table(12_080, "refresh", &[("redis-2", 100), ("redis-3", 100)]));
        none.events.sort_by_key(|e| e.at_us);
        let r = &fault_reports(&none, &FailoverConfig::default())[0];
        assert_eq!((r.elected_us, r.learned_us), (None, None));
    }

    #[test]
    fn a_late_unrelated_stall_does_not_stretch_the_recovery() {
        let mut ops = Vec::new();
        for t in (5_000..30_000).step_by(10) {
            ops.push(op(t, 1, Outcome::Ok, 5));
        }
        // Slow until 12.5 s (past convergence at 12.15 s), a stall 1 s later (within the
        // settled gap: still the fault's), then fine until a stall at 25 s (not the fault's).
        ops.push(op(10_010, 2490, Outcome::Unknown(ErrorClass::Timeout), 5));
        ops.push(op(13_500, 400, Outcome::Ok, 5));
        ops.push(op(25_000, 900, Outcome::Ok, 5));
        ops.sort_by_key(|o| o.start_us);
        let h = kill_history(ops);
        let r = &fault_reports(&h, &FailoverConfig::default())[0];
        assert_eq!(r.victim_slots.disruption_windows.len(), 3);
        assert_eq!(r.client_recovered_us, Some(13_900_000));
        let windows = &r.victim_slots.disruption_windows;
        assert_eq!(
            recovery_end(windows, 12_150_000, 0),
            Some(12_500_000),
            "no gap: the first window past it"
        );
        assert_eq!(recovery_end(windows, 30_000_000, 3_000_000), Some(25_900_000), "none past it: the last");
        // The client recovered before the cluster settled (at 14 s); the stall at 25 s is
        // far from both.
        assert_eq!(recovery_end(windows, 14_000_000, 3_000_000), Some(13_900_000));
        assert_eq!(recovery_end(&windows[2..], 14_000_000, 3_000_000), None, "only an unrelated stall");
        assert_eq!(recovery_end(&[], 1, 1), None);
    }

    #[test]
    fn a_disruption_after_a_heal_that_followed_the_failover_is_the_heals() {
        let mut ops = Vec::new();
        for t in (5_000..30_000).step_by(10) {
            ops.push(op(t, 1, Outcome::Ok, 5));
        }
        // Slow until 12.5 s, stalls 1 s apart until 18 s (each within the settled gap of the
        // last), healed at 20 s, then a stall at 20.2 s: within the gap too, but the heal's.
        ops.push(op(10_010, 2490, Outcome::Unknown(ErrorClass::Timeout), 5));
        for start in [13_500, 15_500, 17_500] {
            ops.push(op(start, 500, Outcome::Ok, 5));
        }
        ops.push(op(20_200, 200, Outcome::Ok, 5));
        ops.sort_by_key(|o| o.start_us);
        let r = &fault_reports(&kill_history(ops), &FailoverConfig::default())[0];
        assert_eq!(r.healed_us, Some(20_000_000));
        assert_eq!(r.victim_slots.disruption_windows.len(), 5, "the heal's stall is still a disruption");
        assert_eq!(r.client_recovered_us, Some(18_000_000));
    }

    #[test]
    fn a_pause_without_promotion_reports_no_failover() {
        let mut h = kill_history(vec![op(10_100, 3000, Outcome::Ok, 5)]);
        h.events.retain(|e| match &e.kind {
            EventKind::Role { node, .. } => node != "redis-3" || e.at_us == 0,
            EventKind::Flagged { flag, .. } => flag != "fail",
            _ => true,
        });
        let r = &fault_reports(&h, &FailoverConfig::default())[0];
        assert!(!r.failed_over());
        assert_eq!(r.converged_us, None);
        assert!(r.victim_slots.error_windows.is_empty());
        // A 3 s stall with no error is a disruption all the same.
        assert_eq!(r.client_recovered_us, Some(13_100_000));
    }

    #[test]
    fn the_disruption_threshold_follows_the_pre_fault_p99() {
        let mut ops = Vec::new();
        for t in (2_000..10_000).step_by(10) {
            ops.push(op(t, 30, Outcome::Ok, 5));
        }
        let h = kill_history(ops);
        let r = &fault_reports(&h, &FailoverConfig::default())[0];
        // 10 × a p99 of 30 ms, within the histogram's 3 significant digits.
        let t = r.disruption_threshold_us as f64;
        assert!((t - 300_000.0).abs() <= 300.0, "{t}");
    }
}
