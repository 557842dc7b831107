//! A generated corpus of malformed workload and chaos files, run through the binary as a user
//! would: `slotstorm validate` and `slotstorm run` must each exit 2 with exactly one line on
//! stderr that names the file at fault, the line and the field, in well under a second, with
//! no panic, no results folder and no container or network started.
//!
//! The corpus starts from a valid workload and chaos file that use every table, and makes
//! from them: every field given a value of the wrong type, an unknown field in every table,
//! values out of range, fields that contradict each other, chaos that cannot fit the cluster
//! or the run, TOML syntax errors, and files that are not regular UTF-8 text.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::TempDir;
use common::spec_base::{CHAOS, SCRIPT, WORKLOAD};

/// Which file a case's error must name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Culprit {
    Workload,
    Chaos,
}

/// Where in that file.
#[derive(Debug, Clone)]
enum At {
    /// The first line containing this text.
    Text(String),
    /// This line.
    Line(usize),
    /// No line: the file as a whole cannot be read.
    File,
}

/// One malformed pair of files and where its error must point.
#[derive(Debug, Clone)]
struct Case {
    name: String,
    workload: String,
    chaos: String,
    culprit: Culprit,
    at: At,
    /// The field the message names (a prefix: `keys.value_size` matches `keys.value_size.a`);
    /// for `At::File`, a fragment of the reason instead.
    field: String,
}

/// The 1-based line of the last line that contains `text`.
fn line_of(base: &str, text: &str) -> usize {
    base.lines().enumerate().filter(|(_, l)| l.contains(text)).last().expect("the base has it").0 + 1
}

/// `text` with `old` (which must be there) replaced by `new`, once.
fn replaced(text: &str, old: &str, new: &str) -> String {
    assert!(text.contains(old), "the base has {old:?}");
    text.replacen(old, new, 1)
}

/// A case that changes the workload's `old` text to `new`, failing at the line of `at`.
fn w(name: &str, old: &str, new: &str, at: &str, field: &str) -> Case {
    Case {
        name: name.into(),
        workload: replaced(WORKLOAD, old, new),
        chaos: CHAOS.into(),
        culprit: Culprit::Workload,
        at: At::Text(at.into()),
        field: field.into(),
    }
}

/// A case that changes the chaos file's `old` text to `new`.
fn c(name: &str, old: &str, new: &str, at: &str, field: &str) -> Case {
    Case {
        name: name.into(),
        workload: WORKLOAD.into(),
        chaos: replaced(CHAOS, old, new),
        culprit: Culprit::Chaos,
        at: At::Text(at.into()),
        field: field.into(),
    }
}

/// The TOML type of a value as written in the base files.
fn kind_of(value: &str) -> &'static str {
    match value.as_bytes().first() {
        Some(b'"') => "string",
        Some(b'[') => "array",
        Some(b'{') => "table",
        _ if value == "true" || value == "false" => "bool",
        _ if value.contains('.') => "float",
        _ => "integer",
    }
}

/// Every `key = value` line of `text` with the field path it sets (`op[1].batch`).
fn fields(text: &str) -> Vec<(String, String, String)> {
    let mut table = String::new();
    let mut counts = std::collections::HashMap::<String, usize>::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            let n = counts.entry(name.into()).or_default();
            table = format!("{name}[{n}].");
            *n += 1;
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = format!("{name}.");
        } else if let Some((key, value)) = line.split_once(" = ") {
            out.push((line.to_string(), format!("{table}{key}"), value.to_string()));
        }
    }
    out
}

/// Every field of both files given values of other TOML types: each must be refused at its
/// own line and named.
fn wrong_types() -> Vec<Case> {
    let mut cases = Vec::new();
    for (culprit, text) in [(Culprit::Workload, WORKLOAD), (Culprit::Chaos, CHAOS)] {
        for (line, field, value) in fields(text) {
            let key = line.split_once(" = ").expect("a key line").0;
            // Values of a type none of the fields takes where the base has another.
            let wrong: &[&str] = match kind_of(&value) {
                "string" => &["true", "-3", "[1, 2]"],
                "integer" => &["true", "\"many\"", "[1, 2]"],
                "float" => &["true", "\"half\""],
                "array" => &["true", "\"GET k\"", "7"],
                "table" => &["true", "7"],
                other => panic!("no wrong values for {other}"),
            };
            for (k, bad) in wrong.iter().enumerate() {
                let new = format!("{key} = {bad}");
                let mut case = match culprit {
                    Culprit::Workload => w("", &line, &new, &new, &field),
                    Culprit::Chaos => c("", &line, &new, &new, &field),
                };
                case.name = format!("type-{field}-{k}");
                cases.push(case);
            }
        }
    }
    cases
}

