//! Topology operations, resolved: what an `[[operation]]` table asks of the cluster, with
//! every option typed and defaulted. Targets are checked for their shape here (a failover
//! starts on a replica, a reshard moves slots between primaries); which node they name is
//! decided when the run performs the operation.

use std::fmt;
use std::time::Duration;

use super::TargetSpec;
use crate::cluster::slot::Slot;

/// One `[[operation]]` table: a change to the cluster, made once.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationSpec {
    /// When it starts, from the start of the run (warm-up included).
    pub at: Duration,
    /// What is done.
    pub operation: Operation,
    /// Where it stands in the file.
    pub place: super::Place,
}

/// What an operation does. See the table in the [module docs](super).
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// A replica takes over from its primary (`CLUSTER FAILOVER` on the replica).
    Failover {
        /// The replica: a node name, `random-replica` or `{ replica-of = "<key>" }`.
        target: TargetSpec,
        /// How much the replica waits for its primary's agreement.
        mode: FailoverMode,
    },
    /// Slots move from one primary to another, keys and all, while clients keep running.
    Reshard {
        /// The primary the slots leave: a node name, `random-primary` or
        /// `{ primary-of = "<key>" }`.
        from: TargetSpec,
        /// The primary they go to, of the same kinds; `random-primary` is chosen among the
        /// primaries other than `from`. Never the same name or key slot as `from`.
        to: TargetSpec,
        /// Which of `from`'s slots move.
        slots: SlotSelection,
        /// How the keys are moved.
        migration: Migration,
    },
    /// A new node joins the cluster; slotstorm names it (the next `redis-<n>`).
    AddNode {
        /// Whether it joins as an empty primary or as a replica.
        role: NewNodeRole,
    },
    /// Slots are evened out over the primaries (as `redis-cli --cluster rebalance`).
    Rebalance {
        /// Whether primaries that hold no slots (a node just added) get their share.
        use_empty_primaries: bool,
        /// How the keys are moved.
        migration: Migration,
    },
    /// A node leaves the cluster: the others forget it, and it is stopped. It must hold no
    /// slots by then, which is checked at run time, unless `drain` moves them away first.
    RemoveNode {
        /// The node: by name, or the one the latest `add-node` added.
        target: NodeRef,
        /// `drain = true`: move the node's slots evenly to the other primaries first, with
        /// these settings; `None` when the file does not drain.
        drain: Option<Migration>,
    },
}

impl Operation {
    /// The action's name as the file writes it (`"reshard"`, `"add-node"`, …).
    pub fn name(&self) -> &'static str {
        use super::raw::OperationKind as K;
        let kind = match self {
            Operation::Failover { .. } => K::Failover,
            Operation::Reshard { .. } => K::Reshard,
            Operation::AddNode { .. } => K::AddNode,
            Operation::Rebalance { .. } => K::Rebalance,
            Operation::RemoveNode { .. } => K::RemoveNode,
        };
        kind.name()
    }
}

/// How a failover treats the old primary: the cluster's own type, named as the file names it.
pub use crate::cluster::failover::FailoverMode;

/// Which slots a reshard moves: exactly one of `slots`, `range` or `key` in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotSelection {
    /// `slots = N`: this many of `from`'s slots, `1..=16384`; which ones is the run's choice.
    /// `from` must own at least that many when the reshard starts.
    Count(u16),
    /// `range = [first, last]`: these slots, both included, `first <= last`. Each must be
    /// `from`'s when the reshard starts.
    Range {
        /// The first slot moved.
        first: Slot,
        /// The last slot moved; not before `first`.
        last: Slot,
    },
    /// `key = "{user:42}"`: the one slot this key (or hash tag) lives in.
    Key {
        /// The key as written.
        key: String,
        /// Its hash slot.
        slot: Slot,
    },
}

/// How slots move, for every operation that moves them (`reshard`, `rebalance`,
/// `remove-node` with `drain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// How the slots move.
    pub method: MigrationMethod,
    /// Keys moved by one `MIGRATE` (the `COUNT` of `CLUSTER GETKEYSINSLOT`); at least 1.
    pub keys_per_batch: u32,
    /// Slots migrated at once, each with its own `MIGRATE` loop; at least 1.
    pub pipeline: u32,
    /// The limit on one `MIGRATE` command; more than zero.
    pub timeout: Duration,
}

impl Default for Migration {
    /// 100 keys per batch, 10 slots at once, 5 s per `MIGRATE`.
    fn default() -> Self {
        Migration {
            method: MigrationMethod::Keys,
            keys_per_batch: 100,
            pipeline: 10,
            timeout: Duration::from_secs(5),
        }
    }
}

/// How a reshard moves its slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MigrationMethod {
    /// Key by key (`SETSLOT IMPORTING/MIGRATING`, `MIGRATE`, `SETSLOT NODE`), as
    /// `redis-cli --cluster reshard`: every engine.
    #[default]
    Keys,
    /// All the slots at once by the nodes themselves (`CLUSTER MIGRATESLOTS`): Valkey 9 and
    /// later. The source streams a snapshot and then the writes to the target, pauses
    /// writes briefly, and the target takes the slots over: no ASK, no open slots.
    Atomic,
}

/// The role a node added by `add-node` takes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NewNodeRole {
    /// An empty primary: it serves nothing until a reshard or rebalance gives it slots.
    #[default]
    Primary,
    /// A replica of a primary: a node name, `random-primary` or `{ primary-of = "<key>" }`.
    Replica {
        /// The primary it replicates.
        of: TargetSpec,
    },
}

/// The node a `remove-node` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRef {
    /// By name: `redis-<n>`.
    Name(String),
    /// `"newest"`: the node the latest `add-node` before it added.
    Newest,
}

impl fmt::Display for NodeRef {
    /// As the file writes it: `redis-7`, `newest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeRef::Name(name) => f.write_str(name),
            NodeRef::Newest => f.write_str("newest"),
        }
    }
}

/// One operation, placed on the run's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledOperation {
    /// The operation's number in the file: `operation[index]`, from 0.
    pub index: usize,
    /// When it starts, from the start of the run; before the run's end.
    pub at: Duration,
    /// What is done.
    pub operation: Operation,
}
