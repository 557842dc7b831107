//! The load generator: one worker loop, parameterised by pacing (open loop at a target rate,
//! or closed loop) and stopped by the clock or a signal. Each worker picks ops by weight,
//! renders them, sends them through slotstorm's own routing ([`exec`]) under the workload's
//! client policy, and records each outcome into its group's [`Recorder`].
//!
//! In open loop the workers share one schedule: a worker with nothing in flight claims the
//! next op and sends it when it is due, so a stalled shard never holds back the sends of
//! another; the number of workers is the limit on ops in flight ([`InFlight`]). Latency is
//! measured from the op's *intended* start: in open loop its time in the schedule, so an op
//! that waited for a free worker carries that wait (coordinated omission corrected, as wrk2
//! does), and records how long it waited and how late it was sent; in closed loop it is
//! when the op was sent.
//!
//! This module drives load; it never injects faults and never decides pass or fail.

pub mod classify;
pub mod conn;
pub mod exec;
pub mod keys;
pub mod library;
pub mod readback;
pub mod render;
pub mod resp;
pub mod router;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use self::classify::Failure;
use self::exec::{Attempt, Connections, attempt};
use self::keys::KeySpace;
use self::render::{Rendered, Renderer, Scratch};
use self::resp::Reply;
use self::router::Router;
pub use crate::clock::{RunClock, Stop};
use crate::history::store::journal::Sink;
use crate::history::{
    Aggregator, ErrorClass, ErrorEvent, Event, EventKind, History, OpEvent, OpKind, Outcome, Recorder,
    ReportSender,
};
pub use crate::spec::{ClientPolicy, InFlight, LimitSource, Pacing};

/// Everything the driver needs, resolved.
pub struct DriverPlan {
    /// Pacing.
    pub pacing: Pacing,
    /// Ops in flight at most, and who set that limit: closed loop's workers, open loop's
    /// application pool or slotstorm's own limit.
    pub in_flight: InFlight,
    /// Connections per node, shared by the workers.
    pub connections: usize,
    /// How long to drive, warm-up included.
    pub duration: Duration,
    /// Warm-up at the start, left out of whole-run figures.
    pub warmup: Duration,
    /// Histogram interval.
    pub interval: Duration,
    /// Seed for key and op choice.
    pub seed: u64,
    /// Client policy.
    pub policy: ClientPolicy,
    /// The keyspace.
    pub keys: KeySpace,
    /// The ops, in workload order, with their names.
    pub renderer: Renderer,
    /// What is kept of each op, and the shards ops are counted on.
    pub recording: Arc<crate::history::Recording>,
}

/// Test hook: when set, the next op to be sent is sent once and then its worker panics, so a
/// test can check that a driver panic is counted and ends the run. Never set outside tests.
#[doc(hidden)]
pub static PANIC_IN_OP: AtomicBool = AtomicBool::new(false);

/// Workers share groups beyond this many: each group's recorder holds a histogram per op kind
/// and interval (about 190 KiB each), and an open loop may have thousands of workers.
const MAX_GROUPS: usize = 64;

/// What a group of workers shares: a recorder, and the buffers of ops not in flight. An op
/// borrows its buffers from the pool while it runs, so memory follows the ops in flight, not
/// the workers (an open loop sized for a stall keeps thousands of workers waiting for their
/// next op).
struct Group {
    recorder: Recorder,
    spares: Vec<OpBuffers>,
}

impl Group {
    fn new(plan: &DriverPlan, tx: &ReportSender) -> Group {
        Group {
            recorder: Recorder::new(plan.renderer.len(), plan.interval, tx.clone(), plan.recording.clone()),
            spares: Vec::new(),
        }
    }
}

/// A worker's group: its own when there are no more workers than groups (so the op path
/// takes no lock, as in any closed loop of up to 64 workers), else shared with a few others.
enum GroupRef {
    /// This worker's alone; handed back when the worker ends.
    Own(Box<Group>),
    /// Shared by the workers `w` with the same `w % MAX_GROUPS`.
    Shared(Arc<Mutex<Group>>),
}

