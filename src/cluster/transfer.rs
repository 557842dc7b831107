//! Moving one slot's keys between two nodes (`GETKEYSINSLOT` + `MIGRATE … KEYS` rounds,
//! with a policy for keys present on both sides) and announcing a slot's new owner
//! (`SETSLOT NODE`). Shared by `migrate` (reshard) and `fix`.

use std::net::SocketAddr;
use std::time::Duration;

use super::ClusterError;
use super::admin::AdminError;
use super::node::Node;
use super::topology::NodeId;

/// What to do with a key that already exists on the target (`BUSYKEY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Replace {
    /// Stop with [`AdminError::BusyKey`].
    #[default]
    Never,
    /// Overwrite when both copies hold the same value (`DUMP` equal), as `redis-cli --cluster
    /// fix` does; otherwise stop.
    IfIdentical,
    /// Overwrite the target's copy (`MIGRATE … REPLACE`).
    Always,
}

/// `CLUSTER SETSLOT slot NODE owner` on `node`.
pub(crate) async fn set_owner(node: &mut Node, slot: u16, owner: &NodeId) -> Result<(), ClusterError> {
    node.run(redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg("NODE").arg(&owner.0)).await
}

/// [`set_owner`] on each of `others`; a node that fails learns by gossip instead.
pub(crate) async fn tell_others(others: &[Node], slot: u16, owner: &NodeId) {
    let sets = others.iter().map(|n| async move {
        let mut n = n.clone();
        if let Err(e) = set_owner(&mut n, slot, owner).await {
            tracing::warn!(node = %n.addr, slot, error = %e, "A primary did not take the new owner; gossip will tell it.");
        }
    });
    futures_util::future::join_all(sets).await;
}

/// How keys move in rounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchOptions {
    pub keys_per_batch: usize,
    pub migrate_timeout: Duration,
    pub replace: Replace,
}

/// Keys moved out of one slot.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Moved {
    pub keys: u64,
    pub replaced: u64,
    /// Their size as `MEMORY USAGE` estimates it on the source before the move.
    pub bytes: u64,
}

/// Move every key of `slot` from `src` to `dst`, a batch at a time, until `src` has none.
/// The target must serve or import the slot (`RESTORE-ASKING` is refused otherwise).
pub(crate) async fn move_keys(
    src: &mut Node,
    dst: &mut Node,
    slot: u16,
    opts: &BatchOptions,
    mut on_batch: impl FnMut(usize, u64),
) -> Result<Moved, AdminError> {
    let mut moved = Moved::default();
    loop {
        let keys: Vec<Vec<u8>> = src
            .run(redis::cmd("CLUSTER").arg("GETKEYSINSLOT").arg(slot).arg(opts.keys_per_batch.max(1)))
            .await?;
        if keys.is_empty() {
            return Ok(moved);
        }
        // One more round trip per batch buys the bytes-per-second figure; a key that
        // vanished meanwhile (deleted, expired) counts nothing: a source migrating the
        // slot answers ASK for it, not nil, as it would for a client.
        // ASKING lets a source that only imports the slot (a holder `fix` opened) answer.
        let mut usage = redis::pipe();
        usage.ignore_errors();
        for k in &keys {
            usage.cmd("ASKING").ignore().cmd("MEMORY").arg("USAGE").arg(k);
        }
        let sizes: Vec<redis::RedisResult<Option<u64>>> = src.run_pipe(&usage).await?;
        let mut bytes = 0;
        for size in sizes {
            match size {
                Ok(size) => bytes += size.unwrap_or(0),
                Err(e) if e.code() == Some("ASK") => {}
                Err(source) => {
                    let command = "MEMORY USAGE".into();
                    return Err(ClusterError::Command { addr: src.addr, command, source }.into());
                }
            }
        }
        let mut replace = opts.replace == Replace::Always;
        loop {
            match migrate(src, dst.addr, &keys, replace, opts.migrate_timeout).await {
                Ok(()) => break,
                Err(ClusterError::Command { source, .. })
                    if !replace && source.to_string().contains("BUSYKEY") =>
                {
                    moved.replaced += busy_keys_replaceable(src, dst, slot, &keys, opts.replace).await?;
                    replace = true;
                }
                Err(e) => return Err(e.into()),
            }
        }
        moved.keys += keys.len() as u64;
        moved.bytes += bytes;
        on_batch(keys.len(), bytes);
    }
}

/// `MIGRATE host port "" 0 timeout [REPLACE] KEYS k…` on `src`.
async fn migrate(
    src: &mut Node,
    to: SocketAddr,
    keys: &[Vec<u8>],
    replace: bool,
    timeout: Duration,
) -> Result<(), ClusterError> {
    let mut cmd = redis::cmd("MIGRATE");
    cmd.arg(to.ip().to_string()).arg(to.port()).arg("").arg(0).arg(timeout.as_millis() as u64);
    if replace {
        cmd.arg("REPLACE");
    }
    cmd.arg("KEYS").arg(keys);
    let _: redis::Value = src.run(&cmd).await?;
    Ok(())
}

/// After a `BUSYKEY`: how many of `keys` exist on both sides, when the policy allows
/// overwriting them; otherwise [`AdminError::BusyKey`] naming one.
async fn busy_keys_replaceable(
    src: &mut Node,
    dst: &mut Node,
    slot: u16,
    keys: &[Vec<u8>],
    policy: Replace,
) -> Result<u64, AdminError> {
    let mut busy = 0;
    for key in keys {
        // A MIGRATE that failed part-way has still moved (and deleted) the keys before the
        // busy one: a key the source no longer has (it answers ASK for it) did not collide.
        // ASKING, as above, for a source that only imports the slot.
        let mut dump = redis::pipe();
        dump.cmd("ASKING").ignore().cmd("DUMP").arg(key);
        let ours: Option<Vec<u8>> = match src.run_pipe::<(Option<Vec<u8>>,)>(&dump).await {
            Ok((v,)) => v,
            Err(ClusterError::Command { source, .. })
                if source.to_string().to_ascii_uppercase().contains("ASK") =>
            {
                None
            }
            Err(e) => return Err(e.into()),
        };
        let Some(ours) = ours else { continue };
        // ASKING lets the target answer for a slot it is only importing.
        let mut pipe = redis::pipe();
        pipe.cmd("ASKING").ignore().cmd("DUMP").arg(key);
        let (theirs,): (Option<Vec<u8>>,) = dst.run_pipe(&pipe).await.map_err(AdminError::from)?;
        let Some(theirs) = theirs else { continue };
        busy += 1;
        let busy_key = |why| AdminError::BusyKey {
            slot,
            key: String::from_utf8_lossy(key).into_owned(),
            target: dst.addr,
            why,
        };
        match policy {
            Replace::Never => return Err(busy_key("")),
            Replace::IfIdentical => {
                if ours != theirs {
                    return Err(busy_key("with another value"));
                }
            }
            Replace::Always => {}
        }
    }
    Ok(busy)
}
