//! The shipped workloads load, defaults apply, and bad files fail at the right
//! `file:line:column: field`.
//!
//! Length: tables of files and the error each must give; one test per rule.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// A fresh folder under the system's temp dir for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("slotstorm-spec-{}-{test}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Write `text` as `w.toml` in a scratch folder and load it; the error as printed, with the
/// folder left out so expectations read `w.toml:line:col: ...`.
fn load_err(test: &str, text: &str) -> String {
    let dir = scratch(test);
    let path = dir.join("w.toml");
    fs::write(&path, text).unwrap();
    let err = load(&path).expect_err("the file is bad").to_string();
    let _ = fs::remove_dir_all(&dir);
    let prefix = format!("{}:", path.display());
    assert!(err.starts_with(&prefix), "error names the file: {err}");
    assert!(!err.contains('\n'), "one line: {err}");
    format!("w.toml:{}", &err[prefix.len()..])
}

/// Assert `err` starts with `prefix`, showing both when not.
#[track_caller]
fn assert_prefix(err: &str, prefix: &str) {
    assert!(err.starts_with(prefix), "\n  error: {err}\n   want: {prefix}…");
}

const LOAD: &str = "[load]\nduration = \"5s\"\n";
const OP: &str = "[[op]]\nname = \"get\"\ncommand = [\"GET\", \"k:$id\"]\n";
/// A valid chaos file of one fault.
const CHAOS: &str = "[[fault]]\nat = \"1s\"\naction = \"restart\"\ntarget = \"redis-1\"\n";

fn ok(text: &str) -> Workload {
    parse(Path::new("workloads/test.toml"), text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_shipped_workload_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
    let mut loaded = Vec::new();
    for entry in fs::read_dir(&dir).expect("workloads/ exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let w = load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!w.ops.is_empty());
            let header = fs::read_to_string(&path).unwrap();
            assert!(header.starts_with("# "), "{} opens with a comment header", path.display());
            loaded.push(w.name);
        }
    }
    loaded.sort();
    assert_eq!(
        loaded,
        [
            "flaky-network",
            "kill-primary",
            "mixed",
            "partition-primary",
            "pause-long",
            "pause-short",
            "planned-failover",
            "rate-limit",
            "reshard",
            "reshard-atomic",
            "reshard-with-kill",
            "rolling-restart",
            "scale-in",
            "scale-out",
            "seed-users",
            "smoke",
            "soak-kill"
        ]
    );
}

#[test]
fn every_shipped_chaos_file_has_a_workload_of_its_name() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for entry in fs::read_dir(root.join("chaos")).expect("chaos/ exists") {
        let path = entry.unwrap().path();
        let workload = root.join("workloads").join(path.file_name().unwrap());
        let w = load(&workload).unwrap_or_else(|e| panic!("{}: {e}", workload.display()));
        let chaos = w.chaos.unwrap_or_else(|| panic!("{} names a chaos file", workload.display()));
        assert_eq!(chaos.path, root.join("workloads/../chaos").join(path.file_name().unwrap()));
        // Every fault starts within the run, so none is silently left out.
        let run = w.load.warmup + w.load.duration;
        let scheduled = chaos.schedule(run);
        let occurrences: u32 = chaos.faults.iter().map(|f| f.count).sum();
        let steps = occurrences as usize + chaos.operations.len();
        assert_eq!(scheduled.len(), steps, "{}", workload.display());
        let mut faults = scheduled.iter().filter_map(Scheduled::fault);
        assert!(faults.all(|f| f.heal_at.is_none_or(|h| h < run)), "{}", workload.display());
    }
}

#[test]
fn seed_users_reproduces_the_seed() {
    let w = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/seed-users.toml")).unwrap();
    assert_eq!(w.load.pacing, Pacing::Open { rate: 2000.0 });
    let batch = w.ops.iter().find(|o| o.name == "cache_user_batch").unwrap();
    let OpBody::Pipeline { commands, batch } = &batch.body else { panic!("a pipeline") };
    assert_eq!(*batch, 50);
    assert_eq!(
        commands[0].to_string(),
        "HSET {user:${id}}:profile name user-${id} email user-${id}@example.com tier gold"
    );
    assert_eq!(commands[1].to_string(), "EXPIRE {user:${id}}:profile 3600");
    let ClusterTarget::Embedded(spec) = &w.cluster else { panic!("embedded") };
    assert_eq!((spec.layout.masters, spec.layout.replicas), (3, 1));
    assert_eq!(spec.node_timeout, Duration::from_secs(5));
}

#[test]
fn rate_limit_loads_the_seed_script() {
    let w = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/rate-limit.toml")).unwrap();
    let OpBody::Script { source, keys, args, path } = &w.ops[0].body else { panic!("a script") };
    assert!(path.ends_with("scripts/sliding_window.lua"));
    assert!(source.contains("redis.call('ZREMRANGEBYSCORE', key, 0, now - window)"));
    assert_eq!(keys[0].to_string(), "{ratelimit:${id}}:sliding");
    assert_eq!(args.iter().map(|a| a.to_string()).collect::<Vec<_>>(), ["100", "60", "${now}"]);
}

#[test]
fn a_minimal_file_gets_the_defaults() {
    let w = ok(&format!("{LOAD}{OP}"));
    assert_eq!(w.name, "test");
    assert_eq!(w.chaos, None);
    let ClusterTarget::Embedded(spec) = &w.cluster else { panic!("embedded by default") };
    assert_eq!((spec.layout.masters, spec.layout.replicas), (3, 1));
    assert!(spec.appendonly && spec.require_full_coverage);
    assert_eq!(
        w.load,
        Load {
            duration: Duration::from_secs(5),
            warmup: Duration::ZERO,
            pacing: Pacing::Closed,
            concurrency: Some(16),
            connections: 1,
            seed: 0,
            interval: Duration::from_secs(1),
        }
    );
    assert_eq!(w.client, ClientPolicy::default());
    assert_eq!(
        w.keys,
        Keys {
            count: 10_000,
            distribution: Distribution::Uniform,
            value_size: ValueSize { min: 64, max: 64 }
        }
    );
    assert_eq!(w.ops[0].weight, 1);
    let OpBody::Command(cmd) = &w.ops[0].body else { panic!("a command") };
    assert_eq!(cmd.to_string(), "GET k:${id}");
    assert!(w.slo.is_empty(), "no SLO unless the file sets one");
}

