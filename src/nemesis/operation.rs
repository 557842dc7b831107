//! Topology operations from a chaos file's `[[operation]]` tables, performed on the run's
//! embedded cluster through [`crate::cluster`] (the protocol, never redis-cli): planned
//! failover, reshard, add-node, rebalance, remove-node. Each emits `OperationStarted`, its
//! steps (batches migrated, slots handed over) and `OperationDone` or `OperationFailed` (with
//! the slots it left open) into the run's history.
//!
//! Operations run one at a time, in order, on a task of their own, so faults scheduled
//! during an operation hit it (a kill of a reshard's source).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use rand::rngs::SmallRng;

use super::target::resolve;
use crate::backend::docker::{DockerCluster, NodeContainer};
use crate::clock::RunClock;
use crate::cluster::admin::{AdminError, NodeRef as ClusterNode};
use crate::cluster::membership::JoinAs;
use crate::cluster::migrate::{self, ReshardEvent, ReshardOptions, ReshardPlan};
use crate::cluster::topology::{self, SlotRange};
use crate::cluster::{failover, fix, rebalance, settle};
use crate::embedded;
use crate::history::EventKind;
use crate::history::{EventLog, emit};
use crate::spec::chaos::{
    Migration, MigrationMethod, NewNodeRole, NodeRef, Operation, ScheduledOperation, SlotSelection,
    TargetSpec,
};

