//! What the engine's own rules predict for a fault on a primary, beside what was measured,
//! so a report shows where the time went and when something got in the way.
//!
//! A primary that stops answering is flagged `PFAIL` by a peer once a ping to it has gone
//! unanswered for `cluster-node-timeout`; the first ping after the fault leaves within half
//! a node timeout (a node pings any peer it has not heard from for that long), so `PFAIL`
//! comes between 1 and 1.5 node timeouts after the fault, and `FAIL` once a majority of
//! primaries has said so in gossip, which rides on pings too (up to half a node timeout
//! more): 1 to 2 node timeouts, plus some hundred ms. The election ranges assume one
//! replica per primary and one primary failing (rank 0). Its replica then waits before it
//! asks for votes: Redis 500 ms plus a random 0–500 ms (plus a second per rank); Valkey
//! `min(node timeout / 30, 500 ms)` plus a random share of that (the best-ranked replica
//! may start at once). A graceful handover (`SHUTDOWN FAILOVER`, or a stop with Valkey's
//! `shutdown-on-sigterm failover`) needs no detection: the primary pauses writes, waits for
//! a replica to acknowledge its offset (replicas acknowledge once a second, on their
//! replication cron, so the wait is anywhere up to a second; the node logs it between
//! "Waiting for replicas before shutting down" and "replicas are in sync"), then sends its
//! replica a forced failover, whose election starts at once, and exits. A SIGTERM is taken
//! up by the server's cron (10 times a second) first.

use serde::{Deserialize, Serialize};

use crate::backend::engine::Engine;
use crate::check::failover::FaultReport;
use crate::report::model::ClusterInfo;

/// Gossip's share of the detection, at most: failure reports reaching a majority.
const GOSSIP_S: f64 = 0.5;

/// The vote's round trip and the promotion, at most.
const VOTE_S: f64 = 0.15;

/// A replica's acknowledgement period (its replication cron, once a second) and the
/// primary's cron tick (100 ms at the default `hz 10`) that sees it: a shutting-down
/// primary waits this long for its replica at most.
const REPLICA_ACK_S: f64 = 1.1;

/// The server cron tick that takes up a SIGTERM (`hz 10`).
const CRON_S: f64 = 0.1;

/// What the rules predict for one fault, and how the measurement compares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Predicted {
    /// `failure` (detection, then an election) or `handover` (a graceful failover).
    pub kind: String,
    /// Detection, seconds after `t0`: [earliest, latest]; none for a handover.
    pub detected_s: Option<[f64; 2]>,
    /// The election after the detection (after `t0` for a handover), seconds.
    pub election_s: [f64; 2],
    /// The rule, in one line.
    pub rule: String,
    /// Where the measurement left the prediction, if it did: a phase later than the rules
    /// allow, or an election that never came.
    pub note: Option<String>,
}

