//! After the load: the driver's table changes recorded, slots left open by operations
//! repaired, and acknowledged writes read back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::check::failover::FaultReport;
use crate::check::lost_writes::{self, LostWrites};
use crate::clock::RunClock;
use crate::cluster::{self};
use crate::driver::readback;
use crate::driver::render::Renderer;
use crate::driver::router::{Router, TableChange};
use crate::history::{EventKind, History};
use crate::history::{EventLog, emit};

use super::SETTLE_TIMEOUT;

/// Record the driver's slot-table changes received so far as `TableChanged` events at their
/// run time, naming nodes as the run does (an address it has no name for stands as itself).
pub(super) fn record_table_changes(
    changes: &mut tokio::sync::mpsc::UnboundedReceiver<TableChange>,
    clock: &RunClock,
    names: &HashMap<SocketAddr, String>,
    events: &EventLog,
) {
    while let Ok(change) = changes.try_recv() {
        let at_us = change.at.saturating_duration_since(clock.start).as_micros() as u64;
        let mut owners: Vec<(String, u32)> = change
            .owners
            .iter()
            .map(|(a, n)| (names.get(a).cloned().unwrap_or_else(|| a.to_string()), *n))
            .collect();
        owners.sort();
        emit(events, at_us, EventKind::TableChanged { source: change.source.name().into(), owners });
    }
}

/// The heal step after topology operations: once the cluster has settled, repair slots an
/// operation left open (or uncovered) as `slotstorm cluster fix` does, and record it.
pub(super) async fn repair_slots(seeds: &[SocketAddr], clock: &RunClock, events: &EventLog) {
    if let Err(e) = cluster::wait_agreed(seeds, SETTLE_TIMEOUT).await {
        tracing::warn!(error = %e, "The cluster has not settled after the operations; checking its slots anyway.");
    }
    let health = match cluster::fix::check_slots(seeds).await {
        Ok(h) if h.is_clean() => return,
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "Could not check the slots after the operations.");
            return;
        }
    };
    let open: Vec<u16> = health.open.iter().map(|o| o.slot.get()).collect();
    let uncovered: Vec<(u16, u16)> = health.uncovered.iter().map(|r| (r.start, r.end)).collect();
    eprintln!("heal: {health}; repairing as `slotstorm cluster fix` does");
    let detail = match cluster::fix::fix(seeds, &cluster::fix::FixOptions::default()).await {
        Ok(r) => format!(
            "repaired {health}: {} closed, {} moves finished, {} ranges assigned, {} keys moved",
            r.closed.len(),
            r.finished.len(),
            r.assigned.len(),
            r.keys_moved
        ),
        Err(e) => format!("could not repair {health}: {e}"),
    };
    eprintln!("heal: {detail}");
    emit(events, clock.now_us(), crate::history::EventKind::SlotsFixed { open, uncovered, detail });
}

/// Read back every set-full op's sets, and judge them. `settled` is how the wait for the
/// cluster to agree ended: reading too early would find keys on a node about to be demoted,
/// but after a failed wait the sets are read anyway (keys that cannot be read are left
/// unjudged, not lost).
pub(super) async fn check_lost_writes(
    router: &Arc<Router>,
    renderer: &Renderer,
    history: &History,
    faults: &[FaultReport],
    settled: Result<(), &cluster::ClusterError>,
) -> Vec<LostWrites> {
    let ops = renderer.set_full_ops();
    if ops.is_empty() {
        return Vec::new();
    }
    if let Err(e) = settled {
        eprintln!("reading back for the lost-writes check although the cluster has not settled: {e}");
    }
    router.refresh_now().await;
    let mut out = Vec::new();
    for (kind, name) in ops {
        let read = readback::read_sets(router.clone(), renderer, kind, &history.ops).await;
        out.push(lost_writes::check(&history.ops, kind, &name, &read, faults));
    }
    out
}
