//! A property test over the spec's parser and resolver. Two kinds of files: built from
//! nothing, every field absent, plausible or an arbitrary TOML value (any integer, any float
//! with NaN and the infinities, any string, booleans, dates, nested arrays and tables), plus
//! stray keys; and a valid workload and chaos file with a few of their lines removed or given
//! such values, which reaches the resolver's cross-field and cross-file checks.
//! Loading one must never panic; a refusal is one line that names one of the files, at a
//! line that is in it; an accepted workload can be sized and scheduled without panicking.
//!
//! The number of cases is bounded for the normal test run (`PROPTEST_CASES` raises it).

mod common;

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Durations worth trying: valid ones, the bounds, and just past them.
const DURATIONS: &[&str] = &[
    "\"0s\"",
    "\"1us\"",
    "\"1ns\"",
    "\"99ms\"",
    "\"100ms\"",
    "\"500ms\"",
    "\"1s\"",
    "\"5s\"",
    "\"1m 30s\"",
    "\"10m\"",
    "\"11m\"",
    "\"30d\"",
    "\"31d\"",
    "\"-1s\"",
    "\"1500ns\"",
];
const COUNTS: &[&str] = &["0", "1", "2", "3", "16", "100", "10000", "100001", "-1", "18446744073709551615"];
const BOOLS: &[&str] = &["true", "false"];
const TARGETS: &[&str] = &[
    "\"redis-1\"",
    "\"redis-2\"",
    "\"redis-99\"",
    "\"random-primary\"",
    "\"random-replica\"",
    "\"all-primaries\"",
    "{ primary-of = \"{user:1}\" }",
    "{ replica-of = \"k\" }",
    "{ primary-of = \"a\", replica-of = \"b\" }",
];

/// The fields of one table and values worth trying in each (besides arbitrary ones).
type Table = &'static [(&'static str, &'static [&'static str])];