impl GroupRef {
    /// Run `f` on the group, under its lock if it is shared.
    fn with<R>(&mut self, f: impl FnOnce(&mut Group) -> R) -> R {
        match self {
            GroupRef::Own(g) => f(g),
            // A panic under the lock leaves counters and buffers that are still usable.
            GroupRef::Shared(g) => f(&mut g.lock().unwrap_or_else(|e| e.into_inner())),
        }
    }
}

/// One op's working buffers, reused op after op.
#[derive(Default)]
struct OpBuffers {
    scratch: Scratch,
    /// Its commands.
    rendered: Rendered,
    /// The indexes of the commands still to send.
    todo: Vec<usize>,
    attempt: Attempt,
}

/// The open loop's one schedule: op `i` is due `i / rate` seconds after the run began. A
/// worker with nothing in flight claims the next op, whoever sent the one before, so no
/// worker owns future ops and a stall of one shard never holds back another's sends.
struct Schedule {
    /// The next op to claim.
    next: AtomicU64,
    /// Ops per second.
    rate: f64,
    /// Workers that have claimed their first op.
    started: AtomicUsize,
}

impl Schedule {
    /// Claim the next op: when it is due, from the run's start (`Duration::MAX` for a time
    /// past what a `Duration` holds, which is past any run's end).
    fn claim(&self) -> Duration {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        Duration::try_from_secs_f64(i as f64 / self.rate).unwrap_or(Duration::MAX)
    }
}

/// Live figures for the progress line, refreshed from the aggregator.
pub type Live = Arc<std::sync::Mutex<Aggregator>>;

/// Drive the plan against the cluster behind `router` until its duration passes or `stop`
/// is asked, and return the history. `live` lets a progress printer read intervals as they
/// are merged; what is merged is written to `journal` as it comes, when given.
pub async fn drive(
    plan: Arc<DriverPlan>,
    router: Arc<Router>,
    clock: RunClock,
    stop: Arc<Stop>,
    live: Live,
    journal: Option<Sink>,
) -> History {
    let tx = aggregate(&plan, &live, journal);
    let refresher = tokio::spawn(router.clone().refresher(Duration::from_millis(100)));
    let workers = plan.in_flight.limit.max(1);
    let shared: Vec<Arc<Mutex<Group>>> = if workers > MAX_GROUPS {
        (0..MAX_GROUPS).map(|_| Arc::new(Mutex::new(Group::new(&plan, &tx)))).collect()
    } else {
        Vec::new()
    };
    let schedule = match plan.pacing {
        Pacing::Open { rate } => {
            Some(Arc::new(Schedule { next: AtomicU64::new(0), rate, started: AtomicUsize::new(0) }))
        }
        Pacing::Closed => None,
    };
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let conns = Connections::new(router.clone(), w % plan.connections.max(1));
            let group = match shared.get(w % MAX_GROUPS) {
                Some(g) => GroupRef::Shared(g.clone()),
                None => GroupRef::Own(Box::new(Group::new(&plan, &tx))),
            };
            tokio::spawn(worker(w, plan.clone(), conns, group, schedule.clone(), clock, stop.clone()))
        })
        .collect();
    drop(tx);
    let mut groups = Vec::new();
    let mut events = Vec::new();
    for (w, t) in tasks.into_iter().enumerate() {
        match t.await {
            Ok(end) => {
                groups.extend(end.group);
                if let Some((at_us, error)) = end.error {
                    events.push(Event { at_us, kind: EventKind::DriverError { worker: w, error } });
                }
            }
            // A panic outside an op (there is no code there that should): what a group of
            // its own recorded is lost with it; a shared group keeps what it recorded.
            Err(e) => {
                let message = e
                    .try_into_panic()
                    .map_or_else(|_| "cancelled".into(), |p| crate::history::panic_message(p.as_ref()));
                let error = format!("panicked between ops ({message}); what it recorded alone is lost");
                events
                    .push(Event { at_us: clock.now_us(), kind: EventKind::DriverError { worker: w, error } });
            }
        }
    }
    for g in shared {
        let g = Arc::try_unwrap(g).ok().expect("every worker is done with its group");
        groups.push(Box::new(g.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner)));
    }
    for g in groups {
        g.recorder.finish();
    }
    refresher.abort();
    history_of(&plan, clock, &live, events)
}

