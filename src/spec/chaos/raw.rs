//! Stage 1: the chaos file as serde reads it. These structs only check the input's shape
//! (known fields, right types) and keep spans; which fields an action needs or forbids is
//! stage 2's business. A fault's action written in an `[[operation]]` table, or the other
//! way round, is refused here with a pointer to the right table.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use toml::Spanned;

use crate::spec::raw::RawDuration;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChaos {
    /// Seeds the random choice of targets.
    pub seed: Option<u64>,
    /// The `[[fault]]` tables.
    pub fault: Option<Spanned<Vec<Spanned<RawFault>>>>,
    /// The `[[operation]]` tables.
    pub operation: Option<Spanned<Vec<Spanned<RawOperation>>>>,
}

/// `[[fault]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFault {
    /// First start, from the start of the run.
    pub at: Spanned<RawDuration>,
    /// What is done.
    pub action: Spanned<ActionKind>,
    /// To whom.
    pub target: Spanned<RawTarget>,
    /// How long each occurrence lasts.
    pub duration: Option<Spanned<RawDuration>>,
    /// Period of repeats.
    pub every: Option<Spanned<RawDuration>>,
    /// Occurrences in all.
    pub count: Option<Spanned<u32>>,
    /// `loss`: the share of packets dropped.
    pub probability: Option<Spanned<f64>>,
    /// `bandwidth`: the cap, in tc's rate syntax.
    pub rate: Option<Spanned<String>>,
    /// `delay`: the added delay.
    pub delay: Option<Spanned<RawDuration>>,
    /// `delay`: its variation.
    pub jitter: Option<Spanned<RawDuration>>,
}

/// `fault.action`, without its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ActionKind {
    /// SIGKILL.
    Kill,
    /// Graceful stop.
    Stop,
    /// `SHUTDOWN FAILOVER` (Valkey).
    ShutdownFailover,
    /// Stop and start.
    Restart,
    /// Cgroup freezer.
    Pause,
    /// SIGSTOP.
    Sigstop,
    /// Cut from peers and clients.
    Isolate,
    /// Cut from peers.
    Partition,
    /// Random packet loss.
    Loss,
    /// Egress cap.
    Bandwidth,
    /// Added latency.
    Delay,
}

/// The fault actions and their names, in the order messages list them.
const ACTIONS: [(&str, ActionKind); 11] = [
    ("kill", ActionKind::Kill),
    ("stop", ActionKind::Stop),
    ("restart", ActionKind::Restart),
    ("shutdown-failover", ActionKind::ShutdownFailover),
    ("pause", ActionKind::Pause),
    ("sigstop", ActionKind::Sigstop),
    ("isolate", ActionKind::Isolate),
    ("partition", ActionKind::Partition),
    ("loss", ActionKind::Loss),
    ("bandwidth", ActionKind::Bandwidth),
    ("delay", ActionKind::Delay),
];

/// The fault actions' names alone, for serde's "expected one of".
const ACTION_NAMES: [&str; ACTIONS.len()] = names(ACTIONS);

impl ActionKind {
    /// The name as the file writes it.
    pub fn name(self) -> &'static str {
        ACTIONS.iter().find(|(_, k)| *k == self).map_or("?", |(n, _)| n)
    }
}

impl<'de> Deserialize<'de> for ActionKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let word = String::deserialize(d)?;
        if let Some((_, kind)) = ACTIONS.iter().find(|(n, _)| *n == word) {
            return Ok(*kind);
        }
        if OPERATION_NAMES.contains(&word.as_str()) {
            return Err(de::Error::custom(format_args!(
                "`{word}` is an operation, not a fault: write it in an [[operation]] table"
            )));
        }
        Err(de::Error::unknown_variant(&word, &ACTION_NAMES))
    }
}