/// A misspelt field in every table: refused, never ignored.
fn unknown_fields() -> Vec<Case> {
    let mut cases = vec![
        w("unknown-top", "description = ", "descripton = 1\ndescription = ", "descripton", "descripton"),
        w("unknown-cluster", "masters = 3", "master = 3", "master = 3", "cluster.master"),
        w("unknown-load", "rate = 100", "rate = 100\nconcurency = 4", "concurency", "load.concurency"),
        w("unknown-client", "retries = 1", "retry = 1", "retry = 1", "client.retry"),
        w("unknown-keys", "count = 100", "cuont = 100", "cuont", "keys.cuont"),
        w("unknown-op", "weight = 3", "wieght = 3", "wieght", "op[0].wieght"),
        w("unknown-slo", "max_lost_writes = 0", "max_lost_write = 0", "max_lost_write", "slo.max_lost_write"),
        w("unknown-table", "[slo]", "[sloo]\nx = 1\n[slo]", "[sloo]", "sloo"),
        w(
            "unknown-value-size",
            "value_size = 16",
            "value_size = { min = 1, mx = 2 }",
            "value_size",
            "keys.value_size",
        ),
        c("unknown-chaos-top", "seed = 1", "sed = 1", "sed = 1", "sed"),
        c("unknown-fault", "duration = \"1s\"", "duraton = \"1s\"", "duraton", "fault[0].duraton"),
        c(
            "unknown-operation",
            "action = \"failover\"",
            "action = \"failover\"\nmod = \"force\"",
            "mod =",
            "operation[0].mod",
        ),
        c("unknown-target-key", "{ replica-of = ", "{ replica_of = ", "replica_of", "operation[0].target"),
    ];
    for case in &mut cases {
        case.name = format!("unknown-{}", case.name.trim_start_matches("unknown-"));
    }
    cases
}

