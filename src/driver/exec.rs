//! Executing one op against the cluster: group its commands by the node that serves their
//! slots, send each group as one pipeline (concurrently when there are several), follow
//! MOVED and ASK, reload scripts on NOSCRIPT, and report per request what failed.
//!
//! The client policy's retries wrap this: each attempt re-sends only the commands that
//! failed, and every attempt's errors are reported.

use std::net::SocketAddr;
use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use redis::{Cmd, Pipeline, Value};

use super::classify::{Failure, redirect_target, request_error, server_error};
use super::router::{Router, SlotTable};
use crate::history::ErrorClass;

/// Redirections followed for one command before its MOVED or ASK is surfaced as an error.
const MAX_REDIRECTS: u32 = 5;

/// A command ready to send, with the slot of its key.
#[derive(Debug, Clone)]
pub struct Routed {
    /// The command.
    pub cmd: Cmd,
    /// The slot its key hashes to.
    pub slot: u16,
}

/// A script an op runs, for reloading it where the node answers NOSCRIPT.
#[derive(Debug, Clone)]
pub struct ScriptSource {
    /// The script's text.
    pub source: String,
}

/// What one attempt at a set of commands came to.
#[derive(Debug, Default)]
pub struct Attempt {
    /// Commands (indexes into the op's list) that failed, with their failure and slot.
    pub failed: Vec<(usize, u16, Failure)>,
    /// Replies of the commands that succeeded, by index (`Nil` for failed ones).
    pub replies: Vec<Value>,
    /// MOVED redirections followed.
    pub moved: u32,
    /// ASK redirections followed.
    pub ask: u32,
    /// Errors met and handled on the way (NOSCRIPT before a reload), by slot.
    pub handled: Vec<(u16, ErrorClass)>,
}

/// One worker's connections, cached so the hot path takes no lock.
pub struct Connections {
    router: Arc<Router>,
    epoch: u64,
    table: Arc<SlotTable>,
    lane: usize,
    conns: Vec<(SocketAddr, u64, MultiplexedConnection)>,
}

impl Connections {
    /// A worker's cache over `router`, using connection `lane` of each node.
    pub fn new(router: Arc<Router>, lane: usize) -> Connections {
        let (epoch, table) = router.table();
        Connections { router, epoch, table, lane, conns: Vec::new() }
    }

    /// The router behind the cache.
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// The node serving `slot`, reloading the table if it changed since last asked.
    fn owner(&mut self, slot: u16) -> Option<SocketAddr> {
        if self.router.epoch() != self.epoch {
            (self.epoch, self.table) = self.router.table();
        }
        self.table.owner(slot)
    }

    async fn get(&mut self, addr: SocketAddr) -> Result<(u64, MultiplexedConnection), Failure> {
        if let Some((_, generation, conn)) = self.conns.iter().find(|(a, _, _)| *a == addr) {
            return Ok((*generation, conn.clone()));
        }
        let (generation, conn) = self.router.connection(addr, self.lane, None).await?;
        self.conns.push((addr, generation, conn.clone()));
        Ok((generation, conn))
    }

    /// Forget a connection that broke and ask the router for a fresh one next time.
    async fn broken(&mut self, addr: SocketAddr, generation: u64) {
        self.conns.retain(|(a, _, _)| *a != addr);
        // Reconnect eagerly (shared with other workers) so the next op finds it ready; a
        // failure here is reported by whichever op needs the node next.
        if let Ok((generation, conn)) = self.router.connection(addr, self.lane, Some(generation)).await {
            self.conns.push((addr, generation, conn));
        }
    }
}

/// Where a command goes in this round.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// To the slot's owner in the table.
    Owner,
    /// To the node an ASK named, preceded by ASKING.
    Asking(SocketAddr),
}

/// Commands bound for one node in one round: `(index, redirects so far)` each.
struct Group {
    addr: SocketAddr,
    asking: bool,
    members: Vec<(usize, u32)>,
}

