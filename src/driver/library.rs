//! Real client libraries as drivers: the workload's ops sent by a library an application
//! uses (redis-py's `RedisCluster` for now), in a process of its own, so a run measures what
//! that application sees — its retries, slot-map refreshes and timeouts inside each op —
//! rather than what slotstorm's own client does.
//!
//! slotstorm keeps everything but the sending: the schedule (open loop: op `n` is due
//! `n / rate` after the start; closed loop: a new op whenever one ends), the choice and
//! rendering of each op (keys, ids, values, so the lost-writes and limiter checks know what
//! was sent), and the recording. The library process gets each op when it is due and runs
//! it on a pool of threads, as an application's thread pool would; an op that waits for a
//! free thread carries that wait.
//!
//! # Protocol (version 1): JSON lines over the process's stdin and stdout
//!
//! - slotstorm → library: `{"hello": {"protocol": 1, "seeds": ["ip:port", …], "timeout_s": f,
//!   "retries": n, "threads": n, "instances": "shared" | "per-thread", "password": s | null,
//!   "scripts": ["lua", …]}}`; then
//!   `{"ping": t}` a few times (clock sync); then one `{"op": n, "cmds": [["SET", "k", "v"],
//!   …], "script": i | null}` per op (a script op's one command is `EVALSHA sha numkeys keys…
//!   args…`, `script` naming its source in `scripts`); end of input when no more ops come.
//! - library → slotstorm: `{"ready": {"library": "redis-py 5.2.1"}}` or `{"fatal": "…"}`;
//!   `{"pong": t, "mono_ns": m}` per ping; one line per op, in any order:
//!   `{"op": n, "recv": ns, "sent": ns, "end": ns, "ok": true, "reply": int | null}` or with
//!   `"ok": false, "class": "timeout" | "refused" | "reset" | "clusterdown" | … , "maybe_applied":
//!   bool, "error": "…"`. Times are the library's monotonic clock in ns: when it read the op,
//!   when a thread began the call, when the call returned. It exits once every op it read
//!   has been answered after its input ends.
//!
//! The library's clock is mapped onto the run's by the ping exchange (the sample with the
//! shortest round trip; on one machine both read `CLOCK_MONOTONIC` and the error is a few
//! µs), so a library on another machine would fit the same way.
//!
//! What a library hides is not invented: its attempts, redirects and retries happen inside
//! one op (recorded as one attempt, no redirects), and a failed op is charged to the slot of
//! its first key.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::render::{Rendered, Scratch};
use super::resp::{self, Reply};
use super::{DriverPlan, Live, aggregate, history_of};
use crate::clock::{RunClock, Stop};
use crate::history::store::journal::Sink;
use crate::history::{ErrorClass, ErrorEvent, Event, EventKind, History, OpEvent, OpKind, Outcome, Recorder};
use crate::spec::{ClientLibrary, ClientPolicy, Pacing};

/// The protocol version this side speaks.
const PROTOCOL: u32 = 1;

/// The redis-py driver, run with `python3 -c`.
const REDIS_PY: &str = include_str!("../../drivers/redis_py.py");

/// How long a library may take to find the cluster and say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(40);

/// Ping round trips for the clock sync; the shortest one's sample is kept.
const SYNC_ROUNDS: usize = 9;

/// Lines of the library's stderr kept for a message when it fails.
const STDERR_TAIL: usize = 20;

/// A library that could not be started or broke the protocol.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    /// No Python that has the library.
    #[error(
        "client.library = \"{library}\" needs Python with {library} installed; tried {tried}: {detail} (scripts/setup installs it into .venv; SLOTSTORM_PYTHON names another interpreter)"
    )]
    Missing {
        /// The library.
        library: &'static str,
        /// The interpreters tried.
        tried: String,
        /// What the last one said.
        detail: String,
    },
    /// The process could not be started, or its pipes broke.
    #[error("{library}: {message}")]
    Process {
        /// The library.
        library: &'static str,
        /// What happened, with the end of its stderr.
        message: String,
    },
}

/// The Python interpreters tried, in order: `SLOTSTORM_PYTHON` alone when it is set, else
/// the project's `.venv`, then `python3` on the `PATH`.
fn pythons() -> Vec<PathBuf> {
    if let Some(python) = std::env::var_os("SLOTSTORM_PYTHON") {
        return vec![PathBuf::from(python)];
    }
    let mut out = Vec::new();
    out.extend(
        crate::backend::engine::venv_candidates()
            .into_iter()
            .map(|v| v.join("bin/python3"))
            .filter(|p| p.is_file()),
    );
    out.push(PathBuf::from("python3"));
    out
}

