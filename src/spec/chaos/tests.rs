//! The shipped chaos files load, bad ones fail at the right `file:line:column: field`, and
//! schedules expand, order, clamp and drop as promised.

use std::fs;
use std::path::Path;
use std::time::Duration;

use super::resolve::parse_rate;
use super::*;

/// Parse `text` as `c.toml`; the error as printed, which must be one line.
fn err(text: &str) -> String {
    let err = parse_chaos(Path::new("c.toml"), text).expect_err("the file is bad").to_string();
    assert!(!err.contains('\n'), "one line: {err}");
    err
}

/// Assert `err` starts with `prefix`, showing both when not.
#[track_caller]
fn assert_prefix(err: &str, prefix: &str) {
    assert!(err.starts_with(prefix), "\n  error: {err}\n   want: {prefix}…");
}

fn ok(text: &str) -> ChaosPlan {
    parse_chaos(Path::new("c.toml"), text).unwrap_or_else(|e| panic!("{e}"))
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A valid first fault, so the fault under test is `fault[1]` and starts on line 6.
const FIRST: &str = "[[fault]]\nat = \"1s\"\naction = \"restart\"\ntarget = \"redis-1\"\n";

#[test]
fn every_shipped_chaos_file_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("chaos");
    let mut loaded = Vec::new();
    for entry in fs::read_dir(&dir).expect("chaos/ exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let plan = load_chaos(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!plan.faults.is_empty() || !plan.operations.is_empty());
            let text = fs::read_to_string(&path).unwrap();
            assert!(text.starts_with("# "), "{} opens with a comment header", path.display());
            loaded.push(path.file_stem().unwrap().to_string_lossy().into_owned());
        }
    }
    loaded.sort();
    assert_eq!(
        loaded,
        [
            "flaky-network",
            "kill-primary",
            "partition-primary",
            "pause-long",
            "pause-short",
            "planned-failover",
            "reshard",
            "reshard-atomic",
            "reshard-with-kill",
            "rolling-restart",
            "scale-in",
            "scale-out",
            "soak-kill"
        ]
    );
}

#[test]
fn the_shipped_files_say_what_their_headers_say() {
    let load =
        |name: &str| load_chaos(&Path::new(env!("CARGO_MANIFEST_DIR")).join("chaos").join(name)).unwrap();
    let kill = load("kill-primary.toml");
    let user42 = TargetSpec::PrimaryOf { key: "{user:42}".into(), slot: Slot::new(15880).unwrap() };
    assert_eq!(
        kill.faults,
        [FaultSpec {
            at: secs(10),
            action: Action::Kill,
            target: user42,
            duration: Some(secs(10)),
            every: None,
            count: 1,
            place: Place::default(),
        }]
    );
    let rolling: Vec<_> = load("rolling-restart.toml")
        .schedule(secs(62))
        .iter()
        .filter_map(Scheduled::fault)
        .cloned()
        .collect();
    let starts: Vec<_> = rolling.iter().map(|f| (f.at.as_secs(), f.target.to_string())).collect();
    let want: Vec<_> = (1..=6).map(|n| (2 + 8 * n, format!("redis-{n}"))).collect();
    assert_eq!(starts, want);
    assert!(rolling.iter().all(|f| f.action == Action::Restart && f.heal_at.is_none()));
    let flaky = load("flaky-network.toml");
    assert_eq!(flaky.seed, 7);
    assert_eq!(flaky.faults[0].action, Action::Loss { probability: 0.1 });
    assert_eq!(flaky.faults[1].action, Action::Bandwidth { bits_per_s: 1_000_000 });
    assert_eq!(load("pause-short.toml").faults[0].duration, Some(secs(2)));
    assert_eq!(load("pause-long.toml").faults[0].duration, Some(secs(12)));
    assert_eq!(load("partition-primary.toml").faults[0].action.name(), "partition");
}