/// Values of the right type outside what can run or means something.
fn out_of_range() -> Vec<Case> {
    let one = |field: &str, old: &str, new: &str| {
        let name = format!("range-{field}-{}", new.split_once(" = ").map_or(new, |(_, v)| v));
        w(&name, old, new, new, field)
    };
    let chaos = |field: &str, old: &str, new: &str| {
        let name = format!("range-{field}-{}", new.split_once(" = ").map_or(new, |(_, v)| v));
        c(&name, old, new, new, field)
    };
    vec![
        one("name", "name = \"malformed-corpus\"", "name = \"bad name/with slash\""),
        one("name", "name = \"malformed-corpus\"", "name = \".hidden\""),
        one("name", "name = \"malformed-corpus\"", "name = \"\""),
        one("cluster.masters", "masters = 3", "masters = 0"),
        one("cluster.masters", "masters = 3", "masters = 101"),
        one("cluster.masters", "masters = 3", "masters = -1"),
        one("cluster.replicas", "replicas = 1", "replicas = 6"),
        one("cluster.node_timeout", "node_timeout = \"2s\"", "node_timeout = \"50ms\""),
        one("cluster.node_timeout", "node_timeout = \"2s\"", "node_timeout = \"11m\""),
        one("cluster.node_timeout", "node_timeout = \"2s\"", "node_timeout = \"two seconds\""),
        one("cluster.config.maxmemory", "maxmemory = \"256mb\"", "maxmemory = \"256mb\\nrequirepass x\""),
        one("cluster.config.port", "maxmemory = \"256mb\"", "port = \"7000\""),
        one("cluster.config.Max_Memory", "maxmemory = \"256mb\"", "Max_Memory = \"1\""),
        one("load.duration", "duration = \"8s\"", "duration = \"99ms\""),
        one("load.duration", "duration = \"8s\"", "duration = \"0s\""),
        one("load.duration", "duration = \"8s\"", "duration = \"1ns\""),
        one("load.duration", "duration = \"8s\"", "duration = \"31d\""),
        one("load.duration", "duration = \"8s\"", "duration = \"18446744073709551615s\""),
        one("load.duration", "duration = \"8s\"", "duration = \"-5s\""),
        one("load.warmup", "warmup = \"1s\"", "warmup = \"100000000h\""),
        one("load.warmup", "warmup = \"1s\"", "warmup = \"1500ns\""),
        one("load.rate", "rate = 100", "rate = 0"),
        one("load.rate", "rate = 100", "rate = -5"),
        one("load.rate", "rate = 100", "rate = 1e12"),
        one("load.rate", "rate = 100", "rate = inf"),
        one("load.rate", "rate = 100", "rate = nan"),
        one("load.rate", "rate = 100", "rate = 0.01"),
        one("load.connections", "connections = 2", "connections = 0"),
        one("load.connections", "connections = 2", "connections = 65"),
        one("load.interval", "interval = \"1s\"", "interval = \"10ms\""),
        one("load.seed", "seed = 7", "seed = -7"),
        one("client.timeout", "timeout = \"500ms\"", "timeout = \"0s\""),
        one("client.timeout", "timeout = \"500ms\"", "timeout = \"2h\""),
        one("client.retries", "retries = 1", "retries = 101"),
        one("client.retries", "retries = 1", "retries = -1"),
        one("client.backoff", "backoff = \"50ms\"", "backoff = \"1h\""),
        one("client.backoff_max", "backoff_max = \"1s\"", "backoff_max = \"10ms\""),
        one("client.backoff_max", "backoff_max = \"1s\"", "backoff_max = \"30d\""),
        one("keys.count", "count = 100", "count = 0"),
        one("keys.count", "count = 100", "count = 10000000000"),
        one("keys.theta", "theta = 0.9", "theta = 1.0"),
        one("keys.theta", "theta = 0.9", "theta = 0"),
        one("keys.theta", "theta = 0.9", "theta = -0.5"),
        one("keys.value_size", "value_size = 16", "value_size = 0"),
        one("keys.value_size", "value_size = 16", "value_size = 5000000"),
        one("keys.value_size", "value_size = 16", "value_size = -16"),
        one("keys.value_size.max", "value_size = 16", "value_size = { min = 10, max = 5 }"),
        one("keys.value_size.min", "value_size = 16", "value_size = { min = 0, max = 5 }"),
        one("keys.distribution", "distribution = \"zipfian\"", "distribution = \"gaussian\""),
        one("load.mode", "mode = \"open\"", "mode = \"half-open\""),
        one("op[0].name", "name = \"get\"", "name = \"GET ALL\""),
        // A name already taken is refused at its second use.
        Case {
            at: At::Line(line_of(WORKLOAD, "name = \"p\"")),
            ..one("op[1].name", "name = \"get\"", "name = \"p\"")
        },
        Case {
            at: At::Line(line_of(WORKLOAD, "name = \"p\"")),
            ..one("op[1].name", "name = \"p\"", "name = \"get\"")
        },
        one("op[0].weight", "weight = 3", "weight = 0"),
        one("op[0].weight", "weight = 3", "weight = 1000001"),
        one("op[1].batch", "batch = 2", "batch = 0"),
        one("op[1].batch", "batch = 2", "batch = 10001"),
        one("op[0].command", "command = [\"GET\", \"k:$id\"]", "command = []"),
        one("op[0].command", "command = [\"GET\", \"k:$id\"]", "command = [\"GET\"]"),
        one("op[0].command[0]", "command = [\"GET\", \"k:$id\"]", "command = [\"G ET\", \"k\"]"),
        one("op[0].command[1]", "command = [\"GET\", \"k:$id\"]", "command = [\"GET\", \"k:$idd\"]"),
        one("op[0].command[1]", "command = [\"GET\", \"k:$id\"]", "command = [\"GET\", \"k:${id\"]"),
        one("op[0].command", "command = [\"GET\", \"k:$id\"]", "command = [\"MGET\", \"a\", \"b\"]"),
        one(
            "op[1].pipeline",
            "pipeline = [[\"SET\", \"{u:$id}:a\", \"$value\"], [\"EXPIRE\", \"{u:$id}:a\", 60]]",
            "pipeline = []",
        ),
        one("op[2].script", "script = \"s.lua\"", "script = \"missing.lua\""),
        one("op[2].keys", "keys = [\"{u:$id}:b\"]", "keys = []"),
        one("op[2].keys[1]", "keys = [\"{u:$id}:b\"]", "keys = [\"{u:$id}:b\", \"{v:$id}:c\"]"),
        Case {
            workload: replaced(
                &replaced(WORKLOAD, "value_size = 16", "value_size = 4194304"),
                "batch = 2",
                "batch = 20",
            ),
            ..w("range-op-bytes", "batch = 2", "batch = 20", "batch = 20", "op[1].batch")
        },
        one("slo.max_send_lag", "max_send_lag = \"1s\"", "max_send_lag = \"0s\""),
        one("slo.min_throughput", "min_throughput = 10", "min_throughput = -1"),
        one("slo.p99.get", "get = \"50ms\"", "get = \"0ms\""),
        one("slo.p99.nope", "get = \"50ms\"", "nope = \"50ms\""),
        chaos("fault[0].at", "at = \"1s\"", "at = \"9s\""),
        chaos("fault[0].at", "at = \"1s\"", "at = \"-1s\""),
        chaos("fault[0].duration", "duration = \"1s\"", "duration = \"1000000h\""),
        chaos("fault[1].count", "count = 2", "count = 5"),
        chaos("fault[1].count", "count = 2", "count = 1"),
        chaos("fault[1].count", "count = 2", "count = 100000"),
        chaos("fault[1].every", "every = \"2s\"", "every = \"0s\""),
        chaos("fault[0].target", "target = \"redis-1\"", "target = \"redis-99\""),
        chaos("fault[0].target", "target = \"redis-1\"", "target = \"the-primary\""),
        chaos(
            "fault[0].target",
            "target = \"redis-1\"",
            "target = { primary-of = \"a\", replica-of = \"b\" }",
        ),
        chaos("fault[0].action", "action = \"kill\"", "action = \"explode\""),
        chaos("seed", "seed = 1", "seed = -1"),
        chaos("operation[0].action", "action = \"failover\"", "action = \"defragment\""),
        chaos("operation[0].target", "target = { replica-of = \"{user:42}\" }", "target = \"redis-42\""),
        chaos("operation[0].at", "at = \"2s\"", "at = \"1h\""),
    ]
}