/// The interpreter that has `library`: checked before anything is started, so a missing
/// library is a setup mistake (exit 2), not a broken run. (Its version is what the library
/// says when it is ready.)
///
/// # Errors
/// [`LibraryError::Missing`] when no interpreter imports it.
pub async fn find(library: ClientLibrary) -> Result<PathBuf, LibraryError> {
    let (module, name) = match library {
        ClientLibrary::RedisPy => ("redis", "redis-py"),
        ClientLibrary::Slotstorm => unreachable!("slotstorm's own client runs in this process"),
    };
    let probe = format!("import {module}");
    let tried = pythons();
    let mut detail = String::new();
    for python in &tried {
        match Command::new(python).arg("-c").arg(&probe).output().await {
            Ok(out) if out.status.success() => return Ok(python.clone()),
            Ok(out) => detail = String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("").to_string(),
            Err(e) => detail = e.to_string(),
        }
    }
    let tried = tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    Err(LibraryError::Missing { library: name, tried, detail })
}

/// A library's process, started and connected to the cluster.
pub struct Process {
    library: &'static str,
    /// What it said it is (`redis-py 5.2.1`).
    pub version: String,
    child: Child,
    stdin: Option<BufWriter<ChildStdin>>,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// The library's clock (ns) at the run clock's zero.
    zero_ns: i128,
}

/// The first line a library sends.
#[derive(Deserialize)]
struct Greeting {
    ready: Option<Ready>,
    fatal: Option<String>,
}

#[derive(Deserialize)]
struct Ready {
    library: String,
}

#[derive(Serialize)]
struct Hello<'a> {
    hello: HelloBody<'a>,
}

#[derive(Serialize)]
struct HelloBody<'a> {
    protocol: u32,
    seeds: Vec<String>,
    timeout_s: f64,
    retries: u32,
    threads: usize,
    instances: &'static str,
    password: Option<&'a str>,
    scripts: &'a [String],
}

/// One answer line: a pong or an op's outcome.
#[derive(Deserialize)]
struct Answer {
    op: Option<u64>,
    pong: Option<u64>,
    mono_ns: Option<u64>,
    #[serde(default)]
    recv: u64,
    #[serde(default)]
    sent: u64,
    #[serde(default)]
    end: u64,
    #[serde(default)]
    ok: bool,
    reply: Option<i64>,
    class: Option<String>,
    #[serde(default)]
    maybe_applied: bool,
    error: Option<String>,
}

/// One op on the wire.
#[derive(Serialize)]
struct OpLine<'a> {
    op: u64,
    cmds: Vec<Vec<std::borrow::Cow<'a, str>>>,
    script: Option<usize>,
}

