//! Reading the set-full ops' sets back after a run, through the same routing the driver
//! uses, for the lost-writes check.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::exec::{Attempt, Commands, Connections, attempt};
use super::render::Renderer;
use super::resp::Reply;
use super::router::Router;
use crate::check::lost_writes::ReadBack;
use crate::cluster::slot::Slot;
use crate::history::{OpEvent, OpKind};

/// Keys read per round trip batch.
const BATCH: usize = 64;
/// Attempts per batch before its keys are left unread.
const ATTEMPTS: u32 = 5;

/// Read back every set op `kind` wrote to (the ids in `ops`).
pub async fn read_sets(router: Arc<Router>, renderer: &Renderer, kind: OpKind, ops: &[OpEvent]) -> ReadBack {
    let ids: BTreeSet<u64> = ops.iter().filter(|o| o.kind == kind).map(|o| o.id).collect();
    let ids: Vec<u64> = ids.into_iter().collect();
    let mut conns = Connections::new(router.clone(), 0);
    let mut out = ReadBack::default();
    let mut cmds = Commands::default();
    let mut a = Attempt::default();
    for chunk in ids.chunks(BATCH) {
        cmds.clear();
        for &id in chunk {
            let key = renderer.set_full_key_for(kind, id).expect("a set-full op");
            cmds.push(Slot::of(&key).get(), &[b"SMEMBERS", &key]);
        }
        let mut todo: Vec<usize> = (0..cmds.len()).collect();
        for n in 0..ATTEMPTS {
            attempt(&mut conns, &cmds, &todo, None, true, &mut a).await;
            for &i in &todo {
                if a.failed.iter().any(|(f, _, _)| *f == i) {
                    continue;
                }
                out.sets.insert(chunk[i], uids(&a.replies[i]));
            }
            todo = a.failed.iter().map(|(i, _, _)| *i).collect();
            if todo.is_empty() {
                break;
            }
            router.request_refresh();
            tokio::time::sleep(Duration::from_millis(200 * u64::from(n + 1))).await;
        }
        out.unread.extend(todo.iter().map(|&i| chunk[i]));
    }
    out
}

/// The uids of an `SMEMBERS` reply (members that are not numbers are ignored: nothing but
/// `$uid` is added to these sets).
fn uids(v: &Reply) -> HashSet<u64> {
    match v {
        Reply::Array(items) => items
            .iter()
            .filter_map(|i| match i {
                Reply::Bulk(b) => std::str::from_utf8(b).ok()?.parse().ok(),
                _ => None,
            })
            .collect(),
        _ => HashSet::new(),
    }
}