/// The prediction for `fault` on `cluster` (embedded: its engine, node timeout and
/// settings are known), or `None` for a fault that makes no primary unreachable.
pub fn failover(cluster: &ClusterInfo, fault: &FaultReport) -> Option<Predicted> {
    let ClusterInfo::Embedded { engine, node_timeout_ms, config, .. } = cluster else { return None };
    if fault.victims.is_empty() {
        return None;
    }
    let nt = *node_timeout_ms as f64 / 1000.0;
    let sigterm_failover = config.get("shutdown-on-sigterm").is_some_and(|v| v.contains("failover"));
    let handover = fault.action == "shutdown-failover" || (fault.action == "stop" && sigterm_failover);
    let s = |us: u64| us.saturating_sub(fault.t0_us) as f64 / 1e6;
    let elected = fault.elected_us.map(s);
    if handover {
        let signal = if fault.action == "stop" { CRON_S } else { 0.0 };
        let mut p = Predicted {
            kind: "handover".into(),
            detected_s: None,
            election_s: [0.0, signal + REPLICA_ACK_S + VOTE_S],
            rule: "a graceful handover, no detection: writes paused until the replica's next acknowledgement, sent once a second, then it is elected at once"
                .into(),
            note: None,
        };
        p.note = match elected {
            None => Some(
                "no replica was promoted: the node had none caught up, or ran out of shutdown-timeout".into(),
            ),
            Some(e) if e > p.election_s[1] => Some(format!(
                "the handover took {e:.2}s: more than one acknowledgement period (replica behind, or votes slow)"
            )),
            Some(_) => None,
        };
        return Some(p);
    }
    if !matches!(fault.action.as_str(), "kill" | "stop" | "pause" | "sigstop" | "isolate" | "partition") {
        return None;
    }
    let (election, rule) = match engine {
        Engine::Redis => (
            [0.5, 1.0 + VOTE_S],
            format!(
                "Redis: flagged 1–2 node timeouts ({nt:.1}s) after the fault plus gossip; elected 500 ms + 0–500 ms after"
            ),
        ),
        Engine::Valkey => {
            let d = (nt / 30.0).min(0.5);
            (
                [0.0, 2.0 * d + VOTE_S],
                format!(
                    "Valkey: flagged 1–2 node timeouts ({nt:.1}s) after the fault plus gossip; elected min(node timeout/30, 500 ms) = {:.0} ms + a random share after (the best-ranked replica at once)",
                    d * 1000.0
                ),
            )
        }
    };
    let detected = [nt, 2.0 * nt + GOSSIP_S];
    let measured_detection = fault.detected_us.map(s);
    let measured_election = match (fault.elected_us, fault.detected_us) {
        (Some(e), Some(d)) => Some(e.saturating_sub(d) as f64 / 1e6),
        _ => None,
    };
    let note = match (measured_detection, measured_election, elected) {
        (Some(d), _, _) if d > detected[1] => Some(format!(
            "detected {d:.2}s after the fault, later than {:.2}s: the peers' gossip or the machine was slow",
            detected[1]
        )),
        (_, Some(e), _) if e > election[1] + 0.5 => Some(format!(
            "elected {e:.2}s after the detection, not within {:.2}s: a replica with old data waits or does not stand (cluster-replica-validity-factor), or votes were refused",
            election[1]
        )),
        (Some(_), None, None) => Some(
            "flagged failed but no replica was elected: none, or none recent enough (cluster-replica-validity-factor)".into(),
        ),
        _ => None,
    };
    Some(Predicted { kind: "failure".into(), detected_s: Some(detected), election_s: election, rule, note })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::failover::tests_support::fault;

    fn cluster(engine: Engine, node_timeout_ms: u64, config: &[(&str, &str)]) -> ClusterInfo {
        ClusterInfo::Embedded {
            run: "r".into(),
            engine,
            masters: 3,
            replicas: 1,
            node_timeout_ms,
            appendonly: true,
            require_full_coverage: true,
            config: config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            image: "i".into(),
            nodes: vec![],
        }
    }

    #[test]
    fn a_kill_is_predicted_by_each_engines_rule_and_a_late_election_is_named() {
        // Detected 1.4 s after t0, elected 0.75 s after that: within Redis's rule.
        let f = fault("kill", 10_000_000, Some(11_400_000), Some(12_150_000));
        let p = failover(&cluster(Engine::Redis, 1000, &[]), &f).unwrap();
        assert_eq!(p.detected_s, Some([1.0, 2.5]));
        assert_eq!(p.election_s, [0.5, 1.15]);
        assert_eq!(p.note, None);
        // Valkey with the same node timeout elects within 2 × 33 ms (and a vote): 0.75 s
        // after the detection is past the half-second allowance, 0.6 s is not.
        let p = failover(&cluster(Engine::Valkey, 1000, &[]), &f).unwrap();
        assert!((p.election_s[1] - (2.0 / 30.0 + 0.15)).abs() < 1e-9, "{p:?}");
        assert!(p.note.is_some_and(|n| n.starts_with("elected 0.75s after the detection")));
        let quick = fault("kill", 10_000_000, Some(11_400_000), Some(12_000_000));
        assert_eq!(failover(&cluster(Engine::Valkey, 1000, &[]), &quick).unwrap().note, None);
        let slow = fault("kill", 10_000_000, Some(11_400_000), Some(14_000_000));
        let note = failover(&cluster(Engine::Valkey, 1000, &[]), &slow).unwrap().note.unwrap();
        assert!(note.starts_with("elected 2.60s after the detection"), "{note}");
        let never = fault("kill", 10_000_000, Some(11_400_000), None);
        assert!(
            failover(&cluster(Engine::Redis, 1000, &[]), &never)
                .unwrap()
                .note
                .unwrap()
                .contains("no replica")
        );
    }

    #[test]
    fn graceful_stops_are_handovers_and_network_noise_predicts_nothing() {
        let f = fault("shutdown-failover", 10_000_000, None, Some(10_200_000));
        let p = failover(&cluster(Engine::Valkey, 5000, &[]), &f).unwrap();
        assert_eq!((p.kind.as_str(), p.detected_s, p.note), ("handover", None, None));
        let stop = fault("stop", 10_000_000, None, Some(10_200_000));
        let on_sigterm = cluster(Engine::Valkey, 5000, &[("shutdown-on-sigterm", "failover")]);
        assert_eq!(failover(&on_sigterm, &stop).unwrap().kind, "handover");
        // The replica acknowledges once a second: a handover 1.3 s after a SIGTERM is within
        // the rule (cron tick, acknowledgement, vote), 1.3 s after SHUTDOWN FAILOVER is not.
        let late_stop = fault("stop", 10_000_000, None, Some(11_300_000));
        assert_eq!(failover(&on_sigterm, &late_stop).unwrap().note, None);
        let late = fault("shutdown-failover", 10_000_000, None, Some(11_300_000));
        let note = failover(&cluster(Engine::Valkey, 5000, &[]), &late).unwrap().note.unwrap();
        assert!(note.contains("more than one acknowledgement period"), "{note}");
        assert_eq!(failover(&cluster(Engine::Valkey, 5000, &[]), &stop).unwrap().kind, "failure");
        assert_eq!(failover(&cluster(Engine::Redis, 5000, &[]), &fault("delay", 0, None, None)), None);
        assert_eq!(failover(&ClusterInfo::External { seeds: vec![] }, &f), None);
    }
}