#[test]
fn every_action_and_target_form_resolves() {
    let plan = ok(r#"
seed = 3
[[fault]]
at = "0s"
action = "delay"
target = { replica-of = "plain-key" }
duration = "1s"
delay = "100ms"
jitter = "10ms"
[[fault]]
at = "1m"
action = "sigstop"
target = "minority-of-primaries"
duration = "500ms"
every = "1s"
count = 2
[[fault]]
at = "2s"
action = "isolate"
target = "all-primaries"
duration = "1s"
count = 1
"#);
    assert_eq!(plan.seed, 3);
    assert_eq!(plan.path, Path::new("c.toml"));
    let f = &plan.faults;
    assert_eq!(
        f[0].action,
        Action::Delay { delay: Duration::from_millis(100), jitter: Duration::from_millis(10) }
    );
    assert_eq!(f[0].target, TargetSpec::ReplicaOf { key: "plain-key".into(), slot: Slot::of(b"plain-key") });
    assert_eq!((f[1].every, f[1].count), (Some(secs(1)), 2));
    assert_eq!(f[1].target, TargetSpec::MinorityOfPrimaries);
    assert_eq!((f[2].action, f[2].count, &f[2].target), (Action::Isolate, 1, &TargetSpec::AllPrimaries));
    let names: Vec<_> = ["kill", "stop", "pause", "partition"]
        .iter()
        .map(|a| {
            let text = format!(
                "[[fault]]\nat = \"1s\"\naction = \"{a}\"\ntarget = \"random-replica\"\nduration = \"1s\"\n"
            );
            ok(&text).faults[0].action.name()
        })
        .collect();
    assert_eq!(names, ["kill", "stop", "pause", "partition"]);
}

#[test]
fn bad_faults_are_placed_at_their_field() {
    // Each case is the body of `fault[1]`, whose `[[fault]]` header is line 5; `at` and
    // `target` are added when the case does not write them.
    let cases: [(&str, &str); 16] = [
        (
            "action = \"explode\"\ntarget = \"redis-1\"\nduration = \"1s\"",
            "c.toml:7:10: fault[1].action: unknown variant `explode`, expected one of `kill`, `stop`, `restart`",
        ),
        (
            "action = \"kill\"\ntarget = \"random-node\"\nduration = \"1s\"",
            "c.toml:8:10: fault[1].target: unknown target \"random-node\"; a target is a node name",
        ),
        (
            "action = \"kill\"\ntarget = \"redis-01\"\nduration = \"1s\"",
            "c.toml:8:10: fault[1].target: \"redis-01\" is not a node name: nodes are called redis-1",
        ),
        (
            "action = \"kill\"\ntarget = \"redis-0\"\nduration = \"1s\"",
            "c.toml:8:10: fault[1].target: \"redis-0\" is not a node name",
        ),
        (
            "action = \"kill\"\ntarget = \"redis-1\"",
            "c.toml:7:10: fault[1].duration: required with action = \"kill\": how long the fault lasts",
        ),
        (
            "action = \"restart\"\ntarget = \"redis-1\"\nduration = \"5s\"",
            "c.toml:9:12: fault[1].duration: not with action = \"restart\"",
        ),
        (
            "action = \"kill\"\ntarget = \"redis-1\"\nduration = \"5s\"\nprobability = 0.5",
            "c.toml:10:15: fault[1].probability: only for action = \"loss\"; this fault's action is \"kill\"",
        ),
        (
            "action = \"loss\"\ntarget = \"redis-1\"\nduration = \"5s\"\nprobability = 1.5",
            "c.toml:10:15: fault[1].probability: must be more than 0 and at most 1",
        ),
        (
            "action = \"loss\"\ntarget = \"redis-1\"\nduration = \"5s\"\nprobability = 0.0",
            "c.toml:10:15: fault[1].probability: must be more than 0 and at most 1",
        ),
        (
            "action = \"loss\"\ntarget = \"redis-1\"\nduration = \"5s\"",
            "c.toml:7:10: fault[1].probability: required with action = \"loss\"",
        ),
        (
            "action = \"bandwidth\"\ntarget = \"redis-1\"\nduration = \"5s\"\nrate = \"fast\"",
            "c.toml:10:8: fault[1].rate: \"fast\" is not a rate: write a number and a unit, e.g. \"512kbit\"",
        ),
        (
            "action = \"kill\"\ntarget = \"redis-1\"\nduration = \"5s\"\ncount = 3",
            "c.toml:10:9: fault[1].count: only with `every`",
        ),
        (
            "action = \"kill\"\ntarget = \"redis-1\"\nduration = \"5s\"\nevery = \"5s\"\ncount = 2",
            "c.toml:10:9: fault[1].every: must be longer than `duration` (5s): the repeats of one fault must not overlap",
        ),
        (
            "action = \"kill\"\ntarget = \"redis-1\"\nduration = \"5s\"\nevery = \"6s\"",
            "c.toml:10:9: fault[1].count: required with `every`",
        ),
        (
            "action = \"kill\"\ntarget = \"redis-1\"\nduration = \"5s\"\nevery = \"6s\"\ncount = 1",
            "c.toml:11:9: fault[1].count: must be between 2 and 10000 with `every`",
        ),
        (
            "action = \"kill\"\ntarget = \"redis-1\"\nduration = \"5s\"\nheal = true",
            "c.toml:10:1: fault[1].heal: unknown field `heal`, expected one of `at`, `action`, `target`",
        ),
    ];
    for (body, want) in cases {
        let text = format!("{FIRST}[[fault]]\nat = \"2s\"\n{body}\n");
        assert_prefix(&err(&text), want);
    }
}

#[test]
fn bad_targets_and_tables_are_placed() {
    let fault = |target: &str| {
        format!("[[fault]]\nat = \"1s\"\naction = \"kill\"\ntarget = {target}\nduration = \"1s\"\n")
    };
    assert_prefix(
        &err(&fault("{ primary-off = \"{user:1}\" }")),
        "c.toml:4:12: fault[0].target.primary-off: unknown field `primary-off`, expected `primary-of` or `replica-of`",
    );
    assert_prefix(
        &err(&fault("{ primary-of = \"a\", replica-of = \"b\" }")),
        "c.toml:4:43: fault[0].target.replica-of: a target table has one of `primary-of` or `replica-of`, not both",
    );
    assert_prefix(&err(&fault("{}")), "c.toml:4:10: fault[0].target: an empty table; a target is");
    assert_prefix(
        &err(&fault("{ primary-of = \"\" }")),
        "c.toml:4:25: fault[0].target.primary-of: must be a key",
    );
    assert_prefix(
        &err(&fault("3")),
        "c.toml:4:10: fault[0].target: invalid type: integer `3`, expected a node name (\"redis-1\")",
    );
}

#[test]
fn missing_and_top_level_problems_are_named() {
    assert_prefix(&err("seed = 1\n"), "c.toml:1:1: fault: a chaos file needs at least one [[fault]] table");
    assert_prefix(&err("fault = []\n"), "c.toml:1:9: fault: must list at least one fault");
    assert_prefix(
        &err("[[fault]]\naction = \"kill\"\ntarget = \"redis-1\"\nduration = \"1s\"\n"),
        "c.toml:1:1: fault[0].at: missing field `at`, which is required here",
    );
    assert_prefix(
        &err("seed = -1\n"),
        "c.toml:1:8: seed: invalid value: integer `-1`, expected a whole number",
    );
    assert_prefix(
        &err("speed = 1\n"),
        "c.toml:1:1: speed: unknown field `speed`, expected one of `seed`, `fault`, `operation`",
    );
    assert_prefix(&err("[[fault]]\nat = 10s\n"), "c.toml:2:");
}

#[test]
fn rates_read_tc_units() {
    let bits = |s: &str| parse_rate(s).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bits("512kbit"), 512_000);
    assert_eq!(bits("1mbit"), 1_000_000);
    assert_eq!(bits("10mbit"), 10_000_000);
    assert_eq!(bits("1gbit"), 1_000_000_000);
    assert_eq!(bits("1.5Mbit"), 1_500_000);
    assert_eq!(bits("1kibit"), 1024);
    assert_eq!(bits("1mbps"), 8_000_000, "bps is bytes per second, as in tc");
    assert!(parse_rate("100").unwrap_err().contains("has no unit"));
    assert!(parse_rate("1 furlong").unwrap_err().contains("unknown unit `furlong`"));
    assert!(parse_rate("0mbit").unwrap_err().contains("out of range"));
    assert!(parse_rate("mbit").unwrap_err().contains("is not a rate"));
}