impl Process {
    /// Start `library` with `python`, hand it the cluster's `seeds` and the client policy,
    /// and wait until it has found the cluster.
    ///
    /// # Errors
    /// [`LibraryError::Process`] when it cannot be started, says it cannot go on, or is not
    /// ready within 40 s.
    pub async fn start(
        library: ClientLibrary,
        python: &PathBuf,
        seeds: &[SocketAddr],
        policy: &ClientPolicy,
        threads: usize,
        scripts: &[String],
        password: Option<&str>,
    ) -> Result<Process, LibraryError> {
        let name = library.name();
        let source = match library {
            ClientLibrary::RedisPy => REDIS_PY,
            ClientLibrary::Slotstorm => unreachable!("slotstorm's own client runs in this process"),
        };
        let fail = |message: String| LibraryError::Process { library: name, message };
        let mut child = Command::new(python)
            .arg("-c")
            .arg(source)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("could not start {}: {e}", python.display())))?;
        let stdin = BufWriter::new(child.stdin.take().expect("piped"));
        let stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
        let tail = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut tail = tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if tail.len() == STDERR_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        let mut p = Process {
            library: name,
            version: String::new(),
            child,
            stdin: Some(stdin),
            stdout,
            stderr,
            zero_ns: 0,
        };
        let hello = Hello {
            hello: HelloBody {
                protocol: PROTOCOL,
                seeds: seeds.iter().map(ToString::to_string).collect(),
                timeout_s: policy.timeout.as_secs_f64(),
                retries: policy.retries,
                threads,
                instances: policy.instances.name(),
                password,
                scripts,
            },
        };
        p.send(&serde_json::to_vec(&hello).expect("serialisable")).await?;
        let first = tokio::time::timeout(READY_TIMEOUT, p.stdout.next_line()).await;
        let line = match first {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => return Err(p.failed("exited before it was ready")),
            Ok(Err(e)) => return Err(p.failed(&format!("reading its output: {e}"))),
            Err(_) => return Err(p.failed("not ready after 40 s")),
        };
        match serde_json::from_str::<Greeting>(&line) {
            Ok(Greeting { ready: Some(r), .. }) => p.version = r.library,
            Ok(Greeting { fatal: Some(f), .. }) => return Err(p.failed(&f)),
            _ => return Err(p.failed(&format!("said {line:?} instead of ready"))),
        }
        Ok(p)
    }

    /// An error naming what happened and the end of the library's stderr.
    fn failed(&self, what: &str) -> LibraryError {
        let tail = self.stderr.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut message = what.to_string();
        if !tail.is_empty() {
            message.push_str("; its stderr ended: ");
            message.push_str(&tail.iter().cloned().collect::<Vec<_>>().join(" | "));
        }
        LibraryError::Process { library: self.library, message }
    }

    /// Write one line.
    async fn send(&mut self, line: &[u8]) -> Result<(), LibraryError> {
        let Some(stdin) = self.stdin.as_mut() else { return Err(self.failed("its input is closed")) };
        let sent = async {
            stdin.write_all(line).await?;
            stdin.write_all(b"\n").await?;
            stdin.flush().await
        }
        .await;
        sent.map_err(|e| self.failed(&format!("writing to it: {e}")))
    }

    /// Map the library's clock onto `clock` by ping round trips, keeping the shortest.
    ///
    /// # Errors
    /// [`LibraryError::Process`] when it does not answer.
    pub async fn sync(&mut self, clock: RunClock) -> Result<(), LibraryError> {
        let mut best: Option<(u64, i128)> = None;
        for round in 0..SYNC_ROUNDS as u64 {
            let before = clock.now_us();
            self.send(format!("{{\"ping\":{round}}}").as_bytes()).await?;
            let line = match tokio::time::timeout(Duration::from_secs(5), self.stdout.next_line()).await {
                Ok(Ok(Some(line))) => line,
                _ => return Err(self.failed("did not answer a ping")),
            };
            let after = clock.now_us();
            let answer: Answer =
                serde_json::from_str(&line).map_err(|e| self.failed(&format!("bad pong {line:?}: {e}")))?;
            let (Some(pong), Some(mono)) = (answer.pong, answer.mono_ns) else {
                return Err(self.failed(&format!("said {line:?} instead of a pong")));
            };
            if pong != round {
                return Err(self.failed(&format!("answered ping {round} with {pong}")));
            }
            let rtt = after - before;
            // Its clock read `mono` halfway through the round trip, at best.
            let zero = i128::from(mono) - i128::from(before + rtt / 2) * 1000;
            if best.is_none_or(|(r, _)| rtt < r) {
                best = Some((rtt, zero));
            }
        }
        self.zero_ns = best.map_or(0, |(_, z)| z);
        Ok(())
    }

    /// A time of the library's clock on the run clock, µs.
    fn run_us(&self, ns: u64) -> u64 {
        u64::try_from((i128::from(ns) - self.zero_ns).max(0) / 1000).unwrap_or(u64::MAX)
    }
}

/// The threads a library sends from: `client.pool` in open loop (64 when unset), the
/// workers in closed loop.
pub fn threads(plan_pool: Option<usize>, pacing: Pacing, in_flight: usize) -> usize {
    match pacing {
        Pacing::Open { .. } => plan_pool.unwrap_or(ClientLibrary::DEFAULT_THREADS),
        Pacing::Closed => in_flight,
    }
    .clamp(1, ClientLibrary::MAX_THREADS)
}

/// The distinct script sources of the plan's ops, and each op kind's index among them.
pub fn scripts(plan: &DriverPlan) -> (Vec<String>, Vec<Option<usize>>) {
    let mut sources: Vec<String> = Vec::new();
    let index = (0..plan.renderer.len())
        .map(|k| {
            let source = &plan.renderer.script(OpKind(k as u16))?.source;
            Some(match sources.iter().position(|s| s == source) {
                Some(i) => i,
                None => {
                    sources.push(source.clone());
                    sources.len() - 1
                }
            })
        })
        .collect();
    (sources, index)
}

/// An op sent and not yet answered.
struct Pending {
    kind: OpKind,
    /// When it was due (open loop) or sent to the library (closed loop), run µs.
    intended_us: u64,
    /// How long slotstorm held it back because the library had `in_flight.limit` ops
    /// already, µs.
    held_us: u64,
    slot: u16,
    id: u64,
    uid: u64,
}