const TOP: Table = &[
    ("name", &["\"p\"", "\"bad name\"", "\".x\""]),
    ("description", &["\"d\""]),
    ("chaos", &["\"c.toml\"", "\"none.toml\"", "\".\""]),
];
const CLUSTER: Table = &[
    ("kind", &["\"embedded\"", "\"external\""]),
    ("masters", COUNTS),
    ("replicas", &["0", "1", "2", "6"]),
    ("node_timeout", DURATIONS),
    ("appendonly", BOOLS),
    ("require_full_coverage", BOOLS),
    ("config", &["{ maxmemory = \"1mb\" }", "{ port = \"1\" }", "{ save = \"a\\nb\" }"]),
    ("seeds", &["[\"127.0.0.1:7000\"]", "[]", "[\"nohost\"]"]),
    ("password", &["\"pw\""]),
];
const LOAD: Table = &[
    ("duration", DURATIONS),
    ("warmup", DURATIONS),
    ("mode", &["\"open\"", "\"closed\""]),
    ("rate", &["1", "100", "0.5", "1e7", "1e12", "nan", "inf", "-1", "0"]),
    ("concurrency", COUNTS),
    ("connections", COUNTS),
    ("seed", COUNTS),
    ("interval", DURATIONS),
];
const CLIENT: Table = &[
    ("timeout", DURATIONS),
    ("retries", COUNTS),
    ("backoff", DURATIONS),
    ("backoff_max", DURATIONS),
    ("pool", COUNTS),
];
const KEYS: Table = &[
    ("count", COUNTS),
    ("distribution", &["\"uniform\"", "\"zipfian\"", "\"sequential\""]),
    ("theta", &["0.5", "0.99", "1.0", "0"]),
    ("value_size", &["1", "64", "4194304", "0", "{ min = 1, max = 10 }", "{ min = 10, max = 1 }"]),
];
const OP: Table = &[
    ("name", &["\"get\"", "\"set\"", "\"BAD\""]),
    ("weight", COUNTS),
    (
        "command",
        &["[\"GET\", \"k:$id\"]", "[\"SET\", \"k:$id\", \"$value\"]", "[\"MGET\", \"a\", \"b\"]", "[]"],
    ),
    ("pipeline", &["[[\"SET\", \"{u:$id}\", \"$value\"], [\"GET\", \"{u:$id}\"]]", "[]"]),
    ("batch", COUNTS),
    ("script", &["\"s.lua\"", "\"none.lua\""]),
    ("keys", &["[\"{r:$id}:a\"]", "[\"a:$id\", \"b:$id\"]", "[]"]),
    ("args", &["[\"10\", \"1000\", \"$now\"]", "[\"$value\"]"]),
];
const SLO: Table = &[
    ("max_failover", DURATIONS),
    ("max_disruption", DURATIONS),
    ("max_error_window", DURATIONS),
    ("max_lost_writes", COUNTS),
    ("max_over_admissions", COUNTS),
    ("max_send_lag", DURATIONS),
    ("min_throughput", &["1", "0.5", "-1", "nan"]),
    ("p99", &["{ get = \"10ms\" }", "{ nope = \"1s\" }"]),
    ("p99_9", &["{ get = \"0s\" }"]),
];
const CHAOS_TOP: Table = &[("seed", COUNTS)];
const FAULT: Table = &[
    ("at", DURATIONS),
    (
        "action",
        &["\"kill\"", "\"pause\"", "\"restart\"", "\"partition\"", "\"loss\"", "\"delay\"", "\"boom\""],
    ),
    ("target", TARGETS),
    ("duration", DURATIONS),
    ("every", DURATIONS),
    ("count", COUNTS),
    ("probability", &["0.1", "1.5", "nan"]),
    ("rate", &["\"1mbit\"", "\"fast\""]),
    ("delay", DURATIONS),
    ("jitter", DURATIONS),
];
const OPERATION: Table = &[
    ("at", DURATIONS),
    ("action", &["\"failover\"", "\"reshard\"", "\"add-node\"", "\"rebalance\"", "\"remove-node\"", "\"x\""]),
    ("target", TARGETS),
    ("mode", &["\"default\"", "\"force\"", "\"takeover\"", "\"soft\""]),
    ("from", TARGETS),
    ("to", TARGETS),
    ("slots", COUNTS),
    ("range", &["[0, 100]", "[100, 0]", "[0, 16384]"]),
    ("key", &["\"{user:1}\""]),
    ("keys_per_batch", COUNTS),
    ("pipeline", COUNTS),
    ("timeout", DURATIONS),
    ("role", &["\"primary\"", "\"replica\""]),
    ("replica-of", TARGETS),
    ("use_empty_primaries", BOOLS),
    ("drain", BOOLS),
];

/// A TOML string literal.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML float literal for any `f64`.
fn float(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        // `{:?}` always writes a `.` or an exponent, as TOML wants.
        format!("{f:?}")
    }
}

/// Any TOML value, nested a little.
fn any_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(float),
        "[ -~]{0,16}".prop_map(|s| quoted(&s)),
        "\\PC{0,8}".prop_map(|s| quoted(&s)),
        any::<bool>().prop_map(|b| b.to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        Just("07:32:00".to_string()),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec(("[a-z][a-z_-]{0,7}", inner), 0..3).prop_map(|kv| {
                let fields: Vec<String> = kv.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", fields.join(", "))
            }),
        ]
    })
}

