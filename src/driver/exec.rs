//! Executing one op against the cluster: group its commands by the node that serves their
//! slots, send each group as one pipeline (concurrently when there are several), follow
//! MOVED and ASK, reload scripts on NOSCRIPT, and report per request what failed.
//!
//! The client policy's retries wrap this: each attempt re-sends only the commands that
//! failed, and every attempt's errors are reported.
//!
//! This runs once per op, so the usual case is kept cheap: the grouping buffers and the
//! pipeline live in the worker's [`Connections`] and are reused from op to op, and an op
//! whose commands all go to one node (the usual case: one hash tag) is sent on the cached
//! connection itself, without cloning it.

use std::net::SocketAddr;
use std::ops::Range;
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
    /// [`attempt`]'s buffers, kept between ops (out only while an attempt runs).
    rounds: Option<Rounds>,
}

impl Connections {
    /// A worker's cache over `router`, using connection `lane` of each node.
    pub fn new(router: Arc<Router>, lane: usize) -> Connections {
        let (epoch, table) = router.table();
        Connections { router, epoch, table, lane, conns: Vec::new(), rounds: None }
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

    /// The cached connection to `addr` (opened or fetched from the router if there is none
    /// yet) and its generation, borrowed: sending on it needs no clone.
    async fn get_mut(&mut self, addr: SocketAddr) -> Result<(u64, &mut MultiplexedConnection), Failure> {
        let index = match self.conns.iter().position(|(a, _, _)| *a == addr) {
            Some(index) => index,
            None => {
                let (generation, conn) = self.router.connection(addr, self.lane, None).await?;
                self.conns.push((addr, generation, conn));
                self.conns.len() - 1
            }
        };
        let (_, generation, conn) = &mut self.conns[index];
        Ok((*generation, conn))
    }

    /// Like [`Connections::get_mut`], but a clone: for sends to several nodes at once.
    async fn get(&mut self, addr: SocketAddr) -> Result<(u64, MultiplexedConnection), Failure> {
        self.get_mut(addr).await.map(|(generation, conn)| (generation, conn.clone()))
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

/// Commands bound for one node in one round.
struct Group {
    addr: SocketAddr,
    asking: bool,
    /// Where its `(index, redirects so far)` entries lie in [`Rounds::members`].
    members: Range<usize>,
}

/// What [`attempt`] needs per round, kept in the worker's [`Connections`] so that an op
/// allocates none of it once the buffers have grown.
struct Rounds {
    /// Commands still to send: `(index, target, redirects so far)`.
    pending: Vec<(usize, Target, u32)>,
    /// This round's pending commands with their group: `(group, index, redirects so far)`.
    tagged: Vec<(usize, usize, u32)>,
    /// This round's groups, in order of their first command.
    groups: Vec<Group>,
    /// The groups' members, group after group, each group's in op order.
    members: Vec<(usize, u32)>,
    /// The groups' results, in group order.
    results: Vec<Result<Vec<Value>, Failure>>,
    /// The pipeline a lone group is packed into.
    pipe: Pipeline,
}

impl Default for Rounds {
    fn default() -> Rounds {
        Rounds {
            pending: Vec::new(),
            tagged: Vec::new(),
            groups: Vec::new(),
            members: Vec::new(),
            results: Vec::new(),
            pipe: Pipeline::new(),
        }
    }
}

/// Send `cmds` (only those listed in `todo`) and collect the outcome.
pub async fn attempt(
    conns: &mut Connections,
    cmds: &[Routed],
    todo: &[usize],
    script: Option<&ScriptSource>,
) -> Attempt {
    let mut out = Attempt { replies: vec![Value::Nil; cmds.len()], ..Default::default() };
    // Taken out for the attempt (and put back at the end) so that the rounds can use the
    // buffers and the connections at once.
    let mut r = conns.rounds.take().unwrap_or_default();
    r.pending.clear();
    r.pending.extend(todo.iter().map(|&i| (i, Target::Owner, 0)));
    while !r.pending.is_empty() {
        // Group by destination, keeping each group's commands in op order.
        r.tagged.clear();
        r.groups.clear();
        r.members.clear();
        for (i, target, redirects) in r.pending.drain(..) {
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
            let group = match r.groups.iter().position(|g| g.addr == addr && g.asking == asking) {
                Some(g) => g,
                None => {
                    r.groups.push(Group { addr, asking, members: 0..0 });
                    r.groups.len() - 1
                }
            };
            r.tagged.push((group, i, redirects));
        }
        for (g, group) in r.groups.iter_mut().enumerate() {
            let start = r.members.len();
            r.members.extend(r.tagged.iter().filter(|t| t.0 == g).map(|&(_, i, redirects)| (i, redirects)));
            group.members = start..r.members.len();
        }
        send_groups(conns, cmds, &r.groups, &r.members, &mut r.pipe, &mut r.results).await;
        for (group, result) in r.groups.iter().zip(r.results.drain(..)) {
            let Group { addr, asking, .. } = *group;
            let members = &r.members[group.members.clone()];
            let replies = match result {
                Ok(replies) => replies,
                Err(failure) => {
                    if matches!(failure.class, ErrorClass::Reset | ErrorClass::Refused | ErrorClass::Timeout)
                    {
                        conns.router().request_refresh();
                    }
                    for &(i, _) in members {
                        out.failed.push((i, cmds[i].slot, failure));
                    }
                    continue;
                }
            };
            // With ASKING the pipeline alternates ASKING and the command.
            let replies = if asking { replies.into_iter().skip(1).step_by(2).collect() } else { replies };
            for (&(i, redirects), reply) in members.iter().zip(replies) {
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
                            r.pending.push((i, Target::Owner, redirects + 1));
                            continue;
                        }
                        out.failed.push((i, slot, Failure::definite(class)));
                    }
                    (ErrorClass::Ask, Some((_, to))) if redirects < MAX_REDIRECTS => {
                        if let Ok(to) = to.parse::<SocketAddr>() {
                            out.ask += 1;
                            r.pending.push((i, Target::Asking(to), redirects + 1));
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
                                r.pending.push((i, target, redirects + 1));
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
    conns.rounds = Some(r);
    out
}

/// Send every group, concurrently when there are several, note broken connections, and
/// leave one result per group in `results`.
async fn send_groups(
    conns: &mut Connections,
    cmds: &[Routed],
    groups: &[Group],
    members: &[(usize, u32)],
    pipe: &mut Pipeline,
    results: &mut Vec<Result<Vec<Value>, Failure>>,
) {
    results.clear();
    if let [g] = groups {
        // The usual case, one node: send on the cached connection itself and pack into the
        // reused pipeline.
        let (result, generation) = match conns.get_mut(g.addr).await {
            Ok((generation, conn)) => {
                (send(conn, cmds, g.asking, &members[g.members.clone()], pipe).await, Some(generation))
            }
            Err(f) => (Err(f), None),
        };
        if let (Some(generation), Err(f)) = (generation, &result)
            && f.class == ErrorClass::Reset
        {
            conns.broken(g.addr, generation).await;
        }
        results.push(result);
        return;
    }
    // Look the connections up first (that needs the worker's cache), then send at once.
    let mut prepared = Vec::with_capacity(groups.len());
    for g in groups {
        prepared.push(conns.get(g.addr).await);
    }
    let sends = groups.iter().zip(&prepared).map(|(g, conn)| async move {
        let (_, conn) = conn.as_ref().map_err(|f| *f)?;
        let mut conn = conn.clone();
        send(&mut conn, cmds, g.asking, &members[g.members.clone()], &mut Pipeline::new()).await
    });
    results.extend(futures_util::future::join_all(sends).await);
    for ((g, conn), result) in groups.iter().zip(&prepared).zip(results.iter()) {
        if let (Ok((generation, _)), Err(f)) = (conn, result)
            && f.class == ErrorClass::Reset
        {
            conns.broken(g.addr, *generation).await;
        }
    }
}

/// Send one group's commands on `conn`: a lone command as it is, several (or any with
/// ASKING) as one pipeline, packed into `pipe`.
async fn send(
    conn: &mut MultiplexedConnection,
    cmds: &[Routed],
    asking: bool,
    members: &[(usize, u32)],
    pipe: &mut Pipeline,
) -> Result<Vec<Value>, Failure> {
    let result = if !asking && members.len() == 1 {
        conn.send_packed_command(&cmds[members[0].0].cmd).await.map(|v| vec![v])
    } else {
        pipe.clear();
        for &(i, _) in members {
            if asking {
                pipe.cmd("ASKING");
            }
            // The op keeps its commands for retries, so the pipeline gets copies.
            pipe.add_command(cmds[i].cmd.clone());
        }
        conn.send_packed_commands(pipe, 0, pipe.len()).await
    };
    result.map_err(|e| request_error(&e, true))
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