/// Drive the plan through the library `process` until its duration passes or `stop` is
/// asked, and return the history; as [`super::drive`] does for slotstorm's own client.
pub async fn drive(
    plan: Arc<DriverPlan>,
    mut process: Process,
    script_index: Vec<Option<usize>>,
    clock: RunClock,
    stop: Arc<Stop>,
    live: Live,
    journal: Option<Sink>,
) -> History {
    let tx = aggregate(&plan, &live, journal);
    let mut recorder = Recorder::new(plan.renderer.len(), plan.interval, tx, plan.recording.clone());
    let mut events = Vec::new();
    let cap = plan.in_flight.limit.max(1);
    let mut rng = SmallRng::seed_from_u64(plan.seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut keys = plan.keys.chooser(plan.seed, 0, 1);
    let (mut scratch, mut rendered) = (Scratch::default(), Rendered::default());
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    let mut next = 0u64;
    let mut sending = true;
    // When `cap` ops were last seen in flight, run µs: an op sent late after that was held
    // back by the cap, as a worker's op is queued when every worker was busy.
    let mut last_full_us = 0u64;
    let mut drain_until: Option<Instant> = None;
    let drain = plan.policy.worst_op_time()
        + Duration::from_millis(250) * plan.policy.retries
        + Duration::from_secs(5);
    let mut broken: Option<String> = None;
    loop {
        let due = match plan.pacing {
            Pacing::Open { rate } => Duration::try_from_secs_f64(next as f64 / rate).unwrap_or(Duration::MAX),
            Pacing::Closed => clock.start.elapsed(),
        };
        if sending && (stop.stopped() || due >= plan.duration || clock.start.elapsed() >= plan.duration) {
            sending = false;
            process.stdin = None;
            drain_until = Some(Instant::now() + drain);
        }
        if !sending && pending.is_empty() {
            break;
        }
        let room = sending && pending.len() < cap;
        // While sending, `due` is within the run; otherwise `at` only bounds the drain.
        let at = if room { clock.start + due } else { Instant::now() + drain };
        // An op already due is sent at once: a timer would round its wait up to the next
        // millisecond, which a closed loop pays on every op.
        let mut send_now = room && Instant::now() >= at;
        if !send_now {
            tokio::select! {
                biased;
                line = process.stdout.next_line() => match line {
                    Ok(Some(line)) => {
                        if pending.len() >= cap {
                            last_full_us = clock.now_us();
                        }
                        if let Err(e) = answer(&process, &line, &plan, &mut pending, &mut recorder) {
                            broken = Some(e);
                            break;
                        }
                    }
                    Ok(None) => {
                        broken = Some(process.failed("exited while ops were in flight").to_string());
                        break;
                    }
                    Err(e) => {
                        broken = Some(process.failed(&format!("reading its output: {e}")).to_string());
                        break;
                    }
                },
                () = tokio::time::sleep_until(at.into()), if room => send_now = true,
                () = stop.wait(), if sending => {},
                () = tokio::time::sleep_until(drain_until.unwrap_or(at).into()), if drain_until.is_some() => {
                    broken = Some(format!(
                        "{} ops still unanswered {:.1} s after the load ended; stopped it",
                        pending.len(),
                        drain.as_secs_f64()
                    ));
                    break;
                },
            }
        }
        if send_now {
            let intended_us = match plan.pacing {
                Pacing::Open { .. } => due.as_micros() as u64,
                Pacing::Closed => clock.now_us(),
            };
            let now_us = clock.now_us();
            let held_us = if last_full_us >= intended_us { now_us.saturating_sub(intended_us) } else { 0 };
            let kind = plan.renderer.pick(rng.random_range(0..plan.renderer.total_weight()));
            let uid = next + 1;
            plan.renderer.render_into(kind, &mut keys, uid, &mut scratch, &mut rendered);
            let line = op_line(next, &rendered, script_index[usize::from(kind.0)]);
            if let Err(e) = process.send(&line).await {
                broken = Some(e.to_string());
                break;
            }
            let slot = rendered.cmds.first_slot().unwrap_or(0);
            pending.insert(next, Pending { kind, intended_us, held_us, slot, id: rendered.id, uid });
            next += 1;
            if pending.len() >= cap {
                last_full_us = clock.now_us();
            }
        }
    }
    // Ops the library never answered may have been sent: unknown, ended now.
    let now_us = clock.now_us();
    for p in pending.into_values() {
        let op = OpEvent {
            start_us: p.intended_us,
            latency_us: now_us.saturating_sub(p.intended_us),
            kind: p.kind,
            slot: p.slot,
            id: p.id,
            uid: p.uid,
            sent_us: p.intended_us,
            queued_us: 0,
            outcome: Outcome::Unknown(ErrorClass::Other),
            attempts: 1,
            moved: 0,
            ask: 0,
            reply: None,
        };
        recorder.record_op(op, now_us, 0, 0);
    }
    recorder.finish();
    if let Some(error) = broken {
        let _ = process.child.start_kill();
        events.push(Event { at_us: now_us, kind: EventKind::DriverError { worker: 0, error } });
    }
    process.stdin = None;
    let _ = tokio::time::timeout(Duration::from_secs(5), process.child.wait()).await;
    let _ = process.child.start_kill();
    history_of(&plan, clock, &live, events)
}

/// Record one op's answer.
fn answer(
    process: &Process,
    line: &str,
    plan: &DriverPlan,
    pending: &mut HashMap<u64, Pending>,
    recorder: &mut Recorder,
) -> Result<(), String> {
    let a: Answer =
        serde_json::from_str(line).map_err(|e| format!("{}: bad line {line:?}: {e}", process.library))?;
    let Some(p) = a.op.and_then(|n| pending.remove(&n)) else {
        return Err(format!("{}: answered an op it was not sent: {line:?}", process.library));
    };
    let (recv_us, sent_us, end_us) = (process.run_us(a.recv), process.run_us(a.sent), process.run_us(a.end));
    let start_us = match plan.pacing {
        Pacing::Open { .. } => p.intended_us,
        Pacing::Closed => sent_us,
    };
    let outcome = if a.ok {
        Outcome::Ok
    } else {
        let class = class_named(a.class.as_deref().unwrap_or("other"));
        if class == ErrorClass::Other {
            warn_unclassified(process.library, a.error.as_deref().unwrap_or("no message"));
        }
        recorder.record_error(ErrorEvent { at_us: end_us, kind: p.kind, slot: p.slot, class, last: true });
        if a.maybe_applied { Outcome::Unknown(class) } else { Outcome::Fail(class) }
    };
    let queued = sent_us.saturating_sub(recv_us) + p.held_us;
    let op = OpEvent {
        start_us,
        latency_us: end_us.saturating_sub(start_us),
        kind: p.kind,
        slot: p.slot,
        id: p.id,
        uid: p.uid,
        sent_us: sent_us.max(start_us),
        queued_us: u32::try_from(queued).unwrap_or(u32::MAX),
        outcome,
        attempts: 1,
        moved: 0,
        ask: 0,
        reply: a.reply,
    };
    recorder.record_op(op, end_us, 0, 0);
    Ok(())
}

/// Say on stderr what a library raised that fits no class (counted as `other`): the first
/// few distinct messages of a run, so a surprise is seen, not just counted.
fn warn_unclassified(library: &str, error: &str) {
    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if seen.len() < 5 && !seen.iter().any(|s| s == error) {
        seen.push(error.to_string());
        eprintln!("warning: {library} raised {error} (counted as class other)");
    }
}

/// The class a library named.
fn class_named(name: &str) -> ErrorClass {
    ErrorClass::ALL.into_iter().find(|c| c.name() == name).unwrap_or(ErrorClass::Other)
}

/// Op `n`'s line: its commands' arguments as text (keys and values are text: spec files are
/// UTF-8 and values are letters).
fn op_line(n: u64, rendered: &Rendered, script: Option<usize>) -> Vec<u8> {
    let cmds = (0..rendered.cmds.len())
        .map(|i| match resp::parse(rendered.cmds.bytes(i), true) {
            Ok(Some((Reply::Array(args), _))) => args
                .into_iter()
                .map(|a| match a {
                    Reply::Bulk(b) => std::borrow::Cow::Owned(String::from_utf8_lossy(&b).into_owned()),
                    other => std::borrow::Cow::Owned(format!("{other:?}")),
                })
                .collect(),
            _ => unreachable!("a rendered command is a RESP array of bulk strings"),
        })
        .collect();
    serde_json::to_vec(&OpLine { op: n, cmds, script }).expect("serialisable")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_read_by_name_and_anything_else_is_other() {
        for c in ErrorClass::ALL {
            assert_eq!(class_named(c.name()), c);
        }
        assert_eq!(class_named("SomethingNew"), ErrorClass::Other);
    }

    #[test]
    fn threads_follow_the_pool_in_open_loop_and_the_workers_in_closed() {
        let open = Pacing::Open { rate: 100.0 };
        assert_eq!(threads(None, open, 5000), ClientLibrary::DEFAULT_THREADS);
        assert_eq!(threads(Some(8), open, 8), 8);
        assert_eq!(threads(None, Pacing::Closed, 16), 16);
        assert_eq!(threads(None, Pacing::Closed, 100_000), ClientLibrary::MAX_THREADS);
    }
}