/// One table's lines: each field absent, a value worth trying, or any value; sometimes a
/// stray key too.
fn table(fields: Table) -> impl Strategy<Value = Vec<String>> {
    let per_field: Vec<BoxedStrategy<Option<String>>> = fields
        .iter()
        .map(|&(key, tries)| {
            let tried = prop::sample::select(tries.to_vec()).prop_map(|v| v.to_string());
            prop_oneof![
                3 => Just(None),
                5 => tried.prop_map(move |v| Some(format!("{key} = {v}"))),
                2 => any_value().prop_map(move |v| Some(format!("{key} = {v}"))),
            ]
            .boxed()
        })
        .collect();
    let stray =
        prop::option::weighted(0.1, ("[a-z_]{1,8}", any_value()).prop_map(|(k, v)| format!("{k}x = {v}")));
    (per_field, stray).prop_map(|(lines, stray)| lines.into_iter().flatten().chain(stray).collect())
}

/// `[name]` (or `[[name]]`) and its lines.
fn render(out: &mut String, header: &str, lines: &[String]) {
    if !header.is_empty() {
        out.push_str(header);
        out.push('\n');
    }
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
}

/// A workload file: the top-level fields, each table present or not, one to three ops.
fn workload() -> impl Strategy<Value = String> {
    let tables = (
        table(TOP),
        prop::option::weighted(0.6, table(CLUSTER)),
        table(LOAD),
        prop::option::weighted(0.5, table(CLIENT)),
        prop::option::weighted(0.5, table(KEYS)),
        prop::collection::vec(table(OP), 0..4),
        prop::option::weighted(0.4, table(SLO)),
    );
    tables.prop_map(|(top, cluster, load, client, keys, ops, slo)| {
        let mut out = String::new();
        render(&mut out, "", &top);
        for (header, t) in
            [("[cluster]", cluster), ("[load]", Some(load)), ("[client]", client), ("[keys]", keys)]
        {
            if let Some(t) = t {
                render(&mut out, header, &t);
            }
        }
        for op in &ops {
            render(&mut out, "[[op]]", op);
        }
        if let Some(slo) = slo {
            render(&mut out, "[slo]", &slo);
        }
        out
    })
}

/// A chaos file: a seed, zero to three faults and zero to two operations.
fn chaos() -> impl Strategy<Value = String> {
    (
        table(CHAOS_TOP),
        prop::collection::vec(table(FAULT), 0..4),
        prop::collection::vec(table(OPERATION), 0..3),
    )
        .prop_map(|(top, faults, operations)| {
            let mut out = String::new();
            render(&mut out, "", &top);
            for f in &faults {
                render(&mut out, "[[fault]]", f);
            }
            for o in &operations {
                render(&mut out, "[[operation]]", o);
            }
            out
        })
}

/// What the cases came to: how many were accepted, and the fields refusals named.
#[derive(Default)]
struct Tally {
    accepted: usize,
    with_chaos: usize,
    fields: std::collections::BTreeMap<String, usize>,
}

/// What one edit of a valid file does to the line it picks.
#[derive(Debug, Clone)]
enum Edit {
    /// Drop the line.
    Remove,
    /// Give its key this value.
    Value(String),
}

/// Every value worth trying, whichever field it lands in.
fn tried_values() -> Vec<&'static str> {
    let tables = [TOP, CLUSTER, LOAD, CLIENT, KEYS, OP, SLO, CHAOS_TOP, FAULT, OPERATION];
    let mut all: Vec<&str> =
        tables.iter().flat_map(|t| t.iter().flat_map(|(_, v)| v.iter().copied())).collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// `base` with up to three of its `key = value` lines removed or given other values.
fn mutated(base: &'static str) -> impl Strategy<Value = String> {
    let edit = prop_oneof![
        1 => Just(Edit::Remove),
        3 => prop::sample::select(tried_values()).prop_map(|v| Edit::Value(v.to_string())),
        2 => any_value().prop_map(Edit::Value),
    ];
    prop::collection::vec((any::<prop::sample::Index>(), edit), 0..4).prop_map(move |edits| {
        let mut lines: Vec<String> = base.lines().map(str::to_string).collect();
        let keyed: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].contains(" = ")).collect();
        for (which, edit) in edits {
            let at = keyed[which.index(keyed.len())];
            let Some((key, _)) = lines[at].split_once(" = ") else { continue };
            lines[at] = match edit {
                Edit::Remove => String::new(),
                Edit::Value(v) => format!("{key} = {v}"),
            };
        }
        lines.join("\n") + "\n"
    })
}