/// How long a failover, a join or a forget may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// What operations work on: the cluster as it grows and shrinks.
#[derive(Clone)]
pub struct Operator {
    /// The engine.
    pub docker: Docker,
    /// The run's containers, kept current as nodes are added and removed (the nemesis heals
    /// every node in it on the way out).
    pub cluster: Arc<Mutex<DockerCluster>>,
    /// The run's clock.
    pub clock: RunClock,
    /// Where events go.
    pub events: EventLog,
    /// Nodes added by this run, oldest first (`newest` is the last).
    added: Arc<Mutex<Vec<String>>>,
    /// The operation in progress: its number and action.
    current: Arc<Mutex<Option<(usize, &'static str)>>>,
}

/// An operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// Its target could not be resolved.
    #[error("{0}")]
    Target(String),
    /// The cluster refused or the change failed.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// Adding or removing a container failed.
    #[error(transparent)]
    Scale(#[from] embedded::ScaleError),
    /// No node answered, or the nodes did not settle.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

impl Operator {
    /// An operator on `cluster`.
    pub fn new(docker: Docker, cluster: DockerCluster, clock: RunClock, events: EventLog) -> Operator {
        Operator {
            docker,
            cluster: Arc::new(Mutex::new(cluster)),
            clock,
            events,
            added: Arc::default(),
            current: Arc::default(),
        }
    }

    /// The cluster as it is now.
    pub fn cluster(&self) -> DockerCluster {
        self.cluster.lock().expect("cluster lock").clone()
    }

    fn seeds(&self) -> Vec<SocketAddr> {
        self.cluster().addrs()
    }

    fn emit(&self, kind: EventKind) {
        emit(&self.events, self.clock.now_us(), kind);
    }

    /// Perform `op`, recording it. Failures are recorded (with the slots left open) and
    /// returned.
    ///
    /// # Errors
    /// [`OperationError`] when the operation could not be done.
    pub async fn perform(&self, op: &ScheduledOperation, rng: &mut SmallRng) -> Result<(), OperationError> {
        let action = op.operation.name();
        let index = op.index;
        *self.current.lock().expect("current lock") = Some((index, action));
        let result = self.run(op, rng).await;
        *self.current.lock().expect("current lock") = None;
        if let Err(e) = &result {
            let open_slots = open_slots(&self.seeds()).await;
            self.emit(EventKind::OperationFailed {
                index,
                action: action.into(),
                error: e.to_string(),
                open_slots,
            });
        }
        result
    }

    /// Record the operation in progress, if any, as failed for `why`: the nemesis calls this
    /// when it abandons the operation's task (a stop, or no end in sight).
    pub async fn cut_short(&self, why: &str) {
        let Some((index, action)) = self.current.lock().expect("current lock").take() else { return };
        let open_slots = open_slots(&self.seeds()).await;
        self.emit(EventKind::OperationFailed { index, action: action.into(), error: why.into(), open_slots });
    }

    async fn run(&self, op: &ScheduledOperation, rng: &mut SmallRng) -> Result<(), OperationError> {
        let index = op.index;
        let action = op.operation.name().to_string();
        let started = |detail: String| {
            self.emit(EventKind::OperationStarted { index, action: action.clone(), detail });
            if super::PANIC_IN_OPERATION.swap(false, std::sync::atomic::Ordering::Relaxed) {
                panic!("test hook: an operation panics");
            }
        };
        let done = |detail: String, slots: u32, keys: u64, bytes: u64| {
            self.emit(EventKind::OperationDone { index, action: action.clone(), detail, slots, keys, bytes });
        };
        match &op.operation {
            Operation::Failover { target, mode } => {
                let replica = self.one(target, rng).await?;
                started(format!("{} takes over ({})", replica.node, mode.name()));
                let did =
                    failover::failover(&self.seeds(), &ClusterNode::Addr(replica.addr), *mode, STEP_TIMEOUT)
                        .await?;
                done(
                    format!(
                        "{} took over {} slots from {} in {:.2}s",
                        replica.node,
                        did.slots,
                        self.name_of_id(&did.demoted.0).await,
                        did.elapsed.as_secs_f64()
                    ),
                    did.slots,
                    0,
                    0,
                );
            }
            Operation::Reshard { from, to, slots, migration } => {
                let (src, dst) = (self.one(from, rng).await?, self.one(to, rng).await?);
                let view = settle::seed_view(&self.seeds()).await?;
                let ranges = match slots {
                    SlotSelection::Count(n) => {
                        migrate::lowest_slots(&view, &ClusterNode::Addr(src.addr), u32::from(*n))?
                    }
                    SlotSelection::Range { first, last } => {
                        vec![SlotRange { start: first.get(), end: last.get() }]
                    }
                    SlotSelection::Key { slot, .. } => vec![SlotRange { start: slot.get(), end: slot.get() }],
                };
                let count: u32 = ranges.iter().map(SlotRange::len).sum();
                started(format!("{count} slots {} → {}", src.node, dst.node));
                let plan = ReshardPlan {
                    from: ClusterNode::Addr(src.addr),
                    to: ClusterNode::Addr(dst.addr),
                    slots: ranges,
                };
                let r =
                    migrate::reshard(&self.seeds(), &plan, &options(migration), &self.steps(index)).await?;
                done(
                    format!(
                        "{} slots {} → {}, {} keys in {:.2}s",
                        r.slots,
                        src.node,
                        dst.node,
                        r.keys,
                        r.elapsed.as_secs_f64()
                    ),
                    r.slots,
                    r.keys,
                    r.bytes,
                );
            }
            Operation::AddNode { role } => {
                let join = match role {
                    NewNodeRole::Primary => JoinAs::Primary,
                    NewNodeRole::Replica { of } => {
                        JoinAs::ReplicaOf(ClusterNode::Addr(self.one(of, rng).await?.addr))
                    }
                };
                let as_what = match role {
                    NewNodeRole::Primary => "an empty primary".to_string(),
                    NewNodeRole::Replica { of } => format!("a replica of {of}"),
                };
                started(format!("a new node joins as {as_what}"));
                let (node, _joined) =
                    embedded::add_node(&self.docker, &self.cluster(), &join, STEP_TIMEOUT).await?;
                let name = node.node.clone();
                self.cluster.lock().expect("cluster lock").nodes.push(node);
                self.added.lock().expect("added lock").push(name.clone());
                self.emit(EventKind::OperationStep {
                    index,
                    what: format!("{name} joined"),
                    slot: None,
                    keys: 0,
                    bytes: 0,
                });
                done(format!("{name} joined as {as_what}"), 0, 0, 0);
            }
            Operation::Rebalance { use_empty_primaries, migration } => {
                let mut view = settle::seed_view(&self.seeds()).await?;
                if !use_empty_primaries {
                    view.nodes.retain(|n| !n.is_primary() || !n.slots.is_empty());
                }
                let plan = rebalance::rebalance_plan(&view);
                let moving: u32 = plan.iter().map(|m| m.slots.iter().map(SlotRange::len).sum::<u32>()).sum();
                started(format!("{} moves, {moving} slots, to even shares", plan.len()));
                let r = rebalance::rebalance(
                    &self.seeds(),
                    *use_empty_primaries,
                    &options(migration),
                    &self.steps(index),
                )
                .await?;
                done(
                    format!(
                        "{} moves, {} slots, {} keys in {:.2}s",
                        r.moves.len(),
                        r.slots(),
                        r.keys(),
                        r.elapsed.as_secs_f64()
                    ),
                    r.slots(),
                    r.keys(),
                    r.moves.iter().map(|m| m.bytes).sum(),
                );
            }
            Operation::RemoveNode { target, drain } => {
                let name = match target {
                    NodeRef::Name(n) => n.clone(),
                    NodeRef::Newest => {
                        self.added.lock().expect("added lock").last().cloned().ok_or_else(|| {
                            OperationError::Target("remove-node newest: no node was added by this run".into())
                        })?
                    }
                };
                let node =
                    self.cluster().nodes.iter().find(|n| n.node == name).cloned().ok_or_else(|| {
                        OperationError::Target(format!("remove-node: no node {name} in this run"))
                    })?;
                started(format!("{name}{}", if drain.is_some() { ", drained first" } else { "" }));
                let (mut slots, mut keys, mut bytes) = (0, 0, 0);
                if let Some(m) = drain {
                    (slots, keys, bytes) = self.drain(index, &node, m).await?;
                }
                embedded::remove_node(&self.docker, &self.cluster(), &name, STEP_TIMEOUT).await?;
                self.cluster.lock().expect("cluster lock").nodes.retain(|n| n.node != name);
                self.added.lock().expect("added lock").retain(|n| n != &name);
                let detail = format!("{name} removed ({slots} slots, {keys} keys moved away first)");
                done(detail, slots, keys, bytes);
            }
        }
        Ok(())
    }

    /// Move every slot of `node` to the other primaries, evenly (fewest slots first).
    async fn drain(
        &self,
        index: usize,
        node: &NodeContainer,
        m: &Migration,
    ) -> Result<(u32, u64, u64), OperationError> {
        let view = settle::seed_view(&self.seeds()).await?;
        let addr = node.addr.to_string();
        let Some(me) = view.nodes.iter().find(|n| n.addr == addr) else { return Ok((0, 0, 0)) };
        let mut mine = topology::slots_in(&me.slots);
        let mut others: Vec<_> =
            view.nodes.iter().filter(|n| n.is_primary() && !n.is_failed() && n.addr != addr).collect();
        if mine.is_empty() {
            return Ok((0, 0, 0));
        }
        if others.is_empty() {
            return Err(OperationError::Target(format!(
                "remove-node {}: no other primary to drain to",
                node.node
            )));
        }
        others.sort_by_key(|n| n.slot_count());
        let (mut slots, mut keys, mut bytes) = (0, 0, 0);
        let share = mine.len().div_ceil(others.len());
        for to in others {
            let chunk: Vec<u16> = mine.drain(..share.min(mine.len())).collect();
            if chunk.is_empty() {
                break;
            }
            let plan = ReshardPlan {
                from: ClusterNode::Addr(node.addr),
                to: ClusterNode::Id(to.id.clone()),
                slots: topology::to_ranges(chunk),
            };
            let r = migrate::reshard(&self.seeds(), &plan, &options(m), &self.steps(index)).await?;
            slots += r.slots;
            keys += r.keys;
            bytes += r.bytes;
        }
        Ok((slots, keys, bytes))
    }

    /// The one node `target` names now.
    async fn one(&self, target: &TargetSpec, rng: &mut SmallRng) -> Result<NodeContainer, OperationError> {
        let r = resolve(target, &self.cluster(), rng).await.map_err(OperationError::Target)?;
        r.nodes.into_iter().next().ok_or_else(|| OperationError::Target(format!("{target:?} names no node")))
    }

    /// The run's name of the node with cluster id `id`, or the id.
    async fn name_of_id(&self, id: &str) -> String {
        let Ok(view) = settle::seed_view(&self.seeds()).await else { return id.to_string() };
        let cluster = self.cluster();
        view.nodes
            .iter()
            .find(|n| n.id.0 == id)
            .and_then(|n| cluster.nodes.iter().find(|c| c.addr.to_string() == n.addr))
            .map_or_else(|| id.to_string(), |c| c.node.clone())
    }

    /// A reshard progress callback that records steps of operation `index`.
    fn steps(&self, index: usize) -> impl Fn(ReshardEvent) + Send + Sync + use<> {
        let (events, clock) = (self.events.clone(), self.clock);
        move |e| {
            let (what, slot, keys, bytes) = match e {
                ReshardEvent::Batch { slot, keys, bytes } => {
                    ("batch".into(), Some(slot.get()), keys as u64, bytes)
                }
                ReshardEvent::SlotMoved { slot, .. } => ("slot_handed_over".into(), Some(slot.get()), 0, 0),
                // An atomic migration's states: `migration_snapshotting`, …, `migration_success`.
                ReshardEvent::Phase { state } => (format!("migration_{state}"), None, 0, 0),
                _ => return,
            };
            emit(&events, clock.now_us(), EventKind::OperationStep { index, what, slot, keys, bytes });
        }
    }
}

fn options(m: &Migration) -> ReshardOptions {
    ReshardOptions {
        keys_per_batch: m.keys_per_batch as usize,
        parallel_slots: m.pipeline as usize,
        migrate_timeout: m.timeout,
        atomic: m.method == MigrationMethod::Atomic,
        ..ReshardOptions::default()
    }
}

/// Slots some node has importing or migrating now (best effort: empty when no node answers).
pub async fn open_slots(seeds: &[SocketAddr]) -> Vec<u16> {
    match fix::check_slots(seeds).await {
        Ok(health) => {
            let mut slots: Vec<u16> = health.open.iter().map(|o| o.slot.get()).collect();
            slots.sort_unstable();
            slots.dedup();
            slots
        }
        Err(_) => Vec::new(),
    }
}
