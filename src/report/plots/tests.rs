use std::time::{Duration, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::check::failover::Impact;
use crate::check::windows::Window;
use crate::history::{ErrorClass, ErrorCounts, Event, EventKind, Interval, OpStats};

const S: u64 = 1_000_000;

/// 32 s of three op kinds at ~2000 ops/s with a 2 s warm-up, 1 s intervals; a primary
/// killed at 10 s (healed at 20 s) that fails over, and a 2 s pause at 24 s that does not.
fn crafted() -> (History, Vec<FaultReport>) {
    let names = ["create-user", "cache_user_batch", "get-profile"];
    let rates = [500u64, 250, 1250];
    let base_us = [1100.0, 1700.0, 950.0];
    let mut rng = StdRng::seed_from_u64(7);
    let intervals = (0..32u32)
        .map(|i| {
            let t = f64::from(i);
            let ops = (0..names.len())
                .map(|k| {
                    let mut s = OpStats::default();
                    let (stall, down) = match t {
                        t if (10.0..15.0).contains(&t) => (true, (11.0..13.0).contains(&t)),
                        t if (24.0..26.0).contains(&t) => (true, false),
                        _ => (false, false),
                    };
                    let n = if stall { rates[k] / 2 } else { rates[k] };
                    for _ in 0..n {
                        let spread: f64 = rng.random_range(0.0..1.0);
                        let mut us = base_us[k] * (0.6 + spread * spread * 1.5);
                        let tail: f64 = rng.random_range(0.0..1.0);
                        if tail < 0.0005 {
                            us *= rng.random_range(15.0..40.0);
                        } else if tail < 0.012 {
                            us *= rng.random_range(2.0..6.0);
                        }
                        if stall && rng.random_range(0.0..1.0) < 0.1 {
                            us = rng.random_range(100_000.0..520_000.0);
                        }
                        s.latency.record(us as u64).unwrap();
                    }
                    s.ok = n;
                    if stall {
                        s.ok -= n / 10;
                        s.unknown[ErrorClass::Timeout] = n / 20;
                        s.failed[ErrorClass::Reset] = n / 40;
                        s.failed[ErrorClass::Refused] = n / 10 - n / 20 - n / 40;
                    }
                    if down {
                        s.failed[ErrorClass::ClusterDown] = n / 8;
                    }
                    s
                })
                .collect();
            Interval { index: i, ops, shards: Vec::new() }
        })
        .collect();
    let injected = |at_us, fault, action: &str, target: &str| Event {
        at_us,
        kind: EventKind::FaultInjected {
            began_us: at_us - 20_000,
            fault,
            repeat: 0,
            action: action.into(),
            targets: vec![target.into()],
            primaries: vec![true],
            slots: vec![(0, 5460)],
        },
    };
    let healed = |at_us, fault, action: &str, target: &str| Event {
        at_us,
        kind: EventKind::FaultHealed {
            fault,
            repeat: 0,
            action: action.into(),
            targets: vec![target.into()],
        },
    };
    let history = History {
        op_names: names.iter().map(|n| n.to_string()).collect(),
        interval: Duration::from_secs(1),
        warmup: Duration::from_secs(2),
        started_at: SystemTime::UNIX_EPOCH,
        elapsed: Duration::from_secs(32),
        intervals,
        ops: vec![],
        errors: vec![],
        events: vec![
            injected(10 * S, 0, "kill", "redis-3"),
            healed(20 * S, 0, "kill", "redis-3"),
            injected(24 * S, 1, "pause", "redis-1"),
            healed(26 * S, 1, "pause", "redis-1"),
        ],
    };
    let window = |start_us, end_us| Window { start_us, end_us, ops: 10, errors: ErrorCounts::default() };
    let kill = FaultReport {
        fault: 0,
        repeat: 0,
        action: "kill".into(),
        targets: vec!["redis-3".into()],
        victims: vec!["redis-3".into()],
        t0_us: 10 * S,
        began_us: 10 * S - 20_000,
        healed_us: Some(20 * S),
        detected_us: Some(11_280_000),
        detected_log_us: Some(11_270_000),
        elected_us: Some(12_390_000),
        elected_node: Some("redis-6".into()),
        elected_log_us: Some(12_380_000),
        converged_us: Some(12_450_000),
        learned_us: Some(12_420_000),
        table_seen: true,
        client_recovered_us: Some(14_820_000),
        backlog_drained_us: None,
        delayed_sends: 0,
        disruption_threshold_us: 100_000,
        acked_on_victim_slots_before_election: 0,
        victim_slots: Impact {
            error_windows: vec![window(10 * S, 14_550_000)],
            disruption_windows: vec![window(10 * S, 14_820_000)],
        },
        other_slots: Impact::default(),
        predicted: None,
    };
    let pause = FaultReport {
        fault: 1,
        action: "pause".into(),
        targets: vec!["redis-1".into()],
        victims: vec!["redis-1".into()],
        t0_us: 24 * S,
        began_us: 24 * S - 20_000,
        healed_us: Some(26 * S),
        detected_us: None,
        detected_log_us: None,
        elected_us: None,
        elected_node: None,
        elected_log_us: None,
        converged_us: None,
        learned_us: None,
        client_recovered_us: Some(26_100_000),
        backlog_drained_us: None,
        delayed_sends: 0,
        victim_slots: Impact { error_windows: vec![], disruption_windows: vec![window(24 * S, 26_100_000)] },
        ..kill.clone()
    };
    (history, vec![kill, pause])
}

/// Where a test writes its plots: a fresh temporary folder, removed by [`done`]; or, with
/// `SLOTSTORM_PLOTS_OUT=/tmp/slotstorm-plots`, a folder there that is kept for a look.
fn scratch(name: &str) -> PathBuf {
    match std::env::var_os("SLOTSTORM_PLOTS_OUT") {
        Some(out) => PathBuf::from(out).join(name),
        None => std::env::temp_dir().join(format!("slotstorm-plots-{}-{name}", std::process::id())),
    }
}

fn done(dir: PathBuf) {
    if std::env::var_os("SLOTSTORM_PLOTS_OUT").is_none() {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// Width and height from a PNG's IHDR chunk, checking the signature.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(bytes.len() > 1000, "a PNG of {} bytes is empty", bytes.len());
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&bytes[12..16], b"IHDR");
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

#[test]
fn every_plot_is_written_as_svg_and_png_with_labelled_axes() {
    let (history, faults) = crafted();
    let dir = scratch("crafted");
    let paths = write_plots(&dir, &history, &faults).unwrap();
    let names: Vec<String> =
        paths.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(
        names,
        [
            "latency.svg",
            "latency.png",
            "throughput.svg",
            "throughput.png",
            "percentiles.svg",
            "percentiles.png",
            "failover.svg",
            "failover.png"
        ]
    );
    let expect: [(&str, &[&str]); 4] = [
        ("latency", &["run time (s)", "latency (ms, log scale)", "get-profile", "kill redis-3", "detected"]),
        ("throughput", &["run time (s)", "ops/s", "errors/s", "clusterdown", "warm-up"]),
        ("percentiles", &["percentile", "latency (ms, log scale)", "99.9%", "cache_user_batch"]),
        ("failover", &["time since the fault was injected (s)", "kill redis-3 @10.0s", "no failover"]),
    ];
    for (name, texts) in expect {
        let svg = std::fs::read_to_string(dir.join(format!("{name}.svg"))).unwrap();
        for t in texts {
            assert!(svg.contains(t), "{name}.svg lacks {t:?}");
        }
        let (w, h) = png_size(&std::fs::read(dir.join(format!("{name}.png"))).unwrap());
        assert_eq!(w, 1200, "{name}.png");
        assert!((360..=800).contains(&h), "{name}.png is {h} px high");
    }
    done(dir);
}

#[test]
fn an_empty_run_plots_without_panicking_and_without_a_failover_plot() {
    let dir = scratch("empty");
    let history = History {
        op_names: vec!["get".into()],
        interval: Duration::from_secs(1),
        warmup: Duration::ZERO,
        started_at: SystemTime::UNIX_EPOCH,
        elapsed: Duration::from_millis(300),
        intervals: vec![Interval { index: 0, ops: vec![OpStats::default()], shards: Vec::new() }].into(),
        ops: vec![],
        errors: vec![],
        events: vec![],
    };
    let paths = write_plots(&dir, &history, &[]).unwrap();
    assert_eq!(paths.len(), 6);
    assert!(paths.iter().all(|p| !p.to_string_lossy().contains("failover")));
    let svg = std::fs::read_to_string(dir.join("latency.svg")).unwrap();
    assert!(svg.contains("no ops recorded"));
    let nothing =
        History { op_names: vec![], intervals: Default::default(), elapsed: Duration::ZERO, ..history };
    assert_eq!(write_plots(&dir.join("nothing"), &nothing, &[]).unwrap().len(), 6);
    done(dir);
}

#[test]
fn many_op_kinds_an_unhealed_restart_and_a_report_without_events_still_plot() {
    let dir = scratch("many");
    let (mut history, mut faults) = crafted();
    history.op_names = (0..6).map(|k| format!("op-{k}")).collect();
    history.intervals = history
        .intervals
        .iter()
        .map(|mut iv| {
            let first = iv.ops[0].clone();
            iv.ops.extend(std::iter::repeat_n(first, 3));
            iv
        })
        .collect();
    history.events.push(Event {
        at_us: 28 * S,
        kind: EventKind::FaultInjected {
            began_us: 28 * S - 300_000,
            fault: 2,
            repeat: 0,
            action: "restart".into(),
            targets: vec!["redis-2".into()],
            primaries: vec![false],
            slots: vec![],
        },
    });
    // Fault 1's events are gone: its report alone places it.
    history.events.retain(|e| {
        !matches!(e.kind, EventKind::FaultInjected { fault: 1, .. } | EventKind::FaultHealed { fault: 1, .. })
    });
    faults[0].client_recovered_us = Some(12_000_000); // before convergence
    faults.push(FaultReport {
        fault: 2,
        action: "restart".into(),
        targets: vec!["redis-2".into()],
        victims: vec![],
        t0_us: 28 * S,
        began_us: 28 * S - 300_000,
        healed_us: None,
        client_recovered_us: None,
        backlog_drained_us: None,
        delayed_sends: 0,
        ..faults[1].clone()
    });
    assert_eq!(write_plots(&dir, &history, &faults).unwrap().len(), 8);
    done(dir);
}

#[test]
fn failover_bars_split_into_phases_or_show_the_disruption_alone() {
    let (_, faults) = crafted();
    let (segs, text) = failover::bar(&faults[0]);
    let spans: Vec<(f64, f64)> = segs.iter().map(|s| (s.start, s.end)).collect();
    let expected = [(0.0, 1.28), (1.28, 2.39), (2.39, 2.45), (2.45, 4.82)];
    assert_eq!(spans.len(), expected.len());
    for (got, want) in spans.iter().zip(expected) {
        assert!((got.0 - want.0).abs() < 1e-9 && (got.1 - want.1).abs() < 1e-9, "{got:?} != {want:?}");
    }
    assert_eq!(text, "client recovered +4.82s");
    let (segs, text) = failover::bar(&faults[1]);
    assert_eq!(segs.len(), 1);
    assert!((segs[0].end - 2.1).abs() < 1e-9);
    assert_eq!(text, "no failover; disruption +2.10s");
}

#[test]
fn axis_labels_read_as_numbers_and_percentiles() {
    assert_eq!(fmt_num(0.001), "0.001");
    assert_eq!(fmt_num(0.05), "0.05");
    assert_eq!(fmt_num(1.5), "1.5");
    assert_eq!(fmt_num(10.0), "10");
    assert_eq!(fmt_num(12000.0), "12000");
    let labels: Vec<String> = (0..=5).map(|x| percentiles::percent_label(&f64::from(x))).collect();
    assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]);
    assert_eq!(percentiles::percent_label(&0.5), "");
}

#[test]
fn gaps_break_lines() {
    let s = Series {
        color: BLACK,
        width: 1,
        dash: Dash::Solid,
        points: vec![None, Some((0.0, 1.0)), Some((1.0, 1.0)), None, None, Some((4.0, 2.0))],
    };
    assert_eq!(s.segments(), vec![vec![(0.0, 1.0), (1.0, 1.0)], vec![(4.0, 2.0)]]);
}

#[test]
fn every_fault_of_many_gets_a_labelled_bar() {
    let dir = scratch("twelve");
    let (history, faults) = crafted();
    // Alternately the kill and the pause, every 2.5 s; their phase times stay as they were,
    // so later ones have phases before their t0: odd, and still no panic.
    let faults: Vec<FaultReport> = (0..12u64)
        .map(|i| FaultReport {
            repeat: i as u32,
            t0_us: 2 * S + i * 2_500_000,
            ..faults[i as usize % 2].clone()
        })
        .collect();
    write_plots(&dir, &history, &faults).unwrap();
    let svg = std::fs::read_to_string(dir.join("failover.svg")).unwrap();
    for f in &faults {
        let label = timeline::fault_label(f);
        assert!(svg.contains(&label), "failover.svg lacks {label:?}");
    }
    done(dir);
}