/// A plan from faults given as (at, duration, every, count), all kills of redis-1.
fn plan(faults: &[(u64, Option<u64>, Option<u64>, u32)]) -> ChaosPlan {
    let faults = faults
        .iter()
        .map(|&(at, duration, every, count)| FaultSpec {
            at: secs(at),
            action: if duration.is_some() { Action::Kill } else { Action::Restart },
            target: TargetSpec::Node("redis-1".into()),
            duration: duration.map(secs),
            every: every.map(secs),
            count,
            place: Place::default(),
        })
        .collect();
    ChaosPlan { path: "c.toml".into(), seed: 0, faults, operations: Vec::new(), text: String::new() }
}

/// (index, repeat, at, heal_at) in seconds, of the faults in `schedule`.
fn times(schedule: &[Scheduled]) -> Vec<(usize, u32, u64, Option<u64>)> {
    schedule
        .iter()
        .filter_map(Scheduled::fault)
        .map(|f| (f.index, f.repeat, f.at.as_secs(), f.heal_at.map(|h| h.as_secs())))
        .collect()
}

#[test]
fn repeats_expand_at_their_period() {
    let s = plan(&[(10, Some(5), Some(20), 3)]).schedule(secs(100));
    assert_eq!(times(&s), [(0, 0, 10, Some(15)), (0, 1, 30, Some(35)), (0, 2, 50, Some(55))]);
}