/// A fresh aggregator in `live` for the plan's op kinds, writing what it merges to
/// `journal` when given; the sender its recorders report to.
fn aggregate(plan: &DriverPlan, live: &Live, journal: Option<Sink>) -> ReportSender {
    let (agg, tx) = Aggregator::new(plan.renderer.len());
    *live.lock().expect("aggregator lock") = match journal {
        Some(sink) => agg.writing_to(sink),
        None => agg,
    };
    tx
}

/// The history of a drive whose recorders have all finished: the aggregator's intervals and
/// kept ops, with the driver's own `events`.
fn history_of(plan: &DriverPlan, clock: RunClock, live: &Live, events: Vec<Event>) -> History {
    let elapsed = clock.start.elapsed();
    let last = (elapsed.as_micros() / plan.interval.as_micros().max(1)) as u32;
    let aggregator = std::mem::replace(&mut *live.lock().expect("aggregator lock"), Aggregator::new(0).0);
    let gathered = aggregator.finish(last);
    History {
        op_names: plan.renderer.names(),
        interval: plan.interval,
        warmup: plan.warmup,
        started_at: clock.started_at,
        elapsed,
        intervals: gathered.intervals,
        ops: gathered.ops,
        errors: gathered.errors,
        events,
    }
}

/// The one driver loop: take the next op (the schedule's next one in open loop, whenever
/// the last one ended in closed loop), send it under the client policy, record it.
async fn worker(
    index: usize,
    plan: Arc<DriverPlan>,
    mut conns: Connections,
    mut group: GroupRef,
    schedule: Option<Arc<Schedule>>,
    clock: RunClock,
    stop: Arc<Stop>,
) -> WorkerEnd {
    let workers = plan.in_flight.limit.max(1);
    let mut rng =
        SmallRng::seed_from_u64(plan.seed.wrapping_add(index as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut keys = plan.keys.chooser(plan.seed, index, workers);
    let uid_base = (index as u64) << 40;
    let mut seq = 0u64;
    loop {
        if stop.stopped() {
            break;
        }
        let (intended, queued) = match &schedule {
            Some(schedule) => {
                // Claimed the moment this worker is free, and free workers hold the next
                // claims: an op claimed after it was due waited for a free worker (every
                // one had an op in flight), except at the start, when ops due before the
                // last worker first ran are late, not queued.
                let first = seq == 0;
                if first {
                    schedule.started.fetch_add(1, Ordering::Relaxed);
                }
                if clock.start.elapsed() >= plan.duration {
                    // Ops still waiting for a worker when the run ends are not sent.
                    break;
                }
                let at = schedule.claim();
                if at >= plan.duration {
                    break;
                }
                let claimed = clock.start.elapsed();
                let deadline = clock.start + at;
                if deadline > Instant::now() && !stop.sleep_until(deadline).await {
                    break;
                }
                let queued = if !first && schedule.started.load(Ordering::Relaxed) >= workers {
                    claimed.saturating_sub(at)
                } else {
                    Duration::ZERO
                };
                (at, queued)
            }
            None => {
                let now = clock.start.elapsed();
                if now >= plan.duration {
                    break;
                }
                (now, Duration::ZERO)
            }
        };
        let kind = plan.renderer.pick(rng.random_range(0..plan.renderer.total_weight()));
        seq += 1;
        let uid = uid_base | seq;
        // The render reads the wall clock for `$now`; this is the same moment on the run clock.
        let sent_us = clock.now_us();
        let start_us = intended.as_micros() as u64;
        let mut buf = group.with(|g| g.spares.pop()).unwrap_or_default();
        let sent = std::panic::AssertUnwindSafe(send(
            &plan, &mut conns, &mut group, &mut keys, &mut buf, kind, uid, clock, &stop,
        ))
        .catch_unwind()
        .await;
        let end_us = clock.now_us();
        // The id is read before a panic's buffers are replaced: the unknown op keeps its key.
        let id = buf.rendered.id;
        let (sent, panic) = match sent {
            Ok(sent) => (sent, None),
            // A defect of slotstorm, not of the cluster: the op may have been sent, so it is
            // unknown (what lost-writes counts as maybe applied), and the run stops here.
            Err(panic) => {
                let slot = buf.rendered.cmds.first_slot().unwrap_or(0);
                let sent = Sent {
                    outcome: Outcome::Unknown(ErrorClass::Other),
                    reply: None,
                    slot,
                    attempts: 1,
                    moved: 0,
                    ask: 0,
                };
                buf = OpBuffers::default();
                (sent, Some(crate::history::panic_message(panic.as_ref())))
            }
        };
        let op = OpEvent {
            start_us,
            latency_us: end_us.saturating_sub(start_us),
            kind,
            slot: sent.slot,
            id,
            uid,
            sent_us,
            queued_us: u32::try_from(queued.as_micros()).unwrap_or(u32::MAX),
            outcome: sent.outcome,
            attempts: sent.attempts.min(255) as u8,
            moved: sent.moved.min(255) as u8,
            ask: sent.ask.min(255) as u8,
            reply: sent.reply,
        };
        group.with(|g| {
            g.recorder.record_op(op, end_us, sent.moved, sent.ask);
            g.spares.push(buf);
        });
        if let Some(message) = panic {
            stop.stop();
            let error = format!(
                "panicked ({message}); the op it was on is counted unknown and the run stopped there (a defect of slotstorm: please report it)"
            );
            return WorkerEnd { group: own(group), error: Some((end_us, error)) };
        }
    }
    WorkerEnd { group: own(group), error: None }
}

/// How one op ended.
struct Sent {
    outcome: Outcome,
    /// Its first reply, when that is an integer.
    reply: Option<i64>,
    /// The slot its outcome came from (the slowest request's when it succeeded).
    slot: u16,
    attempts: u32,
    moved: u32,
    ask: u32,
}

/// Render op `kind` into `buf` and send it under the client policy, recording each error
/// into the group as it is seen.
#[allow(clippy::too_many_arguments)]
async fn send(
    plan: &DriverPlan,
    conns: &mut Connections,
    group: &mut GroupRef,
    keys: &mut self::keys::KeyChooser,
    buf: &mut OpBuffers,
    kind: OpKind,
    uid: u64,
    clock: RunClock,
    stop: &Stop,
) -> Sent {
    let OpBuffers { scratch, rendered, todo, attempt: a } = buf;
    plan.renderer.render_into(kind, keys, uid, scratch, rendered);
    if PANIC_IN_OP.load(Ordering::Relaxed) && PANIC_IN_OP.swap(false, Ordering::Relaxed) {
        attempt(conns, &rendered.cmds, todo, plan.renderer.script(kind), false, a).await;
        panic!("test hook: the driver panics mid-op");
    }
    todo.clear();
    todo.extend(0..rendered.cmds.len());
    let mut attempts = 0u32;
    let (mut moved, mut ask) = (0u32, 0u32);
    // An attempt that may have applied a command leaves the op unknown whatever later
    // attempts meet: a retry refused with CLUSTERDOWN does not undo a timed-out write.
    let mut maybe_applied = false;
    loop {
        attempts += 1;
        attempt(conns, &rendered.cmds, todo, plan.renderer.script(kind), false, a).await;
        moved += a.moved;
        ask += a.ask;
        let now_us = clock.now_us();
        if !a.handled.is_empty() {
            group.with(|g| {
                for &(slot, class) in &a.handled {
                    g.recorder.record_error(ErrorEvent { at_us: now_us, kind, slot, class, last: false });
                }
            });
        }
        if a.failed.is_empty() {
            let reply = match a.replies.first() {
                Some(Reply::Int(n)) => Some(*n),
                _ => None,
            };
            return Sent { outcome: Outcome::Ok, reply, slot: a.slowest, attempts, moved, ask };
        }
        let last = attempts > plan.policy.retries;
        group.with(|g| {
            for &(_, slot, failure) in &a.failed {
                g.recorder.record_error(ErrorEvent { at_us: now_us, kind, slot, class: failure.class, last });
            }
        });
        maybe_applied |= a.failed.iter().any(|(_, _, f)| f.maybe_applied);
        if last || stop.stopped() {
            let (outcome, slot) = failed_outcome(maybe_applied, &a.failed);
            return Sent { outcome, reply: None, slot, attempts, moved, ask };
        }
        // A stop cuts the backoff short (it may be minutes): the op ends as it stands.
        if !stop.sleep(plan.policy.backoff_before(attempts - 1)).await {
            let (outcome, slot) = failed_outcome(maybe_applied, &a.failed);
            return Sent { outcome, reply: None, slot, attempts, moved, ask };
        }
        todo.clear();
        todo.extend(a.failed.iter().map(|(i, _, _)| *i));
    }
}

/// What a worker leaves: its group when it had one of its own, and the panic that ended it.
struct WorkerEnd {
    group: Option<Box<Group>>,
    /// When (µs on the run clock) and what.
    error: Option<(u64, String)>,
}

/// A worker's group when it is its own, to be merged at the end.
fn own(group: GroupRef) -> Option<Box<Group>> {
    match group {
        GroupRef::Own(g) => Some(g),
        GroupRef::Shared(_) => None,
    }
}

/// How an op whose last attempt ended with `failed` (not empty) ended, and the slot that
/// outcome came from: unknown when any attempt may have applied a command
/// (`maybe_applied`), else failed; the class and slot are what the application saw, the last
/// attempt's first ambiguous error or else its first error.
fn failed_outcome(maybe_applied: bool, failed: &[(usize, u16, Failure)]) -> (Outcome, u16) {
    let &(_, slot, seen) = failed.iter().find(|(_, _, f)| f.maybe_applied).unwrap_or(&failed[0]);
    let outcome = if maybe_applied { Outcome::Unknown(seen.class) } else { Outcome::Fail(seen.class) };
    (outcome, slot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::ErrorClass;

    #[test]
    fn a_write_that_may_have_landed_stays_unknown_whatever_its_retries_meet() {
        let refused = [(0, 7, Failure::definite(ErrorClass::ClusterDown))];
        let timed_out = [(0, 7, Failure { class: ErrorClass::Timeout, maybe_applied: true })];
        // Timeout, then CLUSTERDOWN on the retry: the first attempt may have applied it.
        assert_eq!(failed_outcome(true, &refused), (Outcome::Unknown(ErrorClass::ClusterDown), 7));
        // Refused every time: surely not applied.
        assert_eq!(failed_outcome(false, &refused), (Outcome::Fail(ErrorClass::ClusterDown), 7));
        assert_eq!(failed_outcome(true, &timed_out), (Outcome::Unknown(ErrorClass::Timeout), 7));
        // The ambiguous error is what a pipeline's outcome names, and its slot is the op's:
        // the shard that timed out, not the one that answered CLUSTERDOWN first.
        let both = [refused[0], (1, 9, timed_out[0].2)];
        assert_eq!(failed_outcome(true, &both), (Outcome::Unknown(ErrorClass::Timeout), 9));
    }
}