#[test]
fn explicit_values_resolve() {
    let w =
        ok("name = \"x\"\n[cluster]\nkind = \"external\"\nseeds = [\"127.0.0.1:7001\"]\npassword = \"pw\"\n\
         [load]\nduration = \"1m\"\nmode = \"open\"\nrate = 2.5\ninterval = \"250ms\"\n\
         [client]\nbackoff = \"5s\"\n\
         [keys]\ndistribution = \"zipfian\"\nvalue_size = { min = 1, max = 9 }\n\
         [[op]]\nname = \"p\"\npipeline = [[\"set\", \"a\", 1]]\nbatch = 3\n");
    let ClusterTarget::External { seeds, password } = &w.cluster else { panic!("external") };
    assert_eq!((seeds.as_slice(), password.as_deref()), (&["127.0.0.1:7001".to_string()][..], Some("pw")));
    assert_eq!(w.load.pacing, Pacing::Open { rate: 2.5 });
    assert_eq!(w.load.interval, Duration::from_millis(250));
    assert_eq!(w.client.backoff_max, Duration::from_secs(5), "a long backoff raises the default cap");
    assert_eq!(w.keys.distribution, Distribution::Zipfian { theta: 0.99 });
    assert_eq!(w.keys.value_size, ValueSize { min: 1, max: 9 });
    let OpBody::Pipeline { commands, batch: 3 } = &w.ops[0].body else { panic!("a batch of 3") };
    assert_eq!(commands[0].to_string(), "SET a 1", "names are uppercased, integers are arguments");
}

#[test]
fn backoff_doubles_up_to_its_cap() {
    let p = ClientPolicy {
        backoff: Duration::from_millis(100),
        backoff_max: Duration::from_millis(350),
        ..Default::default()
    };
    let waits: Vec<_> = (0..4).map(|n| p.backoff_before(n).as_millis()).collect();
    assert_eq!(waits, [100, 200, 350, 350]);
    assert_eq!(p.backoff_before(200), Duration::from_millis(350));
}

#[test]
fn a_syntax_error_names_line_column_and_key() {
    let err = load_err("syntax", &format!("name = \"x\" y\n{LOAD}{OP}"));
    assert_prefix(&err, "w.toml:1:12: name: invalid TOML: ");
}

#[test]
fn an_unknown_field_in_load_is_placed_at_its_key() {
    let err = load_err("unknown-load", &format!("{LOAD}bogus = 1\n{OP}"));
    assert_prefix(&err, "w.toml:3:1: load.bogus: unknown field `bogus`, expected one of `duration`, ");
}

#[test]
fn an_unknown_field_in_an_op_names_the_op() {
    let err = load_err("unknown-op", &format!("{LOAD}{OP}[[op]]\nname = \"b\"\ncolour = \"red\"\n"));
    assert_prefix(&err, "w.toml:8:1: op[1].colour: unknown field `colour`");
}

#[test]
fn a_wrong_type_says_what_is_expected() {
    let err = load_err("wrong-type", &format!("[load]\nduration = 5\n{OP}"));
    assert_eq!(
        err,
        "w.toml:2:12: load.duration: invalid type: integer `5`, expected a duration as a string such as \"500ms\", \"5s\" or \"1m 30s\""
    );
    let err = load_err("bad-duration", &format!("[load]\nduration = \"5 parsecs\"\n{OP}"));
    assert_prefix(
        &err,
        "w.toml:2:12: load.duration: invalid value: string \"5 parsecs\", expected a duration",
    );
    let err = load_err("negative", &format!("{LOAD}concurrency = -1\n{OP}"));
    assert_eq!(
        err,
        "w.toml:3:15: load.concurrency: invalid value: integer `-1`, expected a whole number, 0 or more"
    );
}

#[test]
fn a_zero_weight_is_rejected() {
    let text = format!(
        "{LOAD}[[op]]\nname = \"a\"\ncommand = [\"GET\", \"k\"]\n[[op]]\nname = \"b\"\ncommand = [\"GET\", \"k\"]\n\
         [[op]]\nname = \"c\"\nweight = 0\ncommand = [\"GET\", \"k\"]\n"
    );
    assert_eq!(load_err("weight", &text), "w.toml:11:10: op[2].weight: must be at least 1");
}

#[test]
fn open_loop_needs_a_rate() {
    let err = load_err("open", &format!("{LOAD}mode = \"open\"\n{OP}"));
    assert_prefix(&err, "w.toml:3:8: load.rate: required with mode = \"open\"");
}

#[test]
fn closed_loop_forbids_a_rate() {
    let err = load_err("closed", &format!("{LOAD}mode = \"closed\"\nrate = 100\n{OP}"));
    assert_prefix(&err, "w.toml:4:8: load.rate: only for mode = \"open\"");
    let err = load_err("closed-default", &format!("{LOAD}rate = 100\n{OP}"));
    assert_prefix(&err, "w.toml:3:8: load.rate: only for mode = \"open\"");
}

#[test]
fn an_unknown_placeholder_points_at_its_dollar() {
    let err =
        load_err("placeholder", &format!("{LOAD}[[op]]\nname = \"a\"\ncommand = [\"GET\", \"k:$idd\"]\n"));
    assert_prefix(&err, "w.toml:5:22: op[0].command[1]: unknown placeholder `$idd`; placeholders are $id, ");
    let text = format!(
        "{LOAD}[[op]]\nname = \"a\"\npipeline = [\n  [\"SET\", \"k\", \"1\"],\n  [\"SET\", \"k\", \"$x\"],\n]\n"
    );
    assert_prefix(
        &load_err("placeholder-pipeline", &text),
        "w.toml:7:17: op[0].pipeline[1][2]: unknown placeholder `$x`",
    );
    // With an escape in the string the column is the string's start.
    let text = format!("{LOAD}[[op]]\nname = \"a\"\ncommand = [\"GET\", \"\\u0041$what\"]\n");
    assert_prefix(
        &load_err("placeholder-escaped", &text),
        "w.toml:5:19: op[0].command[1]: unknown placeholder",
    );
}