/// `[[operation]]`: a change an operator makes to a live cluster. Every option of every
/// action is here; stage 2 refuses those the action does not take.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOperation {
    /// When it starts, from the start of the run.
    pub at: Spanned<RawDuration>,
    /// What is done.
    pub action: Spanned<OperationKind>,
    /// `failover`: the replica; `remove-node`: the node.
    pub target: Option<Spanned<RawTarget>>,
    /// `failover`: `default`, `force` or `takeover`.
    pub mode: Option<Spanned<RawFailoverMode>>,
    /// `reshard`: the primary the slots leave.
    pub from: Option<Spanned<RawTarget>>,
    /// `reshard`: the primary the slots go to.
    pub to: Option<Spanned<RawTarget>>,
    /// `reshard`: how many slots.
    pub slots: Option<Spanned<u64>>,
    /// `reshard`: which slots, `[first, last]`.
    pub range: Option<Spanned<Vec<Spanned<u64>>>>,
    /// `reshard`: the slot of this key.
    pub key: Option<Spanned<String>>,
    /// `reshard`: `keys` (key by key) or `atomic` (Valkey 9's `CLUSTER MIGRATESLOTS`).
    pub method: Option<Spanned<RawMethod>>,
    /// Migrations: keys moved by one `MIGRATE`.
    pub keys_per_batch: Option<Spanned<u32>>,
    /// Migrations: slots moved at once.
    pub pipeline: Option<Spanned<u32>>,
    /// Migrations: the limit on one `MIGRATE`.
    pub timeout: Option<Spanned<RawDuration>>,
    /// `add-node`: `primary` or `replica`.
    pub role: Option<Spanned<RawRole>>,
    /// `add-node`: the primary a new replica follows.
    #[serde(rename = "replica-of")]
    pub replica_of: Option<Spanned<RawTarget>>,
    /// `rebalance`: whether primaries without slots get their share.
    pub use_empty_primaries: Option<Spanned<bool>>,
    /// `remove-node`: move the node's slots to the other primaries first.
    pub drain: Option<Spanned<bool>>,
    /// Never allowed (slotstorm names new nodes); read only to say so.
    pub name: Option<Spanned<de::IgnoredAny>>,
    /// Never allowed on an operation; read only to say why.
    pub duration: Option<Spanned<de::IgnoredAny>>,
    /// Never allowed on an operation; read only to say why.
    pub every: Option<Spanned<de::IgnoredAny>>,
    /// Never allowed on an operation; read only to say why.
    pub count: Option<Spanned<de::IgnoredAny>>,
}

/// `operation.action`, without its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OperationKind {
    /// A replica takes over from its primary.
    Failover,
    /// Slots move from one primary to another.
    Reshard,
    /// A new node joins.
    AddNode,
    /// Slots are evened out over the primaries.
    Rebalance,
    /// A node leaves.
    RemoveNode,
}

/// The operations and their names, in the order messages list them.
const OPERATIONS: [(&str, OperationKind); 5] = [
    ("failover", OperationKind::Failover),
    ("reshard", OperationKind::Reshard),
    ("add-node", OperationKind::AddNode),
    ("rebalance", OperationKind::Rebalance),
    ("remove-node", OperationKind::RemoveNode),
];

/// The operations' names alone, for serde's "expected one of".
const OPERATION_NAMES: [&str; OPERATIONS.len()] = names(OPERATIONS);

/// The names of a table of kinds, at compile time, so the two lists never drift apart.
const fn names<K: Copy, const N: usize>(table: [(&'static str, K); N]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = table[i].0;
        i += 1;
    }
    out
}

impl OperationKind {
    /// The name as the file writes it.
    pub fn name(self) -> &'static str {
        OPERATIONS.iter().find(|(_, k)| *k == self).map_or("?", |(n, _)| n)
    }
}

impl<'de> Deserialize<'de> for OperationKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let word = String::deserialize(d)?;
        if let Some((_, kind)) = OPERATIONS.iter().find(|(n, _)| *n == word) {
            return Ok(*kind);
        }
        if ACTION_NAMES.contains(&word.as_str()) {
            return Err(de::Error::custom(format_args!(
                "`{word}` is a fault, not an operation: write it in a [[fault]] table"
            )));
        }
        Err(de::Error::unknown_variant(&word, &OPERATION_NAMES))
    }
}

/// `operation.method` of a reshard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawMethod {
    /// Key by key, as `redis-cli --cluster reshard`.
    Keys,
    /// `CLUSTER MIGRATESLOTS` (Valkey 9 and later).
    Atomic,
}

/// `operation.mode` of a failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawFailoverMode {
    /// `CLUSTER FAILOVER`.
    Default,
    /// `CLUSTER FAILOVER FORCE`.
    Force,
    /// `CLUSTER FAILOVER TAKEOVER`.
    Takeover,
}

/// `operation.role` of a new node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawRole {
    /// A primary, empty until slots are moved to it.
    Primary,
    /// A replica of `replica-of`.
    Replica,
}

/// A target (`fault.target`, and an operation's `target`, `from`, `to`, `replica-of`): a string (a node name or a keyword, told apart in stage 2) or a table
/// naming a slot by a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RawTarget {
    /// `"redis-3"`, `"random-primary"`, …
    Word(String),
    /// `{ primary-of = "…" }` or `{ replica-of = "…" }`; stage 2 checks that exactly one is
    /// given.
    Table {
        /// The key whose primary is meant.
        primary_of: Option<Spanned<String>>,
        /// The key whose replica is meant.
        replica_of: Option<Spanned<String>>,
    },
}

/// The table form of [`RawTarget`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawTargetTable {
    primary_of: Option<Spanned<String>>,
    replica_of: Option<Spanned<String>>,
}

impl<'de> Deserialize<'de> for RawTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawTarget;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    r#"a node name ("redis-1"), a keyword ("random-primary") or a table ({ primary-of = "{user:42}" })"#,
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawTarget, E> {
                Ok(RawTarget::Word(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawTarget, A::Error> {
                // Through a struct, as `keys.value_size` does: serde's own messages and paths
                // for unknown fields.
                let t = RawTargetTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawTarget::Table { primary_of: t.primary_of, replica_of: t.replica_of })
            }
        }
        d.deserialize_any(V)
    }
}
