//! Chaos files: which faults a run injects and which topology operations it performs,
//! where and when. Read in the same two stages as workload files (`raw` checks the shape,
//! `resolve` the rules between fields) with the same one-line `path:line:column: field:
//! message` errors, into a [`ChaosPlan`]; the plan expands into one time-ordered list of
//! [`Scheduled`] steps (fault occurrences and operations) with [`ChaosPlan::schedule`],
//! which the nemesis follows. Targets are resolved to nodes only at run time (a random
//! primary is chosen then, with the plan's seed); this module checks their syntax and shape,
//! never the cluster.
//!
//! This module reads files; it never talks to Redis or Docker.
//!
//! # The format
//!
//! The files in `chaos/` are the examples. In short (defaults in parentheses):
//!
//! ```toml
//! seed = 7                      # (0) seeds the random choice of targets
//!
//! [[fault]]                     # any number; a file has at least one fault or operation
//! at = "10s"                    # required: offset from the start of the run, warm-up included
//! action = "kill"               # required: see below
//! target = "random-primary"     # required: see below
//! duration = "5s"               # required, except for restart (where it is an error)
//! every = "20s"                 # optional: repeat with this period, longer than `duration`
//! count = 3                     # (1) occurrences in all; at least 2 with `every`, 1 without
//! probability = 0.2             # loss only, required: 0 < p <= 1
//! rate = "1mbit"                # bandwidth only, required: tc units (kbit, mbit, gbit, kbps, ...)
//! delay = "100ms"               # delay only, required
//! jitter = "10ms"               # delay only ("0s")
//!
//! [[operation]]                 # any number
//! at = "20s"                    # required, as for faults
//! action = "reshard"            # required: failover, reshard, add-node, rebalance, remove-node
//! from = { primary-of = "{user:42}" }   # reshard: required, a primary
//! to = "random-primary"         # reshard: required, a primary other than `from`
//! slots = 1000                  # reshard: exactly one of slots = N (1..=16384),
//!                               #   range = [first, last] (0..=16383) or key = "{user:42}"
//! method = "keys"              # reshard: "keys" (default, key by key, every engine) or "atomic"
//!                               #   (Valkey 9's CLUSTER MIGRATESLOTS; the cluster's engine must be valkey)
//! keys_per_batch = 100          # reshard, rebalance, remove-node with drain: (100) keys per MIGRATE
//! pipeline = 10                 # the same: (10) slots migrated at once
//! timeout = "5s"                # the same: ("5s") the limit on one MIGRATE
//! ```
//!
//! | action | injects | heals after `duration` |
//! |---|---|---|
//! | `kill` | SIGKILL (`docker kill`): no shutdown, no last save | the node is started again |
//! | `stop` | a graceful stop (SIGTERM, `docker stop`); with Valkey's `shutdown-on-sigterm = "failover"` a primary hands its slots to a replica first | the node is started again |
//! | `shutdown-failover` | Valkey only: `SHUTDOWN FAILOVER`, a primary hands its slots to a replica, then exits | the node is started again |
//! | `restart` | stop and start at once (`docker restart`); has no `duration` | — |
//! | `pause` | the cgroup freezer (`docker pause`) | unpaused |
//! | `sigstop` | SIGSTOP to `redis-server` | SIGCONT |
//! | `isolate` | the target loses every peer and every client | rules removed |
//! | `partition` | the target is cut off from every other node; clients still reach all nodes | rules removed |
//! | `loss` | drops `probability` of the target's packets | rules removed |
//! | `bandwidth` | caps the target's egress at `rate` (tc tbf) | qdisc removed |
//! | `delay` | delays the target's packets by `delay` ± `jitter` (tc netem, which some kernels lack: the run says so) | qdisc removed |
//!
//! A `target` is a node name (`"redis-3"`), one of `"random-primary"`, `"random-replica"`,
//! `"minority-of-primaries"`, `"all-primaries"`, or a table naming a slot by a key:
//! `{ primary-of = "{user:42}" }`, `{ replica-of = "{user:42}" }`.
//!
//! ## Operations
//!
//! An operation is a change an operator makes to a live cluster. It runs until it is done
//! and has nothing to heal, so it takes no `duration`, `every` or `count` (write one
//! `[[operation]]` per occurrence); options of other actions are errors.
//!
//! | action | does | target and options |
//! |---|---|---|
//! | `failover` | a planned failover: `CLUSTER FAILOVER` on a replica, which takes over from its primary | `target`: one replica (a node name, `"random-replica"`, `{ replica-of = "<key>" }`); `mode` = `"default"` (coordinated, no write lost; needs the primary), `"force"` (without the primary, still elected) or `"takeover"` (without an election) |
//! | `reshard` | moves slots and their keys from one primary to another while clients run | `from`, `to`: one primary each (a node name, `"random-primary"`, `{ primary-of = "<key>" }`); exactly one of `slots`, `range`, `key`; the migration options |
//! | `add-node` | starts a new node and joins it; slotstorm names it (`redis-7` after six) | `role` = `"primary"` (the default: empty until slots move to it) or `"replica"`; `replica-of` = the primary a new replica follows (implies `role = "replica"`) |
//! | `rebalance` | evens out the slots over the primaries | `use_empty_primaries` (`true`): primaries without slots get their share; the migration options |
//! | `remove-node` | the node leaves: the others forget it, and it is stopped | `target`: a node name or `"newest"` (the node the latest earlier `add-node` added); `drain` (`false`): move its slots evenly to the other primaries first, with the migration options; without it the node must hold no slots (checked at run time) |
//!
//! What is checked here, before any run: each action's required fields and only those; the
//! shape of targets (a failover on `random-primary`, a reshard `from` a replica, removing
//! `random-primary` are errors); slot counts and ranges in bounds; a reshard whose `to` is
//! its `from` by name or by key slot; `"newest"` with no `add-node` before it. What only the
//! cluster can tell (a named node's role, whether `from` owns the slots, whether a node to
//! remove is empty) is checked when the operation starts.
//!
//! ## Why operations have their own table
//!
//! Operations could have been more `action`s of `[[fault]]`; they are an `[[operation]]`
//! array instead because they differ in kind, not in degree. A fault is a window, injected
//! and healed, whose `duration` is required; an operation has no heal, and runs as long as
//! the cluster takes, so the one rule a reader must remember about `duration` stays true of
//! a whole table. Their options (`from`, `to`, `slots`, `mode`, …) share nothing with the
//! faults', so each table's unknown-field message lists only what that table takes, and
//! `fault[i]` numbers (which reports key their windows and failover phases by) stay those
//! of the faults. A fault's action written in `[[operation]]`, or the other way round, is
//! refused with a pointer to the right table.
//!
//! ## One schedule
//!
//! [`ChaosPlan::schedule`] merges both tables into one list by start time; at equal times
//! faults come first (so a `takeover` meets the partition that starts with it), each in file
//! order. Operations change the topology one at a time: one that falls due while another is
//! still running starts when it is done. Faults never wait for operations (a kill in the
//! middle of a reshard is a fault during an operation, as `chaos/reshard-with-kill.toml`
//! shows).