/// Fields that contradict each other, and chaos that cannot fit this cluster or run; each
/// is placed at the field at fault, in the file that holds it.
fn contradictions() -> Vec<Case> {
    let mut cases = vec![
        w("rate-in-closed", "mode = \"open\"", "mode = \"closed\"", "rate = 100", "load.rate"),
        w("open-without-rate", "rate = 100\n", "", "mode = \"open\"", "load.rate"),
        Case {
            workload: replaced(
                &replaced(WORKLOAD, "mode = \"open\"\nrate = 100\n", "mode = \"closed\"\n"),
                "retries = 1",
                "retries = 1\npool = 8",
            ),
            ..w("pool-in-closed", "retries = 1", "retries = 1\npool = 8", "pool = 8", "client.pool")
        },
        Case {
            workload: replaced(
                &replaced(WORKLOAD, "rate = 100", "rate = 100\nconcurrency = 10"),
                "retries = 1",
                "retries = 1\npool = 8",
            ),
            ..w("pool-and-concurrency", "retries = 1", "retries = 1\npool = 8", "pool = 8", "client.pool")
        },
        w(
            "theta-not-zipfian",
            "distribution = \"zipfian\"",
            "distribution = \"uniform\"",
            "theta = 0.9",
            "keys.theta",
        ),
        w(
            "external-with-masters",
            "masters = 3",
            "kind = \"external\"\nseeds = [\"127.0.0.1:7000\"]\nmasters = 3",
            "masters = 3",
            "cluster.masters",
        ),
        w(
            "external-without-seeds",
            "[cluster]\nmasters = 3\nreplicas = 1\nnode_timeout = \"2s\"\nconfig = { maxmemory = \"256mb\" }",
            "[cluster]\nkind = \"external\"",
            "[cluster]",
            "cluster.seeds",
        ),
        w(
            "external-bad-seed",
            "[cluster]\nmasters = 3\nreplicas = 1\nnode_timeout = \"2s\"\nconfig = { maxmemory = \"256mb\" }",
            "[cluster]\nkind = \"external\"\nseeds = [\"localhost\"]",
            "seeds = ",
            "cluster.seeds[0]",
        ),
        w(
            "external-empty-seeds",
            "[cluster]\nmasters = 3\nreplicas = 1\nnode_timeout = \"2s\"\nconfig = { maxmemory = \"256mb\" }",
            "[cluster]\nkind = \"external\"\nseeds = []",
            "seeds = ",
            "cluster.seeds",
        ),
        w(
            "external-with-chaos",
            "[cluster]\nmasters = 3\nreplicas = 1\nnode_timeout = \"2s\"\nconfig = { maxmemory = \"256mb\" }",
            "[cluster]\nkind = \"external\"\nseeds = [\"127.0.0.1:7000\"]",
            "chaos = ",
            "chaos",
        ),
        w(
            "seeds-embedded",
            "masters = 3",
            "masters = 3\nseeds = [\"127.0.0.1:7000\"]",
            "seeds = ",
            "cluster.seeds",
        ),
        w(
            "password-embedded",
            "masters = 3",
            "masters = 3\npassword = \"x\"",
            "password = ",
            "cluster.password",
        ),
        w("batch-without-pipeline", "weight = 3", "weight = 3\nbatch = 2", "batch = 2", "op[0].batch"),
        w("keys-without-script", "weight = 3", "weight = 3\nkeys = [\"k\"]", "keys = [\"k\"]", "op[0].keys"),
        w("two-bodies", "weight = 3", "weight = 3\nscript = \"s.lua\"", "command = ", "op[0].command"),
        w("no-body", "command = [\"GET\", \"k:$id\"]\n", "", "[[op]]", "op[0]"),
        w("chaos-missing", "chaos = \"c.toml\"", "chaos = \"nope.toml\"", "chaos = ", "chaos"),
        w("chaos-dir", "chaos = \"c.toml\"", "chaos = \".\"", "chaos = ", "chaos"),
        w("duplicate-slo-op", "get = \"50ms\"", "getx = \"50ms\"", "getx", "slo.p99.getx"),
        w("replicas-zero", "replicas = 1", "replicas = 0", "target = { replica-of", "operation[0].target"),
        w("short-run-for-chaos", "duration = \"8s\"", "duration = \"2s\"", "at = \"3s\"", "fault[1].at"),
        c(
            "overlap",
            "at = \"3s\"\naction = \"pause\"\ntarget = \"random-primary\"",
            "at = \"1500ms\"\naction = \"pause\"\ntarget = \"redis-1\"",
            "at = \"1500ms\"",
            "fault[1]",
        ),
        c("repeats-past-end", "count = 2", "count = 4", "count = 4", "fault[1].count"),
        c(
            "add-node-replica-of",
            "[[operation]]",
            "[[operation]]\nat = \"1s\"\naction = \"add-node\"\nrole = \"replica\"\nreplica-of = \"redis-99\"\n[[operation]]",
            "replica-of = \"redis-99\"",
            "operation[0].replica-of",
        ),
        c(
            "reshard-unknown-from",
            "[[operation]]",
            "[[operation]]\nat = \"1s\"\naction = \"reshard\"\nfrom = \"redis-77\"\nto = \"redis-1\"\nslots = 10\n[[operation]]",
            "from = \"redis-77\"",
            "operation[0].from",
        ),
        c("fault-without-target", "target = \"redis-1\"\n", "", "[[fault]]", "fault[0]"),
        c("fault-without-at", "at = \"1s\"\naction = \"kill\"", "action = \"kill\"", "[[fault]]", "fault[0]"),
        c("every-without-count", "count = 2\n", "", "every = ", "fault[1]"),
        c(
            "operation-fault-field",
            "action = \"failover\"",
            "action = \"failover\"\nduration = \"7s\"",
            "duration = \"7s\"",
            "operation[0].duration",
        ),
    ];
    // The replicas-zero case needs the chaos file's replica target; the others keep theirs.
    for case in &mut cases {
        if case.name == "replicas-zero" || case.name == "short-run-for-chaos" {
            case.culprit = Culprit::Chaos;
        }
        case.name = format!("cross-{}", case.name);
    }
    cases
}

