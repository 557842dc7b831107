//! Executing one op against the cluster: group its commands by the node that serves their
//! slots, send each group as one pipeline (concurrently when there are several), follow
//! MOVED and ASK, reload scripts on NOSCRIPT, and report per request what failed.
//!
//! The client policy's retries wrap this: each attempt re-sends only the commands that
//! failed, and every attempt's errors are reported.
//!
//! This runs once per op, so the usual case is kept cheap: the grouping buffers and the
//! reply slots live in the op's [`Attempt`] and are reused from op to op, a
//! group's commands are copied as bytes from the rendered op into the connection's write
//! buffer ([`super::conn`]), and every group of a round waits under one deadline.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use super::classify::Failure;
use super::conn::{Conn, Slot};
use super::resp::{ASKING, Reply, write_command};
use super::router::{Router, SlotTable};
use crate::history::ErrorClass;

/// Redirections followed for one command before its MOVED or ASK is surfaced as an error.
const MAX_REDIRECTS: u32 = 5;

/// An op's commands, RESP-encoded one after the other in one buffer, each with its slot.
/// Rendering writes them here once; every send (and every retry) copies the bytes of the
/// commands it sends straight into the connection's write buffer.
#[derive(Debug, Clone, Default)]
pub struct Commands {
    /// The encoded commands, back to back.
    wire: Vec<u8>,
    /// Each command's bytes in `wire`, and its slot.
    cmds: Vec<Routed>,
}

/// Where one command lies in [`Commands`], and the slot of its key.
#[derive(Debug, Clone)]
struct Routed {
    /// Its bytes in the op's buffer.
    bytes: Range<usize>,
    /// The slot its key hashes to.
    slot: u16,
}

impl Commands {
    /// The slot of the first command, if there is one.
    pub fn first_slot(&self) -> Option<u16> {
        self.cmds.first().map(|c| c.slot)
    }

    /// Forget every command, keeping the buffers.
    pub fn clear(&mut self) {
        self.wire.clear();
        self.cmds.clear();
    }

    /// Append a command: `encode` writes it (RESP) into the buffer it is given and returns
    /// its slot.
    pub fn push_with(&mut self, encode: impl FnOnce(&mut Vec<u8>) -> u16) {
        let start = self.wire.len();
        let slot = encode(&mut self.wire);
        self.cmds.push(Routed { bytes: start..self.wire.len(), slot });
    }

    /// Append the command `args` (its name first) for `slot`.
    pub fn push(&mut self, slot: u16, args: &[&[u8]]) {
        self.push_with(|wire| {
            write_command(wire, args);
            slot
        });
    }

    /// Number of commands.
    pub fn len(&self) -> usize {
        self.cmds.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }

    /// Command `i`'s slot.
    pub fn slot(&self, i: usize) -> u16 {
        self.cmds[i].slot
    }

    /// Command `i`'s RESP bytes.
    pub fn bytes(&self, i: usize) -> &[u8] {
        &self.wire[self.cmds[i].bytes.clone()]
    }
}

/// A script an op runs, for reloading it where the node answers NOSCRIPT.
#[derive(Debug, Clone)]
pub struct ScriptSource {
    /// The script's text.
    pub source: String,
}

/// What one attempt at a set of commands came to, with the buffers it used. An op borrows
/// one for its life and [`attempt`] refills it.
#[derive(Default)]
pub struct Attempt {
    /// Commands (indexes into the op's list) that failed, with their failure and slot.
    pub failed: Vec<(usize, u16, Failure)>,
    /// Replies of the commands that succeeded, by index (`Nil` for failed ones).
    pub replies: Vec<Reply>,
    /// MOVED redirections followed.
    pub moved: u32,
    /// ASK redirections followed.
    pub ask: u32,
    /// Errors met and handled on the way (NOSCRIPT before a reload), by slot.
    pub handled: Vec<(u16, ErrorClass)>,
    /// The slot of the request that answered last (or never, within the timeout) in the
    /// last round: the shard whose reply the op waited for. For an op spanning shards it is
    /// the one a slow op is charged to.
    pub slowest: u16,
    /// [`attempt`]'s per-round buffers, kept between ops (out only while an attempt runs).
    rounds: Option<Rounds>,
}

/// One worker's connections, cached so the hot path takes no lock.
pub struct Connections {
    router: Arc<Router>,
    epoch: u64,
    table: Arc<SlotTable>,
    lane: usize,
    conns: Vec<(SocketAddr, u64, Conn)>,
    /// Connections that broke, by node and generation: the next use asks the router for a
    /// fresh one (lazily, so the op that met the break ends when it did).
    broken: Vec<(SocketAddr, u64)>,
}