#[test]
fn several_faults_interleave_by_start_time() {
    let s =
        plan(&[(20, Some(2), None, 1), (5, Some(1), Some(10), 3), (15, None, None, 1)]).schedule(secs(100));
    assert_eq!(
        times(&s),
        [
            (1, 0, 5, Some(6)),
            (1, 1, 15, Some(16)),
            (2, 0, 15, None),
            (0, 0, 20, Some(22)),
            (1, 2, 25, Some(26))
        ],
        "ties keep file order"
    );
}

#[test]
fn heals_are_clamped_to_the_end_and_late_starts_dropped() {
    let s = plan(&[(10, Some(5), Some(10), 4), (40, Some(1), None, 1)]).schedule(secs(32));
    assert_eq!(
        times(&s),
        [(0, 0, 10, Some(15)), (0, 1, 20, Some(25)), (0, 2, 30, Some(32))],
        "the repeat at 40 s and the fault at 40 s start after the end"
    );
    // A start exactly at the end is dropped too.
    assert!(plan(&[(32, Some(1), None, 1)]).schedule(secs(32)).is_empty());
    // Huge times saturate instead of overflowing.
    let far = plan(&[(0, Some(u64::MAX / 2), Some(u64::MAX / 2 + 1), 10_000)]);
    assert_eq!(times(&far.schedule(secs(60))), [(0, 0, 0, Some(60))]);
}

mod operations;

#[test]
fn two_faults_on_one_node_at_once_are_refused_at_the_later_one() {
    let kill = "[[fault]]\nat = \"10s\"\naction = \"kill\"\ntarget = \"redis-1\"\nduration = \"10s\"\n";
    let pause = "[[fault]]\nat = \"12s\"\naction = \"pause\"\ntarget = \"redis-1\"\nduration = \"1s\"\n";
    assert_prefix(
        &err(&format!("{kill}{pause}")),
        "c.toml:7:6: fault[1].at: overlaps fault[0] on redis-1 (from 10s to 20s)",
    );
    // Back to back is fine, and so is another node at the same time.
    ok(&format!("{kill}{}", pause.replace("12s", "20s")));
    ok(&format!("{kill}{}", pause.replace("redis-1", "redis-2")));
    // A repeat that runs into a later fault, and primary-of the same slot.
    let repeated = "[[fault]]\nat = \"1s\"\naction = \"kill\"\ntarget = { primary-of = \"{user:42}\" }\nduration = \"2s\"\nevery = \"5s\"\ncount = 3\n";
    let late = "[[fault]]\nat = \"12s\"\naction = \"sigstop\"\ntarget = { primary-of = \"{user:42}:x\" }\nduration = \"1s\"\n";
    let e = err(&format!("{repeated}{late}"));
    assert!(e.starts_with("c.toml:9:6: fault[1].at: overlaps fault[0] on the primary of slot"), "{e}");
}