#[test]
fn a_missing_script_file_is_named() {
    let text = format!("{LOAD}[[op]]\nname = \"s\"\nscript = \"scripts/nope.lua\"\nkeys = [\"k\"]\n");
    let err = load_err("script", &text);
    assert_prefix(&err, "w.toml:5:10: op[0].script: cannot read ");
    assert!(
        err.contains("scripts/nope.lua") && err.contains("relative to the workload file's folder"),
        "{err}"
    );
}

#[test]
fn a_script_is_read_relative_to_the_workload() {
    let dir = scratch("script-ok");
    fs::create_dir(dir.join("lua")).unwrap();
    fs::write(dir.join("lua/one.lua"), "return 1\n").unwrap();
    fs::write(dir.join("chaos.toml"), CHAOS).unwrap();
    let text = format!(
        "chaos = \"chaos.toml\"\n{LOAD}[[op]]\nname = \"s\"\nscript = \"lua/one.lua\"\nkeys = [\"k:$id\"]\n"
    );
    fs::write(dir.join("w.toml"), text).unwrap();
    let w = load(&dir.join("w.toml")).unwrap();
    let chaos = w.chaos.expect("the chaos file is loaded");
    assert_eq!(chaos.path, dir.join("chaos.toml"));
    assert_eq!(chaos.faults[0].action, Action::Restart);
    let OpBody::Script { source, args, .. } = &w.ops[0].body else { panic!("a script") };
    assert_eq!((source.as_str(), args.len()), ("return 1\n", 0));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_chaos_file_is_reported_in_that_file() {
    let dir = scratch("chaos-bad");
    fs::create_dir(dir.join("chaos")).unwrap();
    let chaos = dir.join("chaos/c.toml");
    fs::write(&chaos, CHAOS.replace("restart", "reboot")).unwrap();
    fs::write(dir.join("w.toml"), format!("chaos = \"chaos/c.toml\"\n{LOAD}{OP}")).unwrap();
    let err = load(&dir.join("w.toml")).unwrap_err();
    let at = err.located().expect("an error inside a file");
    assert_eq!((at.path.as_path(), at.line, at.column), (chaos.as_path(), 3, 10));
    assert_prefix(
        &err.to_string(),
        &format!("{}:3:10: fault[0].action: unknown variant `reboot`", chaos.display()),
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn chaos_that_would_start_after_the_run_ends_or_hit_no_node_is_refused_in_the_chaos_file() {
    let dir = scratch("chaos-late");
    let c = dir.join("c.toml").display().to_string();
    // 5 s of load and no warm-up: a fault at 5 s would never happen; one at 4.9 s does.
    let late = CHAOS.replace("1s", "5s");
    fs::write(dir.join("c.toml"), &late).unwrap();
    fs::write(dir.join("w.toml"), format!("chaos = \"c.toml\"\n{LOAD}warmup = \"0s\"\n{OP}")).unwrap();
    let err = load(&dir.join("w.toml")).unwrap_err().to_string();
    assert_prefix(
        &err,
        &format!(
            "{c}:2:6: fault[0].at: restart at 5s would start after the run ends (warm-up 0s + duration 5s = 5s)"
        ),
    );
    fs::write(dir.join("c.toml"), CHAOS.replace("1s", "4900ms")).unwrap();
    assert!(load(&dir.join("w.toml")).is_ok());
    // Repeats whose last one starts after the end: placed at `count`.
    let repeats = "[[fault]]\nat = \"1s\"\naction = \"kill\"\ntarget = \"redis-1\"\nduration = \"1s\"\nevery = \"2s\"\ncount = 2\n";
    fs::write(dir.join("c.toml"), repeats).unwrap();
    assert!(load(&dir.join("w.toml")).is_ok(), "at 1 and 3 s");
    fs::write(dir.join("c.toml"), repeats.replace("count = 2", "count = 3")).unwrap();
    let err = load(&dir.join("w.toml")).unwrap_err().to_string();
    assert_prefix(
        &err,
        &format!("{c}:7:9: fault[0].count: its last repeat (3 every 2s from 1s) would start at 5s"),
    );
    // A node the cluster never has: 3 × 1 is redis-1 to redis-6, and an add-node makes a 7th.
    fs::write(dir.join("c.toml"), CHAOS.replace("redis-1", "redis-7")).unwrap();
    let err = load(&dir.join("w.toml")).unwrap_err().to_string();
    assert_prefix(
        &err,
        &format!("{c}:4:10: fault[0].target: no node redis-7: the cluster has redis-1 to redis-6"),
    );
    let add = "[[operation]]\nat = \"1s\"\naction = \"add-node\"\n";
    fs::write(dir.join("c.toml"), format!("{}{add}", CHAOS.replace("redis-1", "redis-7"))).unwrap();
    assert!(load(&dir.join("w.toml")).is_ok());
    let failover = "[[operation]]\nat = \"2s\"\naction = \"failover\"\ntarget = \"redis-9\"\n";
    fs::write(dir.join("c.toml"), format!("{CHAOS}{failover}")).unwrap();
    let err = load(&dir.join("w.toml")).unwrap_err().to_string();
    assert_prefix(&err, &format!("{c}:8:10: operation[0].target: no node redis-9"));
    let op = "[[operation]]\nat = \"6s\"\naction = \"failover\"\ntarget = \"redis-4\"\n";
    fs::write(dir.join("c.toml"), format!("{CHAOS}{op}")).unwrap();
    assert_prefix(
        &load(&dir.join("w.toml")).unwrap_err().to_string(),
        &format!("{c}:6:6: operation[0].at: failover at 6s"),
    );
    // An external cluster cannot be broken: the workload's `chaos` is at fault.
    fs::write(dir.join("c.toml"), CHAOS).unwrap();
    let external = "chaos = \"c.toml\"\n[cluster]\nkind = \"external\"\nseeds = [\"127.0.0.1:7000\"]\n";
    fs::write(dir.join("w.toml"), format!("{external}{LOAD}{OP}")).unwrap();
    let err = load(&dir.join("w.toml")).unwrap_err().to_string();
    assert_prefix(
        &err,
        &format!("{}:1:9: chaos: chaos needs an embedded cluster", dir.join("w.toml").display()),
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_chaos_file_is_the_workloads_error() {
    let err = load_err("chaos-missing", &format!("chaos = \"nope.toml\"\n{LOAD}{OP}"));
    assert_prefix(&err, "w.toml:1:9: chaos: no file at ");
}

#[test]
fn an_op_has_exactly_one_body() {
    let text =
        format!("{LOAD}[[op]]\nname = \"a\"\ncommand = [\"GET\", \"k\"]\npipeline = [[\"GET\", \"k\"]]\n");
    assert_prefix(
        &load_err("two-bodies", &text),
        "w.toml:6:12: op[0].pipeline: an op has exactly one of `command`, `pipeline` or `script`; this one also has `command` (line 5)",
    );
    let text = format!("{LOAD}[[op]]\nname = \"a\"\n");
    assert_prefix(
        &load_err("no-body", &text),
        "w.toml:3:1: op[0]: needs one of `command`, `pipeline` or `script`",
    );
}

#[test]
fn op_names_are_unique() {
    let err = load_err("dup", &format!("{LOAD}{OP}{OP}"));
    assert_eq!(
        err,
        "w.toml:7:8: op[1].name: op names must be unique; op[0] at line 4 is also called \"get\""
    );
}

#[test]
fn an_external_cluster_needs_seeds() {
    let err = load_err("seeds", &format!("[cluster]\nkind = \"external\"\n{LOAD}{OP}"));
    assert_prefix(&err, "w.toml:1:1: cluster.seeds: required with kind = \"external\"");
    let err = load_err("seeds-empty", &format!("[cluster]\nkind = \"external\"\nseeds = []\n{LOAD}{OP}"));
    assert_prefix(&err, "w.toml:3:9: cluster.seeds: must name at least one node");
    let err = load_err(
        "seeds-bad",
        &format!("[cluster]\nkind = \"external\"\nseeds = [\"a:1\", \"b\"]\n{LOAD}{OP}"),
    );
    assert_prefix(&err, "w.toml:3:17: cluster.seeds[1]: \"b\" is not `host:port`");
}

#[test]
fn the_engine_is_redis_or_valkey_and_only_for_an_embedded_cluster() {
    let dir = scratch("valkey");
    fs::write(dir.join("w.toml"), format!("[cluster]\nengine = \"valkey\"\n{LOAD}{OP}")).unwrap();
    let w = load(&dir.join("w.toml")).unwrap();
    let _ = fs::remove_dir_all(&dir);
    let ClusterTarget::Embedded(spec) = &w.cluster else { panic!("embedded") };
    assert_eq!(spec.engine, crate::backend::engine::Engine::Valkey);
    let err = load_err("keydb", &format!("[cluster]\nengine = \"keydb\"\n{LOAD}{OP}"));
    assert_prefix(&err, "w.toml:2:10: cluster.engine: ");
    assert!(err.contains("redis") && err.contains("valkey"), "{err}");
    let text = format!("[cluster]\nkind = \"external\"\nseeds = [\"h:1\"]\nengine = \"valkey\"\n{LOAD}{OP}");
    assert_prefix(
        &load_err("engine-external", &text),
        "w.toml:4:10: cluster.engine: only for kind = \"embedded\"",
    );
}

#[test]
fn embedded_only_fields_are_rejected_on_external() {
    let text = format!("[cluster]\nkind = \"external\"\nseeds = [\"h:1\"]\nmasters = 3\n{LOAD}{OP}");
    assert_prefix(
        &load_err("embedded-only", &text),
        "w.toml:4:11: cluster.masters: only for kind = \"embedded\"",
    );
    let text = format!("[cluster]\npassword = \"x\"\n{LOAD}{OP}");
    assert_prefix(
        &load_err("external-only", &text),
        "w.toml:2:12: cluster.password: only for kind = \"external\"",
    );
}

#[test]
fn other_rules_between_fields() {
    let cases: [(&str, &str); 10] = [
        ("[keys]\ntheta = 0.5\n", "w.toml:2:9: keys.theta: only for distribution = \"zipfian\""),
        (
            "[keys]\ndistribution = \"zipfian\"\ntheta = 1.0\n",
            "w.toml:3:9: keys.theta: must lie between 0 and 1",
        ),
        (
            "[keys]\nvalue_size = { min = 9, max = 2 }\n",
            "w.toml:2:31: keys.value_size.max: must be at least `min` (9)",
        ),
        (
            "[keys]\nvalue_size = { min = 9, most = 2 }\n",
            "w.toml:2:25: keys.value_size.most: unknown field `most`",
        ),
        (
            "[keys]\nvalue_size = \"big\"\n",
            "w.toml:2:14: keys.value_size: invalid type: string \"big\", expected a size in bytes",
        ),
        ("[cluster]\nmasters = 0\n", "w.toml:2:11: cluster.masters: must be between 1 and 100"),
        (
            "[cluster]\nconfig = { port = \"1\" }\n",
            "w.toml:2:19: cluster.config.port: cannot be set here; slotstorm sets it",
        ),
        (
            "[cluster]\nconfig = { maxmemory = 1 }\n",
            "w.toml:2:24: cluster.config.maxmemory: invalid type: integer `1`, expected a string",
        ),
        (
            "[client]\nbackoff_max = \"10ms\"\n",
            "w.toml:2:15: client.backoff_max: must be at least `backoff` (100ms)",
        ),
        ("name = \"../up\"\n", "w.toml:1:8: name: a run name is 1 to 100 of letters"),
    ];
    for (i, (extra, want)) in cases.iter().enumerate() {
        // The extra table goes first so its line numbers are the ones written above.
        assert_prefix(&load_err(&format!("rule-{i}"), &format!("{extra}{LOAD}{OP}")), want);
    }
}

#[test]
fn commands_and_ops_are_checked() {
    let op = |body: &str| format!("{LOAD}[[op]]\nname = \"a\"\n{body}\n");
    let cases: [(&str, &str); 6] = [
        (
            "command = [\"PING\"]",
            "w.toml:5:12: op[0].command[0]: `PING` has no arguments: argument 1 is the key",
        ),
        ("command = []", "w.toml:5:11: op[0].command: must name a command and its key"),
        ("command = [\"$id\", \"k\"]", "w.toml:5:12: op[0].command[0]: \"$id\" is not a command name"),
        (
            "command = [\"EVAL\", \"return 1\", 0]",
            "w.toml:5:12: op[0].command[0]: `EVAL` is not routed by its first argument",
        ),
        ("command = [\"GET\", \"k\"]\nbatch = 2", "w.toml:6:9: op[0].batch: only with `pipeline`"),
        ("command = [\"GET\", \"k\"]\nkeys = [\"k\"]", "w.toml:6:8: op[0].keys: only with `script`"),
    ];
    for (i, (body, want)) in cases.iter().enumerate() {
        assert_prefix(&load_err(&format!("op-{i}"), &op(body)), want);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/scripts/sliding_window.lua");
    let err = load_err("op-script", &op(&format!("script = {:?}", script.display().to_string())));
    assert_prefix(&err, "w.toml:5:10: op[0].keys: required with `script`");
    let err = load_err("op-name", &op("command = [\"GET\", \"k\"]").replace("\"a\"", "\"Get\""));
    assert_prefix(&err, "w.toml:4:8: op[0].name: must be 1 to 64 of `a-z`");
}

#[test]
fn missing_tables_and_fields_are_named() {
    assert_prefix(&load_err("no-load", OP), "w.toml:1:1: load: missing field `load`, which is required here");
    assert_prefix(&load_err("no-ops", LOAD), "w.toml:1:1: op: a workload needs at least one [[op]] table");
    let err = load_err("no-duration", &format!("[load]\nmode = \"closed\"\n{OP}"));
    assert_prefix(&err, "w.toml:1:1: load.duration: missing field `duration`, which is required here");
    let err = load_err("no-op-name", &format!("{LOAD}{OP}[[op]]\ncommand = [\"GET\", \"k\"]\n"));
    assert_prefix(&err, "w.toml:6:1: op[1].name: missing field `name`");
}

#[test]
fn an_unreadable_file_is_a_read_error() {
    let err = load(Path::new("workloads/does-not-exist.toml")).unwrap_err();
    assert!(matches!(err, SpecError::Read { .. }));
    assert!(err.to_string().starts_with("workloads/does-not-exist.toml: cannot read the file: "), "{err}");
    assert!(err.located().is_none());
}

#[test]
fn kill_primary_sets_slos_for_its_failover() {
    let w = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/kill-primary.toml")).unwrap();
    assert_eq!(w.slo.max_failover, Some(Duration::from_secs(20)));
    assert!(w.slo.p99.iter().any(|(op, _)| op == "get-profile"));
}

#[test]
fn an_slo_table_resolves_in_file_order() {
    let text = format!(
        "{LOAD}{OP}[[op]]\nname = \"set\"\ncommand = [\"SET\", \"k\", \"v\"]\n\
         [slo]\nmax_failover = \"10s\"\nmax_disruption = \"5s\"\nmax_error_window = \"3s\"\n\
         max_lost_writes = 0\nmax_over_admissions = 2\nmin_throughput = 900\nmax_send_lag = \"50ms\"\n\
         p99_9 = {{ get = \"20ms\" }}\n[slo.p99]\nset = \"7ms\"\nget = \"5ms\"\n"
    );
    let w = ok(&text);
    assert_eq!(
        w.slo,
        Slo {
            max_failover: Some(Duration::from_secs(10)),
            max_disruption: Some(Duration::from_secs(5)),
            max_error_window: Some(Duration::from_secs(3)),
            max_lost_writes: Some(0),
            max_over_admissions: Some(2),
            min_throughput: Some(900.0),
            max_send_lag: Some(Duration::from_millis(50)),
            p99: vec![("set".into(), Duration::from_millis(7)), ("get".into(), Duration::from_millis(5))],
            p99_9: vec![("get".into(), Duration::from_millis(20))],
        }
    );
    assert!(!w.slo.is_empty());
}

#[test]
fn slo_errors_are_placed() {
    let cases: [(&str, &str); 8] = [
        (
            "[slo]\nmax_failure = \"10s\"\n",
            "w.toml:2:1: slo.max_failure: unknown field `max_failure`, expected one of `max_failover`, ",
        ),
        (
            "[slo]\nmax_failover = 10\n",
            "w.toml:2:16: slo.max_failover: invalid type: integer `10`, expected a duration as a string",
        ),
        (
            "[slo]\nmax_lost_writes = -1\n",
            "w.toml:2:19: slo.max_lost_writes: invalid value: integer `-1`, expected a whole number, 0 or more",
        ),
        (
            "[slo]\nmin_throughput = 0\n",
            "w.toml:2:18: slo.min_throughput: must be a number of ops per second above 0",
        ),
        (
            "[slo.p99]\nget = \"5ms\"\n  gett = \"5ms\"\n",
            "w.toml:3:3: slo.p99.gett: no op is called \"gett\"; the workload's ops are get",
        ),
        (
            "[slo]\np99_9 = { get = \"1ms\", \"nope\" = \"1ms\" }\n",
            "w.toml:2:24: slo.p99_9.nope: no op is called \"nope\"",
        ),
        (
            "[slo.p99]\nget = \"soon\"\n",
            "w.toml:2:7: slo.p99.get: invalid value: string \"soon\", expected a duration",
        ),
        ("[slo.p99]\nget = \"0ms\"\n", "w.toml:2:7: slo.p99.get: must be longer than 0s"),
    ];
    for (i, (extra, want)) in cases.iter().enumerate() {
        // The [slo] table goes first so its line numbers are the ones written above; ops
        // are resolved before it wherever it stands.
        assert_prefix(&load_err(&format!("slo-{i}"), &format!("{extra}{LOAD}{OP}")), want);
    }
    // A dotted key at the top level: the column is the op name's.
    let err = load_err("slo-dotted", &format!("slo.p99.put = \"1ms\"\n{LOAD}{OP}"));
    assert_prefix(&err, "w.toml:1:9: slo.p99.put: no op is called \"put\"");
}

#[test]
fn open_loop_in_flight_is_sized_from_rate_and_policy_unless_a_pool_or_limit_sets_it() {
    use crate::spec::{InFlight, LimitSource};
    let open = "[load]\nduration = \"10s\"\nmode = \"open\"\nrate = 1000\n";
    // 3 attempts of 1 s and backoffs of 100 + 200 ms: 3.3 s at 1000 ops/s, a quarter more.
    let w = ok(&format!("{open}[client]\ntimeout = \"1s\"\nretries = 2\n{OP}"));
    assert_eq!(w.client.worst_op_time(), Duration::from_millis(3300));
    assert_eq!(w.in_flight(), InFlight { limit: 4125, source: LimitSource::Sized });
    let w = ok(&format!("{open}concurrency = 64\n{OP}"));
    assert_eq!(w.in_flight(), InFlight { limit: 64, source: LimitSource::Set });
    let w = ok(&format!("{open}[client]\npool = 32\n{OP}"));
    assert_eq!(w.in_flight(), InFlight { limit: 32, source: LimitSource::Pool });
    let w = ok(&format!("[load]\nduration = \"10s\"\nmode = \"open\"\nrate = 1e7\n{OP}"));
    assert_eq!(w.in_flight().limit, crate::spec::MAX_IN_FLIGHT, "capped");
    let w = ok(&format!("[load]\nduration = \"10s\"\nmode = \"open\"\nrate = 1\n{OP}"));
    assert_eq!(w.in_flight().limit, 16, "at least 16");
    let w = ok(&format!("[load]\nduration = \"10s\"\n{OP}"));
    assert_eq!(w.in_flight(), InFlight { limit: 16, source: LimitSource::Workers });
}

#[test]
fn a_pool_is_refused_in_a_closed_loop_and_beside_an_in_flight_limit() {
    let err = load_err("closed", &format!("[load]\nduration = \"10s\"\n[client]\npool = 8\n{OP}"));
    assert!(err.starts_with("w.toml:4:8: client.pool: only for mode = \"open\""), "{err}");
    let text = format!(
        "[load]\nduration = \"10s\"\nmode = \"open\"\nrate = 10\nconcurrency = 4\n[client]\npool = 8\n{OP}"
    );
    let err = load_err("both", &text);
    assert!(err.starts_with("w.toml:7:8: client.pool: set either `client.pool`"), "{err}");
}

#[test]
fn a_client_library_takes_its_own_retries_and_refuses_what_it_cannot_be_told() {
    let w = ok(&format!("{LOAD}[client]\nlibrary = \"redis-py\"\n{OP}"));
    assert_eq!((w.client.library, w.client.retries), (ClientLibrary::RedisPy, 3), "redis-py's own default");
    let w = ok(&format!("{LOAD}[client]\nlibrary = \"redis-py\"\nretries = 1\n{OP}"));
    assert_eq!(w.client.retries, 1, "a file's retries win");
    assert_eq!(ok(&format!("{LOAD}{OP}")).client.library, ClientLibrary::Slotstorm);
    let err =
        load_err("lib-backoff", &format!("{LOAD}[client]\nlibrary = \"redis-py\"\nbackoff = \"1s\"\n{OP}"));
    assert_prefix(&err, "w.toml:5:11: client.backoff: redis-py's RedisCluster has no backoff setting");
    let open = "[load]\nduration = \"5s\"\nmode = \"open\"\nrate = 10\n";
    let err = load_err("lib-pool", &format!("{open}[client]\nlibrary = \"redis-py\"\npool = 2000\n{OP}"));
    assert_prefix(
        &err,
        "w.toml:7:8: client.pool: redis-py sends from a thread per op in flight: at most 1024",
    );
    let err =
        load_err("lib-conc", &format!("{LOAD}concurrency = 5000\n[client]\nlibrary = \"redis-py\"\n{OP}"));
    assert_prefix(&err, "w.toml:3:15: load.concurrency: redis-py sends from a thread per op in flight");
    let w = ok(&format!("{LOAD}[client]\nlibrary = \"redis-py\"\ninstances = \"per-thread\"\n{OP}"));
    assert_eq!(w.client.instances, Instances::PerThread);
    let err = load_err("own-instances", &format!("{LOAD}[client]\ninstances = \"per-thread\"\n{OP}"));
    assert_prefix(&err, "w.toml:4:13: client.instances: only with a real `client.library`");
    let err = load_err("lib-name", &format!("{LOAD}[client]\nlibrary = \"jedis\"\n{OP}"));
    assert_prefix(&err, "w.toml:4:11: client.library: unknown variant `jedis`");
}

#[test]
fn what_is_not_a_regular_file_is_refused_at_once_never_read() {
    let dir = scratch("not-a-file");
    let fifo = dir.join("w.toml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(made.success());
    // Reading a FIFO with no writer would block forever: the check comes first.
    let started = std::time::Instant::now();
    let err = load(&fifo).expect_err("a FIFO is no workload").to_string();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(err.ends_with("cannot read the file: it is not a regular file (a FIFO, a socket or a device?): give the path of a file"), "{err}");
    let err = load(&dir).expect_err("a directory is no workload").to_string();
    assert!(err.ends_with("cannot read the file: it is a directory, not a file"), "{err}");
    let err = load(Path::new("/dev/null")).expect_err("a device is no workload").to_string();
    assert!(err.contains("not a regular file"), "{err}");
    let big = dir.join("big.toml");
    fs::write(&big, vec![b'#'; 4 * 1024 * 1024 + 1]).unwrap();
    assert!(load(&big).expect_err("too large").to_string().contains("bytes long, more than"));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_byte_that_is_not_utf8_is_placed_at_its_line_and_column() {
    let dir = scratch("not-utf8");
    let path = dir.join("w.toml");
    fs::write(&path, b"[load]\nduration = \"5s\"\nmode = \"cl\xffosed\"\n").unwrap();
    let err = load(&path).expect_err("not UTF-8").to_string();
    assert!(err.ends_with("w.toml:3:11: load.mode: byte 0xff is not UTF-8: files are UTF-8 text"), "{err}");
    // In the chaos file it names, the chaos file is the one at fault.
    fs::write(dir.join("c.toml"), b"[[fault]]\nat = \"1s\"\naction = \"k\xc3ill\"\n").unwrap();
    fs::write(&path, format!("chaos = \"c.toml\"\n{LOAD}{OP}")).unwrap();
    let err = load(&path).expect_err("chaos not UTF-8").to_string();
    assert!(err.contains("c.toml:3:12: fault[0].action: byte 0xc3 is not UTF-8"), "{err}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn values_that_cannot_run_or_mean_nothing_are_refused_where_they_stand() {
    let cases: &[(&str, String, &str)] = &[
        (
            "rate-huge",
            format!("[load]\nduration = \"5s\"\nmode = \"open\"\nrate = 1e12\n{OP}"),
            "w.toml:4:8: load.rate: must be a number of ops per second above 0 and at most 10000000",
        ),
        (
            "rate-tiny",
            format!("[load]\nduration = \"5s\"\nmode = \"open\"\nrate = 0.1\n{OP}"),
            "w.toml:4:8: load.rate: 0.1 ops/s for 5s sends no op at all",
        ),
        (
            "duration-ns",
            format!("[load]\nduration = \"1ns\"\n{OP}"),
            "w.toml:2:12: load.duration: 1ns is not a whole number of microseconds",
        ),
        (
            "duration-short",
            format!("[load]\nduration = \"99ms\"\n{OP}"),
            "w.toml:2:12: load.duration: must be at least 100ms",
        ),
        (
            "duration-huge",
            format!("[load]\nduration = \"18446744073709551615s\"\n{OP}"),
            "w.toml:2:12: load.duration: 18446744073709551615s is longer than any run",
        ),
        (
            "warmup-huge",
            format!("{LOAD}warmup = \"100000000h\"\n{OP}"),
            "w.toml:3:10: load.warmup: 100000000h is longer than any run",
        ),
        (
            "timeout-ns",
            format!("{LOAD}[client]\ntimeout = \"1500ns\"\n{OP}"),
            "w.toml:4:11: client.timeout: 1500ns is not a whole number",
        ),
        ("value-zero", format!("{LOAD}[keys]\nvalue_size = 0\n{OP}"), "w.toml:4:14: keys.value_size: "),
        (
            "node-timeout-huge",
            format!("[cluster]\nnode_timeout = \"11m\"\n{LOAD}{OP}"),
            "w.toml:2:16: cluster.node_timeout: must be at most 10m: 11m is longer than any failure detection",
        ),
        (
            "client-timeout-huge",
            format!("{LOAD}[client]\ntimeout = \"100000000h\"\n{OP}"),
            "w.toml:4:11: client.timeout: 100000000h is longer than any run",
        ),
        (
            "client-timeout-hours",
            format!("{LOAD}[client]\ntimeout = \"2h\"\n{OP}"),
            "w.toml:4:11: client.timeout: must be at most 10m",
        ),
        (
            "client-timeout-zero",
            format!("{LOAD}[client]\ntimeout = \"0s\"\n{OP}"),
            "w.toml:4:11: client.timeout: must be at least 1us",
        ),
        (
            "backoff-huge",
            format!("{LOAD}[client]\nbackoff = \"1h\"\n{OP}"),
            "w.toml:4:11: client.backoff: must be at most 10m",
        ),
        (
            "backoff-max-huge",
            format!("{LOAD}[client]\nbackoff_max = \"30d\"\n{OP}"),
            "w.toml:4:15: client.backoff_max: must be at most 10m",
        ),
        (
            "batch-of-values-too-big",
            format!(
                "{LOAD}[keys]\nvalue_size = 4194304\n[[op]]\nname = \"p\"\npipeline = [[\"SET\", \"k:$id\", \"$value\"]]\nbatch = 100\n"
            ),
            "w.toml:8:9: op[0].batch: 100 `$value`s of up to 4.0 MiB (keys.value_size) make 400 MiB in one op; at most 64 MiB",
        ),
        (
            "command-of-values-too-big",
            format!(
                "{LOAD}[keys]\nvalue_size = {{ min = 1, max = 4194304 }}\n[[op]]\nname = \"m\"\ncommand = [\"RPUSH\", \"k:$id\"{}]\n",
                ", \"$value\"".repeat(20)
            ),
            "w.toml:7:11: op[0].command: 20 `$value`s of up to 4.0 MiB (keys.value_size) make 80 MiB in one op",
        ),
        (
            "batch-of-commands-too-many",
            format!(
                "{LOAD}[[op]]\nname = \"p\"\npipeline = [{}]\nbatch = 10000\n",
                ["[\"GET\", \"k:$id\"]"; 11].join(", ")
            ),
            "w.toml:6:9: op[0].batch: 110000 commands in one op (11 × batch 10000); at most 100000",
        ),
        (
            "config-newline",
            format!("[cluster]\nconfig = {{ maxmemory = \"256mb\\nrequirepass x\" }}\n{LOAD}{OP}"),
            "w.toml:2:24: cluster.config.maxmemory: must be one line without control characters",
        ),
    ];
    for (test, text, want) in cases {
        let err = load_err(test, text);
        assert_prefix(&err, want);
    }
    // A long value is cut, not echoed whole.
    let long = "9".repeat(100_000);
    let err = load_err("duration-long", &format!("[load]\nduration = \"{long}\"\n{OP}"));
    assert!(err.len() < 300 && err.contains("… (100000 characters)"), "{err}");
    // Several arguments in one value are fine.
    assert!(
        parse(Path::new("w.toml"), &format!("[cluster]\nconfig = {{ save = \"900 1\" }}\n{LOAD}{OP}"))
            .is_ok()
    );
}

#[test]
fn an_atomic_reshard_needs_a_valkey_cluster_and_says_so_at_its_method() {
    let dir = scratch("atomic");
    let c = dir.join("c.toml").display().to_string();
    let op = "[[operation]]\nat = \"1s\"\naction = \"reshard\"\nfrom = \"redis-1\"\nto = \"redis-2\"\nslots = 100\nmethod = \"atomic\"\n";
    fs::write(dir.join("c.toml"), op).unwrap();
    fs::write(dir.join("w.toml"), format!("chaos = \"c.toml\"\n{LOAD}{OP}")).unwrap();
    let err = load(&dir.join("w.toml")).unwrap_err().to_string();
    assert_prefix(
        &err,
        &format!("{c}:7:10: operation[0].method: method = \"atomic\" needs Valkey 9's atomic slot migration"),
    );
    assert!(err.contains("this cluster runs redis"), "{err}");
    fs::write(dir.join("w.toml"), format!("chaos = \"c.toml\"\n[cluster]\nengine = \"valkey\"\n{LOAD}{OP}"))
        .unwrap();
    let w = load(&dir.join("w.toml")).unwrap();
    let ops = &w.chaos.as_ref().unwrap().operations;
    assert!(
        matches!(&ops[0].operation, chaos::Operation::Reshard { migration, .. } if migration.method == chaos::MigrationMethod::Atomic)
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn shutdown_failover_needs_a_valkey_cluster_and_says_so_at_its_action() {
    let dir = scratch("shutdown-failover");
    let c = dir.join("c.toml").display().to_string();
    let fault = "[[fault]]\nat = \"1s\"\naction = \"shutdown-failover\"\ntarget = \"random-primary\"\nduration = \"1s\"\n";
    fs::write(dir.join("c.toml"), fault).unwrap();
    fs::write(dir.join("w.toml"), format!("chaos = \"c.toml\"\n{LOAD}{OP}")).unwrap();
    let err = load(&dir.join("w.toml")).unwrap_err().to_string();
    assert_prefix(&err, &format!("{c}:3:10: fault[0].action: shutdown-failover sends SHUTDOWN FAILOVER"));
    fs::write(dir.join("w.toml"), format!("chaos = \"c.toml\"\n[cluster]\nengine = \"valkey\"\n{LOAD}{OP}"))
        .unwrap();
    assert!(load(&dir.join("w.toml")).is_ok());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_replica_target_on_a_cluster_without_replicas_is_refused_in_the_chaos_file() {
    let dir = scratch("no-replicas");
    let c = dir.join("c.toml").display().to_string();
    fs::write(dir.join("w.toml"), format!("chaos = \"c.toml\"\n[cluster]\nreplicas = 0\n{LOAD}{OP}"))
        .unwrap();
    let faults = [
        "[[fault]]\nat = \"1s\"\naction = \"kill\"\ntarget = \"random-replica\"\nduration = \"1s\"\n",
        "[[fault]]\nat = \"1s\"\naction = \"kill\"\ntarget = { replica-of = \"{user:1}\" }\nduration = \"1s\"\n",
        "[[operation]]\nat = \"1s\"\naction = \"failover\"\ntarget = \"random-replica\"\n",
    ];
    for fault in faults {
        fs::write(dir.join("c.toml"), fault).unwrap();
        let err = load(&dir.join("w.toml")).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{c}:4:10: ")), "{err}");
        assert!(err.contains("needs a replica, but the cluster has none (cluster.replicas = 0)"), "{err}");
        // A replica added first makes it possible.
        let add = "[[operation]]\nat = \"500ms\"\naction = \"add-node\"\nrole = \"replica\"\nreplica-of = \"redis-1\"\n";
        fs::write(dir.join("c.toml"), format!("{fault}{add}")).unwrap();
        assert!(load(&dir.join("w.toml")).is_ok(), "{fault}");
    }
    // An add-node naming a primary the cluster never has.
    let add =
        "[[operation]]\nat = \"1s\"\naction = \"add-node\"\nrole = \"replica\"\nreplica-of = \"redis-99\"\n";
    fs::write(dir.join("c.toml"), add).unwrap();
    let err = load(&dir.join("w.toml")).unwrap_err().to_string();
    assert_prefix(&err, &format!("{c}:5:14: operation[0].replica-of: no node redis-99"));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_script_whose_keys_lie_in_different_slots_is_refused_at_the_key() {
    let dir = scratch("crossslot");
    fs::write(dir.join("s.lua"), "return 1\n").unwrap();
    let script = |keys: &str| format!("{LOAD}[[op]]\nname = \"s\"\nscript = \"s.lua\"\nkeys = {keys}\n");
    let path = dir.join("w.toml");
    let load_text = |text: String| {
        fs::write(&path, text).unwrap();
        load(&path)
    };
    let e = load_text(script(r#"["a:$id", "b:$id"]"#)).unwrap_err().to_string();
    assert!(e.ends_with("w.toml:6:18: op[0].keys[1]: \"b:$id\" routes by \"b:$id\" but keys[0] \"a:$id\" by \"a:$id\": Redis Cluster refuses a script whose keys lie in different slots (CROSSSLOT); give them one hash tag, e.g. \"{user:$id}:a\" and \"{user:$id}:b\""), "{e}");
    let e = load_text(script(r#"["{user:$id}:a", "{user:$id}x:b", "{u:$id}:c"]"#)).unwrap_err().to_string();
    assert!(e.contains("op[0].keys[2]: \"{u:$id}:c\" routes by \"u:$id\""), "{e}");
    assert!(load_text(script(r#"["{user:$id}:a", "{user:$id}:b"]"#)).is_ok());
    // Literal keys that hash to the same slot by different text are fine: {a} and a.
    assert!(load_text(script(r#"["{a}x", "a"]"#)).is_ok());
    // Multi-key commands too, at the key at fault (MSET's values are not keys).
    let command = |c: &str| format!("{LOAD}[[op]]\nname = \"m\"\ncommand = {c}\n");
    let e = load_text(command(r#"["MGET", "a:$id", "b:$id"]"#)).unwrap_err().to_string();
    assert!(e.contains("w.toml:5:29: op[0].command[2]: \"b:$id\" routes by \"b:$id\" but command[1] \"a:$id\" by \"a:$id\": Redis Cluster refuses `MGET` whose keys"), "{e}");
    assert!(load_text(command(r#"["MSET", "{u:$id}:a", "$value", "{u:$id}:b", "$value"]"#)).is_ok());
    let e = load_text(command(r#"["mset", "{u:$id}:a", "1", "{v:$id}:b", "2"]"#)).unwrap_err().to_string();
    assert!(e.contains("op[0].command[3]: "), "{e}");
    let e = load_text(command(r#"["RPOPLPUSH", "q:$id", "done"]"#)).unwrap_err().to_string();
    assert!(e.contains("op[0].command[2]: "), "{e}");
    assert!(load_text(command(r#"["BLPOP", "{q}a", "{q}b", "1"]"#)).is_ok());
    assert!(load_text(command(r#"["HSET", "h:$id", "f", "x:$id"]"#)).is_ok(), "one key");
    let _ = fs::remove_dir_all(&dir);
}
