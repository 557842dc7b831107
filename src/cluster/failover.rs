//! Planned failover: a replica takes over from its primary (`CLUSTER FAILOVER`), and the
//! wait until every answering node sees the roles swapped.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::admin::{AdminError, NodeRef, describe, live_addr, resolve};
use super::node::{ADMIN_TIMEOUT, Node};
use super::settle::{Reachable, seed_view, settled_reason, wait_until};
use super::topology::{NodeId, SlotRange};

/// How a replica takes over from its primary (`CLUSTER FAILOVER`'s option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailoverMode {
    /// Coordinated: the primary stops writes, the replica catches up, then takes over; no
    /// acknowledged write is lost. Needs the primary to answer.
    #[default]
    Default,
    /// The replica does not wait for its primary (which may be down), but still needs the
    /// other primaries' votes.
    Force,
    /// The replica takes over alone, without an election: works in a minority partition,
    /// and may lose writes.
    Takeover,
}

impl FailoverMode {
    /// The name as the file writes it.
    pub fn name(self) -> &'static str {
        match self {
            FailoverMode::Default => "default",
            FailoverMode::Force => "force",
            FailoverMode::Takeover => "takeover",
        }
    }

    /// The option `CLUSTER FAILOVER` takes for this mode: none, `FORCE` or `TAKEOVER`.
    pub fn argument(self) -> Option<&'static str> {
        match self {
            FailoverMode::Default => None,
            FailoverMode::Force => Some("FORCE"),
            FailoverMode::Takeover => Some("TAKEOVER"),
        }
    }
}

/// A failover that completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverDone {
    /// The replica that became primary.
    pub promoted: NodeId,
    /// The primary it took over from.
    pub demoted: NodeId,
    /// How many slots changed hands.
    pub slots: u32,
    /// From the command until every answering node agreed.
    pub elapsed: Duration,
}

/// Make `replica` take over from its primary with `CLUSTER FAILOVER [FORCE|TAKEOVER]`, then
/// wait until the roles have swapped (the replica serves the slots; the old primary, if it
/// answers, replicates it) and every answering node agrees.
///
/// # Errors
/// [`AdminError::UnknownNode`] or [`AdminError::NotAReplica`] before anything is sent;
/// [`ClusterError::NotReady`] when the roles have not swapped within `timeout`.
pub async fn failover(
    seeds: &[SocketAddr],
    replica: &NodeRef,
    mode: FailoverMode,
    timeout: Duration,
) -> Result<FailoverDone, AdminError> {
    let start = Instant::now();
    let view = seed_view(seeds).await?;
    let entry = resolve(&view, replica, "replica")?;
    let Some(old) = entry.primary.clone().filter(|_| !entry.is_primary()) else {
        return Err(AdminError::NotAReplica { node: describe(entry) });
    };
    let new = entry.id.clone();
    let addr = live_addr(entry, "replica")?;
    let slots = view.node(&old).map(|p| p.slots.clone()).unwrap_or_default();
    let mut node = Node::connect(addr, ADMIN_TIMEOUT).await?;
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("FAILOVER");
    if let Some(option) = mode.argument() {
        cmd.arg(option);
    }
    node.run::<()>(&cmd).await?;
    tracing::debug!(replica = %addr, ?mode, "Failover requested; waiting for the roles to swap.");
    let count = slots.iter().map(SlotRange::len).sum();
    let remaining = timeout.saturating_sub(start.elapsed());
    wait_until(seeds, remaining, |r| swap_pending(r, &new, &old, &slots).or_else(|| settled_reason(r)))
        .await?;
    Ok(FailoverDone { promoted: new, demoted: old, slots: count, elapsed: start.elapsed() })
}

/// Why the swap of `new` and `old` is not yet seen by every answering node.
fn swap_pending(r: &Reachable, new: &NodeId, old: &NodeId, slots: &[SlotRange]) -> Option<String> {
    let mut want = slots.to_vec();
    want.sort();
    for report in &r.reports {
        let shape = report.view.shape();
        if shape.primaries.get(new) != Some(&want) {
            return Some(format!("{} does not yet see {new} serving the slots", report.addr));
        }
        if !r.unreachable.contains(old) && shape.replicas.get(old) != Some(new) {
            return Some(format!("{} does not yet see {old} replicating {new}", report.addr));
        }
    }
    None
}