/// Load the pair and check what comes back.
fn check(dir: &Path, workload: &str, chaos: &str, tally: &mut Tally) -> Result<(), TestCaseError> {
    let (w, c) = (dir.join("w.toml"), dir.join("c.toml"));
    std::fs::write(&w, workload).unwrap();
    std::fs::write(&c, chaos).unwrap();
    match slotstorm::spec::load(&w) {
        Ok(spec) => {
            tally.accepted += 1;
            tally.with_chaos += usize::from(spec.chaos.is_some());
            // What a run computes from an accepted file before it starts must not panic.
            let in_flight = spec.in_flight();
            prop_assert!(in_flight.limit >= 1);
            let _ = in_flight.describe();
            let _ = spec.client.worst_op_time();
            if let Some(plan) = &spec.chaos {
                let _ = plan.schedule(spec.load.warmup + spec.load.duration);
            }
        }
        Err(e) => {
            let message = e.to_string();
            prop_assert!(!message.contains('\n'), "one line: {message}");
            let files: [(PathBuf, &str); 3] =
                [(w.clone(), workload), (c.clone(), chaos), (dir.join("s.lua"), "")];
            let named = files.iter().find(|(p, _)| message.starts_with(&format!("{}:", p.display())));
            prop_assert!(named.is_some(), "names one of the files: {message}");
            let field = match e.located() {
                None => "(reading)".to_string(),
                Some(at) if at.message.contains("unknown field") => "(unknown field)".to_string(),
                Some(at) => at.field.clone(),
            };
            // `op[2].command[1]` and `op[0].command[1]` are one field.
            let field: String = field.chars().filter(|c| !c.is_ascii_digit()).collect();
            *tally.fields.entry(field).or_default() += 1;
            if let (Some(at), Some((_, text))) = (e.located(), named) {
                let lines = text.lines().count().max(1);
                prop_assert!(at.line >= 1 && at.line <= lines + 1, "line {} of {lines}: {message}", at.line);
                prop_assert!(at.column >= 1, "{message}");
                prop_assert!(message.len() < 1200, "short: {message}");
            }
        }
    }
    Ok(())
}

#[test]
fn the_parser_and_resolver_never_panic_and_place_every_refusal() {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(1500);
    let dir = std::env::temp_dir().join(format!("slotstorm-spec-props-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("s.lua"), common::spec_base::SCRIPT).unwrap();
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let tally = std::cell::RefCell::new(Tally::default());
    let files = prop_oneof![
        1 => (workload(), chaos()),
        2 => (mutated(common::spec_base::WORKLOAD), mutated(common::spec_base::CHAOS)),
    ];
    let result = runner.run(&files, |(w, c)| check(&dir, &w, &c, &mut tally.borrow_mut()));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = result {
        panic!("{e}");
    }
    let tally = tally.into_inner();
    eprintln!(
        "{cases} cases: {} accepted ({} with chaos); refusals by field: {:?}",
        tally.accepted, tally.with_chaos, tally.fields
    );
    // The generator reaches past the first field: some files pass whole, and refusals come
    // from all over both files, stage 2's cross-field checks among them.
    if cases >= 1000 {
        prop_assert_reaches(&tally, cases);
    }
}

/// The generator's reach, for a run of at least 1000 cases.
fn prop_assert_reaches(tally: &Tally, cases: u32) {
    assert!(tally.accepted * 50 >= cases as usize, "at least 2% accepted: {}", tally.accepted);
    assert!(tally.with_chaos > 0, "some accepted with a chaos file");
    assert!(tally.fields.len() >= 40, "refusals at {} fields: {:?}", tally.fields.len(), tally.fields.keys());
}