mod operation;
mod raw;
mod resolve;

pub use operation::{
    FailoverMode, Migration, MigrationMethod, NewNodeRole, NodeRef, Operation, OperationSpec,
    ScheduledOperation, SlotSelection,
};

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::SpecError;
use crate::cluster::slot::Slot;

/// A chaos file, resolved: the faults and operations as written, checked, with defaults
/// applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ChaosPlan {
    /// The file it was read from, as given (for a workload's `chaos`, joined to the workload
    /// file's folder).
    pub path: PathBuf,
    /// Seeds every random choice of a target, so runs repeat.
    pub seed: u64,
    /// The `[[fault]]` tables, in file order; empty only when `operations` is not.
    pub faults: Vec<FaultSpec>,
    /// The `[[operation]]` tables, in file order; empty only when `faults` is not.
    pub operations: Vec<OperationSpec>,
    /// The file's text, so that checks made with the workload (a start after the run
    /// ends, a node the cluster never has) place their errors in this file.
    pub text: String,
}

/// Where a fault's or operation's fields stand in its chaos file. Positions are not part of
/// what a fault is: any two places compare equal.
#[derive(Debug, Clone, Default)]
pub struct Place {
    /// `fault[2]` or `operation[0]`.
    pub table: String,
    /// The `at` value's bytes.
    pub at: std::ops::Range<usize>,
    /// The bytes of the fields later checks may fault (`target`, `from`, `to`, `count`), by
    /// name.
    pub fields: Vec<(&'static str, std::ops::Range<usize>)>,
}

impl PartialEq for Place {
    fn eq(&self, _: &Place) -> bool {
        true
    }
}

impl Place {
    /// The bytes of field `name`, or of `at` when the table has no such field.
    pub fn span_of(&self, name: &str) -> std::ops::Range<usize> {
        self.fields.iter().find(|(n, _)| *n == name).map_or_else(|| self.at.clone(), |(_, s)| s.clone())
    }
}

/// One `[[fault]]` table: an action on a target, once or repeated.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpec {
    /// When the first occurrence starts, from the start of the run (warm-up included).
    pub at: Duration,
    /// What is done.
    pub action: Action,
    /// To which node or nodes.
    pub target: TargetSpec,
    /// How long each occurrence lasts before it is healed; `None` only for
    /// [`Action::Restart`], and more than zero otherwise.
    pub duration: Option<Duration>,
    /// The period of repeats; when set, longer than `duration` (so repeats never overlap)
    /// and more than zero, and `count` is at least 2.
    pub every: Option<Duration>,
    /// Occurrences in all: 1 without `every`, at least 2 with it.
    pub count: u32,
    /// Where it stands in the file.
    pub place: Place,
}

