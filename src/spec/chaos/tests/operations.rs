//! `[[operation]]` tables: every action and option resolves with its defaults, bad ones fail
//! at the right `file:line:column: field`, and the schedule merges operations with faults.
//!
//! Length: tables of files and the error each must give.

use std::path::Path;
use std::time::Duration;

use super::{assert_prefix, err, ok, secs};
use crate::spec::chaos::*;

/// A valid first operation (an add-node at 1 s), so the operation under test is
/// `operation[1]`, whose header is line 4 and `at` line 5: a case's body starts on line 6.
const FIRST: &str = "[[operation]]\nat = \"1s\"\naction = \"add-node\"\n";

fn user42() -> TargetSpec {
    TargetSpec::PrimaryOf { key: "{user:42}".into(), slot: Slot::new(15880).unwrap() }
}

#[test]
fn every_operation_resolves_with_its_defaults() {
    let plan = ok(r#"
[[operation]]
at = "1s"
action = "failover"
target = { replica-of = "{user:42}" }
[[operation]]
at = "2s"
action = "failover"
target = "random-replica"
mode = "takeover"
[[operation]]
at = "3s"
action = "reshard"
from = { primary-of = "{user:42}" }
to = "random-primary"
slots = 16384
[[operation]]
at = "4s"
action = "reshard"
from = "redis-1"
to = "redis-2"
range = [0, 16383]
keys_per_batch = 7
pipeline = 1
timeout = "250ms"
[[operation]]
at = "5s"
action = "reshard"
from = "random-primary"
to = "random-primary"
key = "{user:42}"
[[operation]]
at = "6s"
action = "add-node"
[[operation]]
at = "7s"
action = "add-node"
replica-of = { primary-of = "{user:42}" }
[[operation]]
at = "8s"
action = "add-node"
role = "replica"
replica-of = "redis-2"
[[operation]]
at = "9s"
action = "rebalance"
[[operation]]
at = "10s"
action = "rebalance"
use_empty_primaries = false
pipeline = 4
[[operation]]
at = "11s"
action = "remove-node"
target = "newest"
[[operation]]
at = "12s"
action = "remove-node"
target = "redis-7"
drain = true
keys_per_batch = 50
[[operation]]
at = "13s"
action = "remove-node"
target = "redis-8"
drain = false
"#);
    assert!(plan.faults.is_empty(), "a file of operations alone is a chaos file");
    let ops: Vec<Operation> = plan.operations.iter().map(|o| o.operation.clone()).collect();
    let ats: Vec<u64> = plan.operations.iter().map(|o| o.at.as_secs()).collect();
    assert_eq!(ats, (1..=13).collect::<Vec<_>>());
    let replica42 = TargetSpec::ReplicaOf { key: "{user:42}".into(), slot: Slot::new(15880).unwrap() };
    let m = Migration::default();
    assert_eq!(
        m,
        Migration { method: MigrationMethod::Keys, keys_per_batch: 100, pipeline: 10, timeout: secs(5) }
    );
    assert_eq!(
        ops,
        [
            Operation::Failover { target: replica42, mode: FailoverMode::Default },
            Operation::Failover { target: TargetSpec::RandomReplica, mode: FailoverMode::Takeover },
            Operation::Reshard {
                from: user42(),
                to: TargetSpec::RandomPrimary,
                slots: SlotSelection::Count(16384),
                migration: m,
            },
            Operation::Reshard {
                from: TargetSpec::Node("redis-1".into()),
                to: TargetSpec::Node("redis-2".into()),
                slots: SlotSelection::Range { first: Slot::new(0).unwrap(), last: Slot::new(16383).unwrap() },
                migration: Migration {
                    method: MigrationMethod::Keys,
                    keys_per_batch: 7,
                    pipeline: 1,
                    timeout: Duration::from_millis(250),
                },
            },
            Operation::Reshard {
                from: TargetSpec::RandomPrimary,
                to: TargetSpec::RandomPrimary,
                slots: SlotSelection::Key { key: "{user:42}".into(), slot: Slot::new(15880).unwrap() },
                migration: m,
            },
            Operation::AddNode { role: NewNodeRole::Primary },
            Operation::AddNode { role: NewNodeRole::Replica { of: user42() } },
            Operation::AddNode { role: NewNodeRole::Replica { of: TargetSpec::Node("redis-2".into()) } },
            Operation::Rebalance { use_empty_primaries: true, migration: m },
            Operation::Rebalance { use_empty_primaries: false, migration: Migration { pipeline: 4, ..m } },
            Operation::RemoveNode { target: NodeRef::Newest, drain: None },
            Operation::RemoveNode {
                target: NodeRef::Name("redis-7".into()),
                drain: Some(Migration { keys_per_batch: 50, ..m }),
            },
            Operation::RemoveNode { target: NodeRef::Name("redis-8".into()), drain: None },
        ]
    );
    let names: Vec<_> = ops.iter().map(Operation::name).collect();
    assert_eq!(names[..6], ["failover", "failover", "reshard", "reshard", "reshard", "add-node"]);
    assert_eq!(ops[12].name(), "remove-node");
    assert_eq!(FailoverMode::Force.argument(), Some("FORCE"));
    assert_eq!(FailoverMode::Default.argument(), None);
    assert_eq!(NodeRef::Newest.to_string(), "newest");
}

#[test]
fn the_shipped_operation_files_say_what_their_headers_say() {
    let load =
        |name: &str| load_chaos(&Path::new(env!("CARGO_MANIFEST_DIR")).join("chaos").join(name)).unwrap();
    let reshard = load("reshard.toml");
    assert_eq!(
        reshard.operations,
        [OperationSpec {
            at: secs(10),
            operation: Operation::Reshard {
                from: user42(),
                to: TargetSpec::Node("redis-1".into()),
                slots: SlotSelection::Count(1000),
                migration: Migration::default(),
            },
            place: Place::default(),
        }]
    );
    let failover = load("planned-failover.toml");
    assert!(matches!(
        &failover.operations[0].operation,
        Operation::Failover { target: TargetSpec::ReplicaOf { slot, .. }, mode: FailoverMode::Default }
            if slot.get() == 15880
    ));
    let out: Vec<_> = load("scale-out.toml").operations.into_iter().map(|o| o.operation).collect();
    assert_eq!(
        out,
        [
            Operation::AddNode { role: NewNodeRole::Primary },
            Operation::Rebalance { use_empty_primaries: true, migration: Migration::default() }
        ]
    );
    let scale_in = load("scale-in.toml");
    assert_eq!(
        scale_in.operations[2],
        OperationSpec {
            at: secs(30),
            operation: Operation::RemoveNode { target: NodeRef::Newest, drain: Some(Migration::default()) },
            place: Place::default(),
        }
    );
    // The kill lands inside the reshard, and the range moved leaves {user:42}'s slot alone,
    // so the kill's `primary-of` still names the reshard's source.
    let with_kill = load("reshard-with-kill.toml");
    let Operation::Reshard { slots: SlotSelection::Range { first, last }, from, .. } =
        &with_kill.operations[0].operation
    else {
        panic!("a reshard of a range")
    };
    assert_eq!((first.get(), last.get()), (10923, 12922));
    assert!(!(first.get()..=last.get()).contains(&15880));
    assert_eq!((from, &with_kill.faults[0].target), (&user42(), &user42()));
    let steps: Vec<(u64, &str)> = with_kill
        .schedule(secs(52))
        .iter()
        .map(|s| match s {
            Scheduled::Fault(f) => (f.at.as_secs(), f.action.name()),
            Scheduled::Operation(o) => (o.at.as_secs(), o.operation.name()),
        })
        .collect();
    assert_eq!(steps, [(10, "reshard"), (11, "kill")]);
}

/// (at in seconds, `fault[i]` or `operation[i]`) of each step.
fn steps(schedule: &[Scheduled]) -> Vec<(u64, String)> {
    schedule
        .iter()
        .map(|s| match s {
            Scheduled::Fault(f) => (f.at.as_secs(), format!("fault[{}]#{}", f.index, f.repeat)),
            Scheduled::Operation(o) => (o.at.as_secs(), format!("operation[{}]", o.index)),
        })
        .collect()
}

#[test]
fn operations_join_the_faults_in_one_time_order() {
    let plan = ok(r#"
[[operation]]
at = "20s"
action = "rebalance"
[[fault]]
at = "5s"
action = "kill"
target = "redis-1"
duration = "2s"
every = "10s"
count = 3
[[operation]]
at = "5s"
action = "add-node"
[[operation]]
at = "1s"
action = "failover"
target = "redis-4"
[[fault]]
at = "20s"
action = "restart"
target = "redis-2"
[[operation]]
at = "60s"
action = "rebalance"
"#);
    let schedule = plan.schedule(secs(60));
    assert_eq!(
        steps(&schedule),
        [
            (1, "operation[2]"),
            (5, "fault[0]#0"),
            (5, "operation[1]"),
            (15, "fault[0]#1"),
            (20, "fault[1]#0"),
            (20, "operation[0]"),
            (25, "fault[0]#2"),
        ]
        .map(|(at, s)| (at, s.to_string())),
        "by time; at equal times faults before operations, each in file order; an operation at the end is dropped"
    );
    assert_eq!(schedule.iter().map(Scheduled::at).max(), Some(secs(25)));
    assert_eq!(schedule[2].operation().map(|o| o.operation.name()), Some("add-node"));
    assert!(schedule[2].fault().is_none() && schedule[1].operation().is_none());
}

#[test]
fn bad_operations_are_placed_at_their_field() {
    // Each case is the body of `operation[1]`, after its `at` on line 5.
    let cases: &[(&str, &str)] = &[
        (
            "action = \"explode\"",
            "c.toml:6:10: operation[1].action: unknown variant `explode`, expected one of `failover`, `reshard`, `add-node`, `rebalance`, `remove-node`",
        ),
        (
            "action = \"kill\"\ntarget = \"redis-1\"",
            "c.toml:6:10: operation[1].action: `kill` is a fault, not an operation: write it in a [[fault]] table",
        ),
        (
            "action = \"failover\"",
            "c.toml:6:10: operation[1].target: required with action = \"failover\": the replica that takes over",
        ),
        (
            "action = \"reshard\"\nfrom = \"redis-1\"\nto = \"redis-2\"\nslots = 10\nmethod = \"teleport\"",
            "c.toml:10:10: operation[1].method: unknown variant `teleport`, expected `keys` or `atomic`",
        ),
        (
            "action = \"reshard\"\nfrom = \"redis-1\"\nto = \"redis-2\"\nslots = 10\nmethod = \"atomic\"\npipeline = 4",
            "c.toml:11:12: operation[1].pipeline: only with method = \"keys\": an atomic migration is run by the nodes",
        ),
        (
            "action = \"rebalance\"\nmethod = \"atomic\"",
            "c.toml:7:10: operation[1].method: only for action = \"reshard\"",
        ),
        (
            "action = \"failover\"\ntarget = \"random-primary\"",
            "c.toml:7:10: operation[1].target: `random-primary` is not one replica; a failover starts on a replica, which takes over from its primary: a node name (\"redis-4\"), \"random-replica\" or { replica-of = \"<key>\" }; write \"random-replica\"",
        ),
        (
            "action = \"failover\"\ntarget = { primary-of = \"{user:42}\" }",
            "c.toml:7:10: operation[1].target: `primary-of {user:42}` is not one replica; a failover starts on a replica",
        ),
        (
            "action = \"failover\"\ntarget = \"all-primaries\"",
            "c.toml:7:10: operation[1].target: `all-primaries` is not one replica",
        ),
        (
            "action = \"failover\"\ntarget = \"any-replica\"",
            "c.toml:7:10: operation[1].target: unknown target \"any-replica\"; a failover starts on a replica",
        ),
        (
            "action = \"failover\"\ntarget = \"redis-4\"\nmode = \"gentle\"",
            "c.toml:8:8: operation[1].mode: unknown variant `gentle`, expected one of `default`, `force`, `takeover`",
        ),
        (
            "action = \"failover\"\ntarget = \"redis-4\"\nduration = \"5s\"",
            "c.toml:8:12: operation[1].duration: not for an operation: it runs until it is done, and has nothing to heal",
        ),
        (
            "action = \"failover\"\ntarget = \"redis-4\"\nevery = \"10s\"",
            "c.toml:8:9: operation[1].every: not for an operation: an operation happens once; write one [[operation]] per occurrence",
        ),
        (
            "action = \"failover\"\ntarget = \"redis-4\"\ncount = 2",
            "c.toml:8:9: operation[1].count: not for an operation: an operation happens once",
        ),
        (
            "action = \"failover\"\ntarget = \"redis-4\"\nslots = 10",
            "c.toml:8:9: operation[1].slots: only for action = \"reshard\"; this operation's action is \"failover\"",
        ),
        (
            "action = \"reshard\"\nto = \"redis-2\"\nslots = 10",
            "c.toml:6:10: operation[1].from: required with action = \"reshard\": the primary the slots leave",
        ),
        (
            "action = \"reshard\"\nfrom = \"redis-1\"\nslots = 10",
            "c.toml:6:10: operation[1].to: required with action = \"reshard\": the primary the slots go to",
        ),
        (
            "action = \"reshard\"\nfrom = \"redis-1\"\nto = \"redis-1\"\nslots = 10",
            "c.toml:8:6: operation[1].to: redis-1 is `from` as well: a reshard moves slots between two different primaries",
        ),
        (
            "action = \"reshard\"\nfrom = { primary-of = \"{user:42}\" }\nto = { primary-of = \"{user:42}:orders\" }\nslots = 10",
            "c.toml:8:6: operation[1].to: \"{user:42}:orders\" is in slot 15880, as `from`'s \"{user:42}\": both name the same primary",
        ),
        (
            "action = \"reshard\"\nfrom = \"random-replica\"\nto = \"redis-1\"\nslots = 10",
            "c.toml:7:8: operation[1].from: `from` is one primary, and `random-replica` is not; a primary is a node name (\"redis-1\"), \"random-primary\" or { primary-of = \"<key>\" }; write \"random-primary\"",
        ),
        (
            "action = \"reshard\"\nfrom = \"redis-1\"\nto = { replica-of = \"k\" }\nslots = 10",
            "c.toml:8:6: operation[1].to: `to` is one primary, and `replica-of k` is not; a primary is a node name (\"redis-1\"), \"random-primary\" or { primary-of = \"<key>\" }; write { primary-of = \"k\" }",
        ),
        (
            "action = \"reshard\"\nfrom = \"redis-1\"\nto = \"minority-of-primaries\"\nslots = 10",
            "c.toml:8:6: operation[1].to: `to` is one primary, and `minority-of-primaries` is not",
        ),
        (
            "action = \"reshard\"\nfrom = \"redis-1\"\nto = \"redis-2\"",
            "c.toml:6:10: operation[1].slots: required with action = \"reshard\": which slots move, one of slots = 1000, range = [0, 999] or key = \"{user:42}\"",
        ),
        (
            "action = \"reshard\"\nfrom = \"redis-1\"\nto = \"redis-2\"\nslots = 10\nrange = [0, 9]",
            "c.toml:10:9: operation[1].range: a reshard takes one of `slots`, `range` or `key`, and this one has `slots` as well: remove one",
        ),
        (
            "action = \"reshard\"\nfrom = \"redis-1\"\nto = \"redis-2\"\nkey = \"k\"\nslots = 10",
            "c.toml:10:9: operation[1].slots: a reshard takes one of `slots`, `range` or `key`, and this one has `key` as well",
        ),
        (
            "action = \"reshard\"\nfrom = \"redis-1\"\nto = \"redis-2\"\nslots = 0",
            "c.toml:9:9: operation[1].slots: must be between 1 and 16384: the number of slots that move",
        ),
        (
            "action = \"reshard\"\nfrom = \"redis-1\"\nto = \"redis-2\"\nslots = 16385",
            "c.toml:9:9: operation[1].slots: must be between 1 and 16384",
        ),
        (
            "action = \"reshard\"\nfrom = \"redis-1\"\nto = \"redis-2\"\nrange = [0, 16384]",
            "c.toml:9:13: operation[1].range: slot 16384 does not exist: slots are 0 to 16383",
        ),
        (
            "action = \"reshard\"\nfrom = \"redis-1\"\nto = \"redis-2\"\nrange = [200, 100]",
            "c.toml:9:9: operation[1].range: the first slot (200) comes after the last (100): write [100, 200]",
        ),
        (
            "action = \"reshard\"\nfrom = \"redis-1\"\nto = \"redis-2\"\nrange = [7]",
            "c.toml:9:9: operation[1].range: must be two slots, [first, last], e.g. range = [0, 999]",
        ),
        (
            "action = \"reshard\"\nfrom = \"redis-1\"\nto = \"redis-2\"\nrange = [-1, 5]",
            "c.toml:9:10: operation[1].range[0]: invalid value: integer `-1`, expected a whole number, 0 or more",
        ),
        (
            "action = \"reshard\"\nfrom = \"redis-1\"\nto = \"redis-2\"\nkey = \"\"",
            "c.toml:9:7: operation[1].key: must be a key or a hash tag",
        ),
        (
            "action = \"reshard\"\nfrom = \"redis-1\"\nto = \"redis-2\"\nslots = 1\nkeys_per_batch = 0",
            "c.toml:10:18: operation[1].keys_per_batch: must be between 1 and 100000, not 0",
        ),
        (
            "action = \"reshard\"\nfrom = \"redis-1\"\nto = \"redis-2\"\nslots = 1\nkeys_per_batch = 4000000000",
            "c.toml:10:18: operation[1].keys_per_batch: must be between 1 and 100000, not 4000000000",
        ),
        (
            "action = \"reshard\"\nfrom = \"redis-1\"\nto = \"redis-2\"\nslots = 1\npipeline = 0",
            "c.toml:10:12: operation[1].pipeline: must be between 1 and 1024, not 0",
        ),
        (
            "action = \"reshard\"\nfrom = \"redis-1\"\nto = \"redis-2\"\nslots = 1\npipeline = 1025",
            "c.toml:10:12: operation[1].pipeline: must be between 1 and 1024, not 1025",
        ),
        (
            "action = \"reshard\"\nfrom = \"redis-1\"\nto = \"redis-2\"\nslots = 1\ntimeout = \"0s\"",
            "c.toml:10:11: operation[1].timeout: must be longer than 0s",
        ),
        (
            "action = \"reshard\"\ntarget = \"redis-1\"",
            "c.toml:7:10: operation[1].target: only for action = \"failover\" or \"remove-node\"; this operation's action is \"reshard\": a reshard moves slots `from` one primary `to` another",
        ),
        (
            "action = \"add-node\"\nname = \"redis-9\"",
            "c.toml:7:8: operation[1].name: not allowed: slotstorm names the nodes add-node adds (the next redis-<n>)",
        ),
        (
            "action = \"add-node\"\nrole = \"replica\"",
            "c.toml:7:8: operation[1].role: with role = \"replica\", `replica-of` names the primary the new node replicates",
        ),
        (
            "action = \"add-node\"\nrole = \"primary\"\nreplica-of = \"redis-1\"",
            "c.toml:8:14: operation[1].replica-of: not with role = \"primary\": a new primary replicates nobody",
        ),
        (
            "action = \"add-node\"\nreplica-of = \"random-replica\"",
            "c.toml:7:14: operation[1].replica-of: `replica-of` is one primary, and `random-replica` is not",
        ),
        (
            "action = \"add-node\"\nrole = \"arbiter\"",
            "c.toml:7:8: operation[1].role: unknown variant `arbiter`, expected `primary` or `replica`",
        ),
        (
            "action = \"add-node\"\ntarget = \"redis-7\"",
            "c.toml:7:10: operation[1].target: only for action = \"failover\" or \"remove-node\"; this operation's action is \"add-node\": add-node adds a new node",
        ),
        (
            "action = \"rebalance\"\ntarget = \"redis-1\"",
            "c.toml:7:10: operation[1].target: only for action = \"failover\" or \"remove-node\"; this operation's action is \"rebalance\": a rebalance evens out the slots over every primary",
        ),
        (
            "action = \"rebalance\"\nuse_empty_primaries = \"yes\"",
            "c.toml:7:23: operation[1].use_empty_primaries: invalid type: string \"yes\", expected true or false",
        ),
        (
            "action = \"rebalance\"\ndrain = true",
            "c.toml:7:9: operation[1].drain: only for action = \"remove-node\"; this operation's action is \"rebalance\"",
        ),
        (
            "action = \"remove-node\"",
            "c.toml:6:10: operation[1].target: required with action = \"remove-node\": the node that leaves, e.g. target = \"newest\"",
        ),
        (
            "action = \"remove-node\"\ntarget = \"random-primary\"",
            "c.toml:7:10: operation[1].target: \"random-primary\" cannot be removed; remove-node takes a node by name (\"redis-7\") or \"newest\"",
        ),
        (
            "action = \"remove-node\"\ntarget = { primary-of = \"k\" }",
            "c.toml:7:10: operation[1].target: remove-node takes a node by name (\"redis-7\") or \"newest\"",
        ),
        (
            "action = \"remove-node\"\ntarget = \"redis-07\"",
            "c.toml:7:10: operation[1].target: \"redis-07\" is not a node name",
        ),
        (
            "action = \"remove-node\"\ntarget = \"redis-7\"\npipeline = 5",
            "c.toml:8:12: operation[1].pipeline: only with drain = true: without it remove-node moves no slots",
        ),
        (
            "action = \"remove-node\"\ntarget = \"redis-7\"\ndrain = false\ntimeout = \"1s\"",
            "c.toml:9:11: operation[1].timeout: only with drain = true",
        ),
        (
            "action = \"remove-node\"\ntarget = \"redis-7\"\nmode = \"force\"",
            "c.toml:8:8: operation[1].mode: only for action = \"failover\"; this operation's action is \"remove-node\"",
        ),
        (
            "action = \"remove-node\"\ntarget = \"redis-7\"\nslot = 3",
            "c.toml:8:1: operation[1].slot: unknown field `slot`, expected one of `at`, `action`, `target`",
        ),
    ];
    for (body, want) in cases {
        let text = format!("{FIRST}[[operation]]\nat = \"2s\"\n{body}\n");
        assert_prefix(&err(&text), want);
    }
}

#[test]
fn an_action_in_the_wrong_table_points_to_the_right_one() {
    let text = "[[fault]]\nat = \"1s\"\naction = \"reshard\"\ntarget = \"redis-1\"\n";
    assert_prefix(
        &err(text),
        "c.toml:3:10: fault[0].action: `reshard` is an operation, not a fault: write it in an [[operation]] table",
    );
    assert_prefix(
        &err("operation = []\n"),
        "c.toml:1:13: operation: must list at least one operation or fault",
    );
    // An empty fault array beside an operation is no error: the file has something to do.
    let plan = ok("fault = []\n[[operation]]\nat = \"1s\"\naction = \"rebalance\"\n");
    assert_eq!(plan.operations.len(), 1);
}

#[test]
fn newest_needs_an_add_node_before_it() {
    let file = |add_at: &str, remove_at: &str, add_first: bool| {
        let add = format!("[[operation]]\nat = \"{add_at}\"\naction = \"add-node\"\n");
        let remove =
            format!("[[operation]]\nat = \"{remove_at}\"\naction = \"remove-node\"\ntarget = \"newest\"\n");
        if add_first { format!("{add}{remove}") } else { format!("{remove}{add}") }
    };
    // Before it in time, wherever it stands in the file; at the same time, only above it.
    ok(&file("5s", "10s", true));
    ok(&file("5s", "10s", false));
    ok(&file("10s", "10s", true));
    assert_prefix(
        &err(&file("10s", "10s", false)),
        "c.toml:4:10: operation[0].target: \"newest\" is the node the latest add-node added, and no add-node starts before this operation",
    );
    assert_prefix(
        &err(&file("20s", "10s", true)),
        "c.toml:7:10: operation[1].target: \"newest\" is the node",
    );
    let alone = "[[operation]]\nat = \"1s\"\naction = \"remove-node\"\ntarget = \"newest\"\n";
    assert_prefix(&err(alone), "c.toml:4:10: operation[0].target: \"newest\" is the node");
}