/// TOML that does not parse, in either file.
fn syntax() -> Vec<Case> {
    let mut cases = vec![
        w("unclosed-string", "rate = 100", "rate = \"100", "rate = \"100", "load.rate"),
        w("missing-equals", "rate = 100", "rate 100", "rate 100", "load"),
        w("duplicate-key", "rate = 100", "rate = 100\nrate = 200", "rate = 200", "load"),
        w("duplicate-table", "[keys]", "[client]\n[keys]", "[client]\n[keys]", "client"),
        w(
            "bad-escape",
            "description = \"a corpus case\"",
            "description = \"a \\q case\"",
            "\\q",
            "description",
        ),
        w(
            "missing-comma",
            "command = [\"GET\", \"k:$id\"]",
            "command = [\"GET\" \"k:$id\"]",
            "command = [\"GET\" ",
            "op[0].command",
        ),
        w("stray-text", "[load]", "[load]\nthis is not toml", "this is not toml", "load"),
        w("bad-table-header", "[keys]", "[keys", "[keys", "keys"),
        c("chaos-unclosed", "action = \"kill\"", "action = \"kill", "action = \"kill", "fault[0]"),
        c("chaos-stray", "seed = 1", "seed = 1\n???", "???", "(top level)"),
    ];
    for case in &mut cases {
        case.name = format!("syntax-{}", case.name);
    }
    cases
}