/// What a fault does to its target. See the table in the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// SIGKILL; the node is started again at the heal.
    Kill,
    /// A graceful stop; the node is started again at the heal.
    Stop,
    /// `SHUTDOWN FAILOVER` (Valkey): a primary hands its slots to its replica, then exits;
    /// started again at the heal.
    ShutdownFailover,
    /// A stop and a start at once; nothing to heal.
    Restart,
    /// Frozen by the cgroup freezer; unfrozen at the heal.
    Pause,
    /// `redis-server` gets SIGSTOP; SIGCONT at the heal.
    Sigstop,
    /// No traffic to or from the target, peers and clients alike.
    Isolate,
    /// No traffic between the target and the other nodes; clients reach every node.
    Partition,
    /// Random loss of the target's packets.
    Loss {
        /// The share of packets dropped: `0 < probability <= 1`.
        probability: f64,
    },
    /// The target's egress capped.
    Bandwidth {
        /// The cap in bits per second; at least 1.
        bits_per_s: u64,
    },
    /// The target's packets delayed.
    Delay {
        /// The added delay; more than zero.
        delay: Duration,
        /// Its random variation, `delay ± jitter` (zero when not given).
        jitter: Duration,
    },
}

impl Action {
    /// The action's name as the file writes it (`"kill"`, `"loss"`, …).
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// Its kind, whose name table the file is read by.
    fn kind(&self) -> raw::ActionKind {
        use raw::ActionKind as K;
        match self {
            Action::Kill => K::Kill,
            Action::Stop => K::Stop,
            Action::ShutdownFailover => K::ShutdownFailover,
            Action::Restart => K::Restart,
            Action::Pause => K::Pause,
            Action::Sigstop => K::Sigstop,
            Action::Isolate => K::Isolate,
            Action::Partition => K::Partition,
            Action::Loss { .. } => K::Loss,
            Action::Bandwidth { .. } => K::Bandwidth,
            Action::Delay { .. } => K::Delay,
        }
    }

    /// Whether the fault lasts and is healed (every action but `restart`).
    pub fn has_duration(&self) -> bool {
        !matches!(self, Action::Restart)
    }
}

/// Which node or nodes a fault hits. Only the syntax is checked at load time: names are
/// matched against the cluster, and random choices made, when the run starts the fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// One node by name: `redis-<n>`, `n >= 1` without leading zeros.
    Node(String),
    /// One primary, chosen at random.
    RandomPrimary,
    /// One replica, chosen at random.
    RandomReplica,
    /// Fewer than half of the primaries (1 of 3, 2 of 5), chosen at random: the side of a
    /// partition that must lose its slots.
    MinorityOfPrimaries,
    /// Every primary.
    AllPrimaries,
    /// The primary serving `slot` when the fault starts.
    PrimaryOf {
        /// The key as written (a hash tag such as `{user:42}` names its slot as well).
        key: String,
        /// The key's hash slot.
        slot: Slot,
    },
    /// A replica of the primary serving `slot` when the fault starts.
    ReplicaOf {
        /// The key as written.
        key: String,
        /// The key's hash slot.
        slot: Slot,
    },
}

impl std::fmt::Display for TargetSpec {
    /// As the file writes it: `redis-3`, `random-primary`, `primary-of {user:42}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetSpec::Node(name) => f.write_str(name),
            TargetSpec::RandomPrimary => f.write_str("random-primary"),
            TargetSpec::RandomReplica => f.write_str("random-replica"),
            TargetSpec::MinorityOfPrimaries => f.write_str("minority-of-primaries"),
            TargetSpec::AllPrimaries => f.write_str("all-primaries"),
            TargetSpec::PrimaryOf { key, .. } => write!(f, "primary-of {key}"),
            TargetSpec::ReplicaOf { key, .. } => write!(f, "replica-of {key}"),
        }
    }
}

/// One occurrence of a fault, placed on the run's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledFault {
    /// The fault's number in the file: `fault[index]`, from 0.
    pub index: usize,
    /// Which occurrence of that fault, from 0.
    pub repeat: u32,
    /// When it starts, from the start of the run; before the run's end.
    pub at: Duration,
    /// When it is healed, from the start of the run: `at + duration`, but no later than the
    /// run's end. `None` for `restart`, which has nothing to heal.
    pub heal_at: Option<Duration>,
    /// What is done.
    pub action: Action,
    /// To which node or nodes.
    pub target: TargetSpec,
}

