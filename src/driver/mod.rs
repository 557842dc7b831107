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
pub mod readback;
pub mod render;
pub mod resp;
pub mod router;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Notify;

use self::classify::Failure;
use self::exec::{Attempt, Connections, attempt};
use self::keys::KeySpace;
use self::render::{Rendered, Renderer, Scratch};
use self::resp::Reply;
use self::router::Router;
use crate::history::{Aggregator, ErrorEvent, History, OpEvent, Outcome, Recorder, ReportSender};
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
}

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
        Group { recorder: Recorder::new(plan.renderer.len(), plan.interval, tx.clone()), spares: Vec::new() }
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

/// The run's clock: one monotonic zero, with its wall-clock anchor.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    /// Monotonic zero.
    pub start: Instant,
    /// Wall-clock time at zero.
    pub started_at: SystemTime,
}

impl RunClock {
    /// A clock starting now.
    pub fn start() -> RunClock {
        RunClock { start: Instant::now(), started_at: SystemTime::now() }
    }

    /// µs since zero.
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }
}

/// Tells workers to stop early (Ctrl-C, a failed fault injection).
#[derive(Default)]
pub struct Stop {
    flag: AtomicBool,
    notify: Notify,
}

impl Stop {
    /// Ask every worker to stop after its current op.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Whether a stop was asked for.
    pub fn stopped(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
}

/// Live figures for the progress line, refreshed from the aggregator.
pub type Live = Arc<std::sync::Mutex<Aggregator>>;

/// Drive the plan against the cluster behind `router` until its duration passes or `stop`
/// is asked, and return the history. `live` lets a progress printer read intervals as they
/// are merged.
pub async fn drive(
    plan: Arc<DriverPlan>,
    router: Arc<Router>,
    clock: RunClock,
    stop: Arc<Stop>,
    live: Live,
) -> History {
    let tx = {
        let (agg, tx) = Aggregator::new(plan.renderer.len());
        *live.lock().expect("aggregator lock") = agg;
        tx
    };
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
    let mut panicked = 0usize;
    let mut groups = Vec::new();
    for t in tasks {
        // A worker that panicked loses the op it was on, and with a group of its own what it
        // recorded; a shared group keeps what it recorded before.
        match t.await {
            Ok(own) => groups.extend(own),
            Err(_) => panicked += 1,
        }
    }
    for g in shared {
        let g = Arc::try_unwrap(g).ok().expect("every worker is done with its group");
        groups.push(Box::new(g.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner)));
    }
    if panicked > 0 {
        tracing::error!(
            workers = panicked,
            "Driver workers panicked: the ops they had in flight are not recorded."
        );
    }
    let mut ops = Vec::new();
    let mut errors = Vec::new();
    for g in groups {
        let (o, e) = g.recorder.finish();
        ops.extend(o);
        errors.extend(e);
    }
    refresher.abort();
    let elapsed = clock.start.elapsed();
    ops.sort_by_key(|o: &OpEvent| o.start_us);
    errors.sort_by_key(|e: &ErrorEvent| e.at_us);
    let last = (elapsed.as_micros() / plan.interval.as_micros().max(1)) as u32;
    let aggregator = std::mem::replace(&mut *live.lock().expect("aggregator lock"), Aggregator::new(0).0);
    History {
        op_names: plan.renderer.names(),
        interval: plan.interval,
        warmup: plan.warmup,
        started_at: clock.started_at,
        elapsed,
        intervals: aggregator.finish(last),
        ops,
        errors,
        events: Vec::new(),
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
) -> Option<Box<Group>> {
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
                if deadline > Instant::now() {
                    let stopped = stop.notify.notified();
                    tokio::pin!(stopped);
                    stopped.as_mut().enable();
                    if stop.stopped() {
                        break;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline.into()) => {}
                        _ = stopped => break,
                    }
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
        let mut buf = group.with(|g| g.spares.pop()).unwrap_or_default();
        let OpBuffers { scratch, rendered, todo, attempt: a } = &mut buf;
        plan.renderer.render_into(kind, &mut keys, uid, scratch, rendered);
        let start_us = intended.as_micros() as u64;
        todo.clear();
        todo.extend(0..rendered.cmds.len());
        let mut attempts = 0u32;
        let (mut moved, mut ask) = (0u32, 0u32);
        // An attempt that may have applied a command leaves the op unknown whatever later
        // attempts meet: a retry refused with CLUSTERDOWN does not undo a timed-out write.
        let mut maybe_applied = false;
        let (outcome, reply, failed_slot) = loop {
            attempts += 1;
            attempt(&mut conns, &rendered.cmds, todo, plan.renderer.script(kind), false, a).await;
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
                break (Outcome::Ok, reply, None);
            }
            let last = attempts > plan.policy.retries;
            group.with(|g| {
                for &(_, slot, failure) in &a.failed {
                    g.recorder.record_error(ErrorEvent {
                        at_us: now_us,
                        kind,
                        slot,
                        class: failure.class,
                        last,
                    });
                }
            });
            maybe_applied |= a.failed.iter().any(|(_, _, f)| f.maybe_applied);
            if last || stop.stopped() {
                let (outcome, slot) = failed_outcome(maybe_applied, &a.failed);
                break (outcome, None, Some(slot));
            }
            todo.clear();
            todo.extend(a.failed.iter().map(|(i, _, _)| *i));
            tokio::time::sleep(plan.policy.backoff_before(attempts - 1)).await;
        };
        let end_us = clock.now_us();
        let op = OpEvent {
            start_us,
            latency_us: end_us.saturating_sub(start_us),
            kind,
            slot: failed_slot.unwrap_or(a.slowest),
            id: rendered.id,
            uid,
            sent_us,
            queued_us: u32::try_from(queued.as_micros()).unwrap_or(u32::MAX),
            outcome,
            attempts: attempts.min(255) as u8,
            moved: moved.min(255) as u8,
            ask: ask.min(255) as u8,
            reply,
        };
        group.with(|g| {
            g.recorder.record_op(op, end_us, moved, ask);
            g.spares.push(buf);
        });
    }
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