/// A case built by hand on files that are not regular UTF-8 text; `prepare` makes them in
/// the case's folder after the text files are written.
struct FileCase {
    name: &'static str,
    /// The path `slotstorm` is given, relative to the folder.
    arg: &'static str,
    prepare: fn(&Path),
    culprit_file: &'static str,
    at: At,
    field: &'static str,
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo runs");
    assert!(status.success());
}

fn file_cases() -> Vec<FileCase> {
    vec![
        FileCase {
            name: "file-missing",
            arg: "none.toml",
            prepare: |_| {},
            culprit_file: "none.toml",
            at: At::File,
            field: "No such file",
        },
        FileCase {
            name: "file-directory",
            arg: "adir",
            prepare: |d| std::fs::create_dir(d.join("adir")).unwrap(),
            culprit_file: "adir",
            at: At::File,
            field: "directory",
        },
        FileCase {
            name: "file-fifo",
            arg: "fifo.toml",
            prepare: |d| mkfifo(&d.join("fifo.toml")),
            culprit_file: "fifo.toml",
            at: At::File,
            field: "not a regular file",
        },
        FileCase {
            name: "file-device",
            arg: "/dev/zero",
            prepare: |_| {},
            culprit_file: "/dev/zero",
            at: At::File,
            field: "not a regular file",
        },
        FileCase {
            name: "file-too-big",
            arg: "big.toml",
            prepare: |d| {
                let mut text = WORKLOAD.to_string();
                text.push_str(&format!("# {}\n", "x".repeat(5 * 1024 * 1024)));
                std::fs::write(d.join("big.toml"), text).unwrap();
            },
            culprit_file: "big.toml",
            at: At::File,
            field: "bytes long, more than",
        },
        FileCase {
            name: "file-not-utf8",
            arg: "w.toml",
            prepare: |d| {
                let mut bytes = WORKLOAD.as_bytes().to_vec();
                let at = bytes.windows(6).position(|w| w == b"\"open\"").unwrap();
                bytes[at + 3] = 0xff;
                std::fs::write(d.join("w.toml"), bytes).unwrap();
            },
            culprit_file: "w.toml",
            at: At::Text("mode = ".into()),
            field: "load.mode",
        },
        FileCase {
            name: "file-chaos-not-utf8",
            arg: "w.toml",
            prepare: |d| {
                let mut bytes = CHAOS.as_bytes().to_vec();
                let at = bytes.windows(4).position(|w| w == b"kill").unwrap();
                bytes[at + 1] = 0xc3;
                std::fs::write(d.join("c.toml"), bytes).unwrap();
            },
            culprit_file: "c.toml",
            at: At::Text("action = \"k".into()),
            field: "fault[0].action",
        },
        FileCase {
            name: "file-chaos-fifo",
            arg: "w.toml",
            prepare: |d| {
                std::fs::remove_file(d.join("c.toml")).unwrap();
                mkfifo(&d.join("c.toml"));
            },
            culprit_file: "w.toml",
            at: At::Text("chaos = ".into()),
            field: "chaos",
        },
        FileCase {
            name: "file-script-fifo",
            arg: "w.toml",
            prepare: |d| {
                std::fs::remove_file(d.join("s.lua")).unwrap();
                mkfifo(&d.join("s.lua"));
            },
            culprit_file: "w.toml",
            at: At::Text("script = ".into()),
            field: "op[2].script",
        },
        FileCase {
            name: "file-empty",
            arg: "w.toml",
            prepare: |d| std::fs::write(d.join("w.toml"), "").unwrap(),
            culprit_file: "w.toml",
            at: At::Line(1),
            field: "load",
        },
    ]
}