/// Send `cmds` (only those listed in `todo`) and collect the outcome.
pub async fn attempt(
    conns: &mut Connections,
    cmds: &[Routed],
    todo: &[usize],
    script: Option<&ScriptSource>,
) -> Attempt {
    let mut out = Attempt { replies: vec![Value::Nil; cmds.len()], ..Default::default() };
    let mut pending: Vec<(usize, Target, u32)> = todo.iter().map(|&i| (i, Target::Owner, 0)).collect();
    while !pending.is_empty() {
        // Group by destination, keeping each group's commands in op order.
        let mut groups: Vec<Group> = Vec::new();
        for (i, target, redirects) in pending.drain(..) {
            let (addr, asking) = match target {
                Target::Owner => match conns.owner(cmds[i].slot) {
                    Some(a) => (a, false),
                    None => {
                        out.failed.push((i, cmds[i].slot, Failure::definite(ErrorClass::ClusterDown)));
                        continue;
                    }
                },
                Target::Asking(a) => (a, true),
            };
            match groups.iter_mut().find(|g| g.addr == addr && g.asking == asking) {
                Some(g) => g.members.push((i, redirects)),
                None => groups.push(Group { addr, asking, members: vec![(i, redirects)] }),
            }
        }
        let results = send_groups(conns, cmds, &groups).await;
        for (Group { addr, asking, members }, result) in groups.into_iter().zip(results) {
            let replies = match result {
                Ok(replies) => replies,
                Err(failure) => {
                    if matches!(failure.class, ErrorClass::Reset | ErrorClass::Refused | ErrorClass::Timeout)
                    {
                        conns.router().request_refresh();
                    }
                    for (i, _) in members {
                        out.failed.push((i, cmds[i].slot, failure));
                    }
                    continue;
                }
            };
            // With ASKING the pipeline alternates ASKING and the command.
            let replies = if asking { replies.into_iter().skip(1).step_by(2).collect() } else { replies };
            for ((i, redirects), reply) in members.into_iter().zip(replies) {
                let Value::ServerError(e) = &reply else {
                    out.replies[i] = reply;
                    continue;
                };
                let class = server_error(e);
                let slot = cmds[i].slot;
                match (class, redirect_target(e)) {
                    (ErrorClass::Moved, Some((moved_slot, to))) if redirects < MAX_REDIRECTS => {
                        if let Ok(to) = to.parse::<SocketAddr>() {
                            conns.router().moved(moved_slot, to);
                            out.moved += 1;
                            pending.push((i, Target::Owner, redirects + 1));
                            continue;
                        }
                        out.failed.push((i, slot, Failure::definite(class)));
                    }
                    (ErrorClass::Ask, Some((_, to))) if redirects < MAX_REDIRECTS => {
                        if let Ok(to) = to.parse::<SocketAddr>() {
                            out.ask += 1;
                            pending.push((i, Target::Asking(to), redirects + 1));
                            continue;
                        }
                        out.failed.push((i, slot, Failure::definite(class)));
                    }
                    (ErrorClass::NoScript, _) if redirects < MAX_REDIRECTS && script.is_some() => {
                        out.handled.push((slot, ErrorClass::NoScript));
                        let loaded = load_script(conns, addr, script.expect("checked")).await;
                        match loaded {
                            Ok(()) => {
                                let target = if asking { Target::Asking(addr) } else { Target::Owner };
                                pending.push((i, target, redirects + 1));
                            }
                            Err(f) => out.failed.push((i, slot, f)),
                        }
                    }
                    (ErrorClass::ClusterDown | ErrorClass::ReadOnly, _) => {
                        conns.router().request_refresh();
                        out.failed.push((i, slot, Failure::definite(class)));
                    }
                    _ => out.failed.push((i, slot, Failure::definite(class))),
                }
            }
        }
    }
    out
}

/// Send every group, concurrently when there are several, and note broken connections.
async fn send_groups(
    conns: &mut Connections,
    cmds: &[Routed],
    groups: &[Group],
) -> Vec<Result<Vec<Value>, Failure>> {
    // Look the connections up first (that needs the worker's cache), then send at once.
    let mut prepared = Vec::with_capacity(groups.len());
    for g in groups {
        prepared.push(conns.get(g.addr).await);
    }
    let sends = groups.iter().zip(&prepared).map(|(Group { asking, members, .. }, conn)| async move {
        let (_, conn) = conn.as_ref().map_err(|f| *f)?;
        let mut conn = conn.clone();
        let result = if !asking && members.len() == 1 {
            conn.send_packed_command(&cmds[members[0].0].cmd).await.map(|v| vec![v])
        } else {
            let mut pipe = Pipeline::with_capacity(members.len() * if *asking { 2 } else { 1 });
            for &(i, _) in members {
                if *asking {
                    pipe.cmd("ASKING");
                }
                pipe.add_command(cmds[i].cmd.clone());
            }
            conn.send_packed_commands(&pipe, 0, pipe.len()).await
        };
        result.map_err(|e| request_error(&e, true))
    });
    let results = if groups.len() == 1 {
        vec![sends.into_iter().next().expect("one group").await]
    } else {
        futures_util::future::join_all(sends).await
    };
    for ((g, conn), result) in groups.iter().zip(&prepared).zip(&results) {
        if let (Ok((generation, _)), Err(f)) = (conn, result)
            && f.class == ErrorClass::Reset
        {
            conns.broken(g.addr, *generation).await;
        }
    }
    results
}

async fn load_script(
    conns: &mut Connections,
    addr: SocketAddr,
    script: &ScriptSource,
) -> Result<(), Failure> {
    let (_, mut conn) = conns.get(addr).await?;
    let mut cmd = redis::cmd("SCRIPT");
    cmd.arg("LOAD").arg(&script.source);
    match conn.send_packed_command(&cmd).await {
        Ok(Value::ServerError(e)) => Err(Failure::definite(server_error(&e))),
        Ok(_) => Ok(()),
        Err(e) => Err(request_error(&e, true)),
    }
}