/// One step of a run's chaos schedule: a fault's occurrence or an operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Scheduled {
    /// A fault starts (and is healed at its `heal_at`).
    Fault(ScheduledFault),
    /// An operation starts.
    Operation(ScheduledOperation),
}

impl Scheduled {
    /// When it starts, from the start of the run.
    pub fn at(&self) -> Duration {
        match self {
            Scheduled::Fault(f) => f.at,
            Scheduled::Operation(o) => o.at,
        }
    }

    /// The fault, when this step is one.
    pub fn fault(&self) -> Option<&ScheduledFault> {
        match self {
            Scheduled::Fault(f) => Some(f),
            Scheduled::Operation(_) => None,
        }
    }

    /// The operation, when this step is one.
    pub fn operation(&self) -> Option<&ScheduledOperation> {
        match self {
            Scheduled::Fault(_) => None,
            Scheduled::Operation(o) => Some(o),
        }
    }
}

/// What in a chaos file only Valkey runs ([`ChaosPlan::needs_valkey`]).
pub struct ValkeyOnly<'a> {
    /// Where it stands.
    pub place: &'a Place,
    /// The field that asks for it (`action`, `method`).
    pub field: &'static str,
    /// What it is, for messages (`a shutdown-failover`).
    pub what: &'static str,
    /// The engine's feature it needs, and what to write instead.
    pub needs: &'static str,
}

impl ChaosPlan {
    /// The first fault or operation only Valkey runs (`SHUTDOWN FAILOVER`, an atomic
    /// reshard), if any: a cluster of another engine refuses the file there.
    pub fn needs_valkey(&self) -> Option<ValkeyOnly<'_>> {
        let fault = self.faults.iter().find(|f| f.action == Action::ShutdownFailover).map(|f| ValkeyOnly {
            place: &f.place,
            field: "action",
            what: "a shutdown-failover",
            needs: "shutdown-failover sends SHUTDOWN FAILOVER, which only Valkey has (or use action = \"stop\")",
        });
        let atomic = || {
            self.operations
                .iter()
                .find(|o| {
                    matches!(&o.operation, Operation::Reshard { migration, .. } if migration.method == MigrationMethod::Atomic)
                })
                .map(|o| ValkeyOnly {
                    place: &o.place,
                    field: "method",
                    what: "an atomic reshard",
                    needs: "method = \"atomic\" needs Valkey 9's atomic slot migration, CLUSTER MIGRATESLOTS (or use method = \"keys\")",
                })
        };
        fault.or_else(atomic)
    }

    /// Every occurrence of every fault and every operation that starts before `run_length`
    /// (for a workload, `load.warmup + load.duration`: times count from the start of the
    /// run), sorted by start time. At equal times faults come before operations (so an
    /// operation meets the fault that starts with it, as a `takeover` meets a partition),
    /// and each keeps file order. Heals past the end are moved to the end, so every fault is
    /// healed by the time the run stops.
    pub fn schedule(&self, run_length: Duration) -> Vec<Scheduled> {
        let mut out = Vec::new();
        for (index, fault) in self.faults.iter().enumerate() {
            let every = fault.every.unwrap_or(Duration::ZERO);
            for repeat in 0..fault.count {
                // Saturating: an absurd `at` or `every` lands past the end and is dropped.
                let at = fault.at.saturating_add(every.saturating_mul(repeat));
                if at >= run_length {
                    break;
                }
                let heal_at = fault.duration.map(|d| at.saturating_add(d).min(run_length));
                out.push(Scheduled::Fault(ScheduledFault {
                    index,
                    repeat,
                    at,
                    heal_at,
                    action: fault.action,
                    target: fault.target.clone(),
                }));
            }
        }
        for (index, op) in self.operations.iter().enumerate() {
            if op.at < run_length {
                out.push(Scheduled::Operation(ScheduledOperation {
                    index,
                    at: op.at,
                    operation: op.operation.clone(),
                }));
            }
        }
        // A stable sort keeps file order (and repeat order) among steps that start together,
        // and faults (pushed first) before operations.
        out.sort_by_key(Scheduled::at);
        out
    }
}

/// Read and resolve the chaos file at `path`.
///
/// # Errors
/// [`SpecError::Read`] when the file cannot be read; [`SpecError::Invalid`], which prints
/// as `path:line:column: field: message`, for anything wrong inside it.
pub fn load_chaos(path: &Path) -> Result<ChaosPlan, SpecError> {
    let text = super::error::read_text(path)?;
    parse_chaos(path, &text)
}

/// Resolve a chaos plan from `text`, as if read from `path` (used in messages).
///
/// # Errors
/// As [`load_chaos`], less the read error.
pub fn parse_chaos(path: &Path, text: &str) -> Result<ChaosPlan, SpecError> {
    resolve::plan(path, text)
}

#[cfg(test)]
mod tests;