/// Names of the containers and networks that carry slotstorm's run label.
fn labelled() -> Vec<String> {
    let mut out = Vec::new();
    for what in [&["ps", "-a"][..], &["network", "ls"][..]] {
        let o = Command::new("docker")
            .args(what)
            .args(["--filter", "label=slotstorm.run", "--format", "{{.Names}}"])
            .output()
            .expect("docker runs");
        out.extend(String::from_utf8_lossy(&o.stdout).lines().map(str::to_string));
    }
    out.sort();
    out
}

/// What one `slotstorm` command did with a bad file.
struct Outcome {
    code: Option<i32>,
    stderr: String,
    took: Duration,
}

fn slotstorm(dir: &Path, args: &[&str]) -> Outcome {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_slotstorm"))
        .current_dir(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("slotstorm runs");
    Outcome {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: t.elapsed(),
    }
}

/// Check one command's outcome against where its error must point; `None` when right, else
/// what is wrong.
fn judge(out: &Outcome, file_text: Option<&str>, file: &str, at: &At, field: &str) -> Option<String> {
    if out.code != Some(2) {
        return Some(format!("exit {:?}, not 2", out.code));
    }
    if out.stderr.lines().count() != 1 {
        return Some(format!("{} lines on stderr", out.stderr.lines().count()));
    }
    if out.stderr.contains("panicked") {
        return Some("a panic".into());
    }
    if out.took > Duration::from_secs(1) {
        return Some(format!("took {:.2} s", out.took.as_secs_f64()));
    }
    let Some(line) = out.stderr.trim_end().strip_prefix("error: ") else {
        return Some(format!("no \"error: \" prefix: {:?}", out.stderr));
    };
    let Some(rest) = line.strip_prefix(&format!("{file}:")) else {
        return Some(format!("does not name {file} first"));
    };
    match at {
        At::File => (!rest.contains(field)).then(|| format!("no {field:?} in the reason")),
        At::Text(_) | At::Line(_) => {
            let want = match at {
                At::Line(n) => *n,
                At::Text(t) => {
                    let text = file_text.expect("the file's text");
                    let offset = text.find(t.as_str()).unwrap_or_else(|| panic!("{t:?} is in {file}"));
                    text[..offset].matches('\n').count() + 1
                }
                At::File => unreachable!(),
            };
            let mut parts = rest.splitn(3, ':');
            let (got_line, column, tail) = (parts.next()?, parts.next()?, parts.next()?);
            if got_line != want.to_string() {
                return Some(format!("line {got_line}, not {want}"));
            }
            if column.parse::<usize>().is_err() {
                return Some(format!("column {column:?}"));
            }
            let named = tail.trim_start();
            (!named.starts_with(field)).then(|| format!("names {:?}, not {field}", named.split(':').next()))
        }
    }
}

fn corpus() -> Vec<Case> {
    let mut all = wrong_types();
    all.extend(unknown_fields());
    all.extend(out_of_range());
    all.extend(contradictions());
    all.extend(syntax());
    all
}

#[test]
fn every_malformed_file_is_one_line_at_its_place_exit_2_and_starts_nothing() {
    let before = labelled();
    let dir = TempDir::new("malformed");
    // The base is valid: every case fails by its own change alone.
    std::fs::write(dir.0.join("w.toml"), WORKLOAD).unwrap();
    std::fs::write(dir.0.join("c.toml"), CHAOS).unwrap();
    std::fs::write(dir.0.join("s.lua"), SCRIPT).unwrap();
    let ok = slotstorm(&dir.0, &["validate", "w.toml"]);
    assert_eq!(ok.code, Some(0), "the base files are valid: {}", ok.stderr);

    let cases = corpus();
    let files = file_cases();
    let total = cases.len() + files.len();
    assert!(total >= 150, "the corpus has {total} cases");
    let mut names = std::collections::HashSet::new();
    let mut wrong = Vec::new();
    for case in &cases {
        assert!(names.insert(case.name.clone()), "two cases are called {}", case.name);
        let d = dir.0.join(&case.name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("w.toml"), &case.workload).unwrap();
        std::fs::write(d.join("c.toml"), &case.chaos).unwrap();
        std::fs::write(d.join("s.lua"), SCRIPT).unwrap();
        let (file, text) = match case.culprit {
            Culprit::Workload => ("w.toml", &case.workload),
            Culprit::Chaos => ("c.toml", &case.chaos),
        };
        for args in [&["validate", "w.toml"][..], &["run", "w.toml", "--results", "results"][..]] {
            let out = slotstorm(&d, args);
            if let Some(why) = judge(&out, Some(text), file, &case.at, &case.field) {
                wrong.push(format!("{} ({}): {why}: {}", case.name, args[0], out.stderr.trim_end()));
            }
        }
        if d.join("results").exists() {
            wrong.push(format!("{}: a results folder was made", case.name));
        }
    }
    for case in &files {
        assert!(names.insert(case.name.to_string()), "two cases are called {}", case.name);
        let d = dir.0.join(case.name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("w.toml"), WORKLOAD).unwrap();
        std::fs::write(d.join("c.toml"), CHAOS).unwrap();
        std::fs::write(d.join("s.lua"), SCRIPT).unwrap();
        (case.prepare)(&d);
        // Read only where a line is expected: the others may be FIFOs, which would block.
        let text = match case.at {
            At::File => None,
            _ => {
                Some(String::from_utf8_lossy(&std::fs::read(d.join(case.culprit_file)).unwrap()).into_owned())
            }
        };
        for args in [&["validate", case.arg][..], &["run", case.arg, "--results", "results"][..]] {
            let out = slotstorm(&d, args);
            if let Some(why) = judge(&out, text.as_deref(), case.culprit_file, &case.at, case.field) {
                wrong.push(format!("{} ({}): {why}: {}", case.name, args[0], out.stderr.trim_end()));
            }
        }
        if d.join("results").exists() {
            wrong.push(format!("{}: a results folder was made", case.name));
        }
    }
    assert!(wrong.is_empty(), "{} of {total} cases went wrong:\n{}", wrong.len(), wrong.join("\n"));
    assert_eq!(labelled(), before, "no container or network was started");
    eprintln!("{total} malformed files, each refused at its place by validate and run");
}

#[test]
fn the_tests_workload_builder_writes_files_the_spec_reads() {
    let dir = TempDir::new("builder");
    dir.write(
        "chaos.toml",
        "[[fault]]\nat = \"1s\"\naction = \"kill\"\ntarget = \"redis-1\"\nduration = \"1s\"\n",
    );
    let text = common::WorkloadToml::new("built")
        .chaos("chaos.toml")
        .cluster("masters = 1")
        .load("duration = \"3s\"")
        .cluster("replicas = 1")
        .client("timeout = \"300ms\"")
        .op("set", common::SET)
        .op("get", r#"["GET", "k:$id"]"#)
        .text();
    let w = slotstorm::spec::load(&dir.write("w.toml", &text)).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(w.name, "built");
    assert_eq!(w.ops.len(), 2);
    assert!(w.chaos.is_some());
    assert_eq!(w.load.duration, Duration::from_secs(3));
}