impl Connections {
    /// A worker's cache over `router`, using connection `lane` of each node.
    pub fn new(router: Arc<Router>, lane: usize) -> Connections {
        let (epoch, table) = router.table();
        Connections { router, epoch, table, lane, conns: Vec::new(), broken: Vec::new() }
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

    /// The index in the cache of the connection to `addr` (opened or fetched from the
    /// router if there is none yet), and its generation.
    async fn index(&mut self, addr: SocketAddr) -> Result<(usize, u64), Failure> {
        match self.conns.iter().position(|(a, _, _)| *a == addr) {
            Some(index) => Ok((index, self.conns[index].1)),
            None => {
                let stale = self.broken.iter().find(|(a, _)| *a == addr).map(|&(_, g)| g);
                let (generation, conn) = self.router.connection(addr, self.lane, stale).await?;
                self.broken.retain(|(a, _)| *a != addr);
                self.conns.push((addr, generation, conn));
                Ok((self.conns.len() - 1, generation))
            }
        }
    }

    /// Forget a connection that broke; the next op that needs the node asks the router for
    /// a fresh one (shared with other workers: the first to ask reconnects).
    fn broken(&mut self, addr: SocketAddr, generation: u64) {
        self.conns.retain(|(a, _, _)| *a != addr);
        self.broken.retain(|(a, _)| *a != addr);
        self.broken.push((addr, generation));
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

/// What [`attempt`] needs per round, kept in the [`Attempt`] so that an op allocates none
/// of it once the buffers have grown.
#[derive(Default)]
struct Rounds {
    /// Commands still to send: `(index, target, redirects so far)`.
    pending: Vec<(usize, Target, u32)>,
    /// This round's pending commands with their group: `(group, index, redirects so far)`.
    tagged: Vec<(usize, usize, u32)>,
    /// This round's groups, in order of their first command.
    groups: Vec<Group>,
    /// The groups' members, group after group, each group's in op order.
    members: Vec<(usize, u32)>,
    /// One per group (the first ones of the list): its send and its outcome.
    sends: Vec<GroupSend>,
}

/// One group's request in a round.
#[derive(Default)]
struct GroupSend {
    /// Where the replies land (the worker's own, reused op after op).
    slot: Arc<Slot>,
    /// The connection's index in the worker's cache and its generation, once it has one.
    conn: Option<(usize, u64)>,
    /// The outcome, once there is one.
    result: Option<Result<(), Failure>>,
    /// The replies, on success.
    replies: Vec<Reply>,
}

/// Send the commands of `cmds` listed in `todo` and collect the outcome into `out`. With
/// `keep`, replies keep their string and array values (the read-back wants them; the
/// driver's ops only look at integers and errors).
pub async fn attempt(
    conns: &mut Connections,
    cmds: &Commands,
    todo: &[usize],
    script: Option<&ScriptSource>,
    keep: bool,
    out: &mut Attempt,
) {
    out.failed.clear();
    out.replies.clear();
    out.replies.resize_with(cmds.len(), || Reply::Nil);
    out.handled.clear();
    (out.moved, out.ask) = (0, 0);
    out.slowest = todo.first().map_or(0, |&i| cmds.slot(i));
    // Taken out for the attempt (and put back at the end) so that the rounds can use the
    // buffers and the connections at once.
    let mut r = out.rounds.take().unwrap_or_default();
    r.pending.clear();
    r.pending.extend(todo.iter().map(|&i| (i, Target::Owner, 0)));
    while !r.pending.is_empty() {
        // Group by destination, keeping each group's commands in op order.
        r.tagged.clear();
        r.groups.clear();
        r.members.clear();
        for (i, target, redirects) in r.pending.drain(..) {
            let (addr, asking) = match target {
                Target::Owner => match conns.owner(cmds.slot(i)) {
                    Some(a) => (a, false),
                    None => {
                        out.failed.push((i, cmds.slot(i), Failure::definite(ErrorClass::ClusterDown)));
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
        if let Some(g) = send_groups(conns, cmds, &r.groups, &r.members, &mut r.sends, keep).await {
            out.slowest = cmds.slot(r.members[r.groups[g].members.start].0);
        }
        for (group, send) in r.groups.iter().zip(r.sends.iter_mut()) {
            let Group { addr, asking, .. } = *group;
            let members = &r.members[group.members.clone()];
            if let Err(failure) = send.result.take().expect("every group has an outcome") {
                if matches!(failure.class, ErrorClass::Reset | ErrorClass::Refused | ErrorClass::Timeout) {
                    conns.router().request_refresh();
                }
                for &(i, _) in members {
                    out.failed.push((i, cmds.slot(i), failure));
                }
                continue;
            }
            // With ASKING the request alternates ASKING and the command: skip ASKING's OK.
            let step = if asking { 2 } else { 1 };
            for (k, &(i, redirects)) in members.iter().enumerate() {
                let reply = std::mem::replace(&mut send.replies[k * step + step - 1], Reply::Nil);
                let Reply::Error(e) = reply else {
                    out.replies[i] = reply;
                    continue;
                };
                let class = e.class;
                let slot = cmds.slot(i);
                match (class, e.redirect_target()) {
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
    out.rounds = Some(r);
}

/// Send every group at once, wait for all of them under one deadline (the client policy's
/// request timeout, from when the last was sent: the groups run concurrently, so this is
/// the per-request timeout each of them had), note broken connections, and leave each
/// group's outcome in `sends`. Returns the group that answered last (one that timed out, if
/// any did), unless none was sent.
async fn send_groups(
    conns: &mut Connections,
    cmds: &Commands,
    groups: &[Group],
    members: &[(usize, u32)],
    sends: &mut Vec<GroupSend>,
    keep: bool,
) -> Option<usize> {
    if sends.len() < groups.len() {
        sends.resize_with(groups.len(), GroupSend::default);
    }
    let sends = &mut sends[..groups.len()];
    // Connections first (that may connect, and needs the worker's cache), then the sends.
    for (group, send) in groups.iter().zip(sends.iter_mut()) {
        send.result = None;
        send.conn = None;
        match conns.index(group.addr).await {
            Ok(conn) => send.conn = Some(conn),
            Err(f) => send.result = Some(Err(f)),
        }
    }
    for (group, send) in groups.iter().zip(sends.iter_mut()) {
        let Some((index, _)) = send.conn else { continue };
        let members = &members[group.members.clone()];
        let replies = members.len() * if group.asking { 2 } else { 1 };
        let submitted = conns.conns[index].2.submit(&send.slot, replies, keep, |wire| {
            for &(i, _) in members {
                if group.asking {
                    wire.extend_from_slice(ASKING);
                }
                wire.extend_from_slice(cmds.bytes(i));
            }
        });
        if let Err(f) = submitted {
            send.result = Some(Err(f));
        }
    }
    let deadline = Instant::now() + conns.router.request_timeout();
    let mut last = None;
    let all_answered = poll_fn(|cx| {
        let mut waiting = false;
        for (g, send) in sends.iter_mut().enumerate().filter(|(_, s)| s.result.is_none()) {
            match send.slot.poll_take(cx, &mut send.replies) {
                Poll::Ready(result) => {
                    send.result = Some(result);
                    last = Some(g);
                }
                Poll::Pending => waiting = true,
            }
        }
        if waiting { Poll::Pending } else { Poll::Ready(()) }
    });
    if tokio::time::timeout_at(deadline.into(), all_answered).await.is_err() {
        // No reply in time: the requests may still be applied. Their slots are reused by
        // the next send, which makes any late reply miss.
        for (g, send) in sends.iter_mut().enumerate().filter(|(_, s)| s.result.is_none()) {
            send.result = Some(Err(Failure { class: ErrorClass::Timeout, maybe_applied: true }));
            last = Some(g);
        }
    }
    for (group, send) in groups.iter().zip(sends.iter()) {
        if let (Some((_, generation)), Some(Err(f))) = (send.conn, &send.result)
            && f.class == ErrorClass::Reset
        {
            conns.broken(group.addr, generation);
        }
    }
    last
}

/// `SCRIPT LOAD` the script on `addr`, under the request timeout.
async fn load_script(
    conns: &mut Connections,
    addr: SocketAddr,
    script: &ScriptSource,
) -> Result<(), Failure> {
    let (index, _) = conns.index(addr).await?;
    // Rare (once per node and script, or after a failover): a slot of its own.
    let slot = Arc::new(Slot::default());
    conns.conns[index].2.submit(&slot, 1, false, |wire| {
        write_command(wire, &[b"SCRIPT", b"LOAD", script.source.as_bytes()]);
    })?;
    let mut replies = Vec::new();
    let answered =
        tokio::time::timeout(conns.router.request_timeout(), poll_fn(|cx| slot.poll_take(cx, &mut replies)))
            .await;
    match answered {
        Err(_) => Err(Failure { class: ErrorClass::Timeout, maybe_applied: true }),
        Ok(Err(f)) => Err(f),
        Ok(Ok(())) => match replies.first() {
            Some(Reply::Error(e)) => Err(Failure::definite(e.class)),
            _ => Ok(()),
        },
    }
}
