//! Valkey 9's atomic slot migration: `CLUSTER MIGRATESLOTS SLOTSRANGE <first> <last> …
//! NODE <target>` sent to the source, which streams a snapshot of the slots and then their
//! writes to the target, pauses writes briefly and lets the target take the slots over, all
//! at once: no slot is ever left importing or migrating and clients meet no ASK. Followed
//! through `CLUSTER GETSLOTMIGRATIONS` (one record per job: name, operation, slot ranges,
//! state, message) until the source's job ends.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::{Instant, sleep};

use super::ClusterError;
use super::admin::AdminError;
use super::node::Node;
use super::topology::{NodeId, to_ranges};

/// How often the source is asked how its job stands.
const POLL: Duration = Duration::from_millis(20);

/// A job that has neither changed nor heard from the target for this long is cancelled:
/// one whose target died stays `connecting` for minutes (the source waits on TCP).
pub const STALL: Duration = Duration::from_secs(10);

/// One job of `CLUSTER GETSLOTMIGRATIONS`, as far as slotstorm reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Job {
    /// Its name (an id).
    pub name: String,
    /// `EXPORT` on the source, `IMPORT` on the target.
    pub operation: String,
    /// `0-999 2000-2010`.
    pub slot_ranges: String,
    /// `snapshotting`, `streaming`, …, and at the end `success`, `failed` or `canceled`.
    pub state: String,
    /// Why it failed, if it did.
    pub message: String,
    /// When it last changed or heard from the other side, seconds since the Unix epoch.
    pub last_progress_s: u64,
}

impl Job {
    /// Whether the job has ended.
    pub fn ended(&self) -> bool {
        matches!(self.state.as_str(), "success" | "failed" | "canceled" | "cancelled")
    }
}

/// The jobs of a `CLUSTER GETSLOTMIGRATIONS` reply: an array with, per job, a flat array of
/// field names and values (RESP2) or a map (RESP3).
///
/// # Errors
/// What in the reply is not that shape.
pub fn parse_jobs(reply: &redis::Value) -> Result<Vec<Job>, String> {
    let text = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Ok(s.clone()),
        redis::Value::Int(n) => Ok(n.to_string()),
        redis::Value::Nil => Ok(String::new()),
        other => Err(format!("a field that is not text: {other:?}")),
    };
    let redis::Value::Array(jobs) = reply else { return Err(format!("not an array: {reply:?}")) };
    let mut out = Vec::new();
    for job in jobs {
        let pairs: Vec<(String, String)> = match job {
            redis::Value::Array(flat) => flat
                .chunks(2)
                .map(|kv| match kv {
                    [k, v] => Ok((text(k)?, text(v)?)),
                    _ => Err("a field without a value".to_string()),
                })
                .collect::<Result<_, _>>()?,
            redis::Value::Map(map) => {
                map.iter().map(|(k, v)| Ok((text(k)?, text(v)?))).collect::<Result<_, String>>()?
            }
            other => return Err(format!("a job that is not a record: {other:?}")),
        };
        let mut j = Job::default();
        for (k, v) in pairs {
            match k.as_str() {
                "name" => j.name = v,
                "operation" => j.operation = v,
                "slot_ranges" => j.slot_ranges = v,
                "state" => j.state = v,
                "message" => j.message = v,
                "create_time" | "last_update_time" | "last_ack_time" => {
                    j.last_progress_s = j.last_progress_s.max(v.parse().unwrap_or(0));
                }
                _ => {}
            }
        }
        out.push(j);
    }
    Ok(out)
}

/// Keys in `slots` on `src` and their size (`MEMORY USAGE`), counted before the move: an
/// atomic migration reports neither.
///
/// # Errors
/// The node's error.
pub(crate) async fn contents(src: &mut Node, slots: &[u16]) -> Result<(u64, u64), ClusterError> {
    let (mut keys, mut bytes) = (0u64, 0u64);
    for chunk in slots.chunks(100) {
        let mut list = redis::pipe();
        for s in chunk {
            list.cmd("CLUSTER").arg("GETKEYSINSLOT").arg(*s).arg(100_000);
        }
        let found: Vec<Vec<Vec<u8>>> = src.run_pipe(&list).await?;
        let found: Vec<Vec<u8>> = found.into_iter().flatten().collect();
        keys += found.len() as u64;
        for batch in found.chunks(1000) {
            let mut usage = redis::pipe();
            usage.ignore_errors();
            for k in batch {
                usage.cmd("MEMORY").arg("USAGE").arg(k);
            }
            let sizes: Vec<redis::RedisResult<Option<u64>>> = src.run_pipe(&usage).await?;
            bytes += sizes.into_iter().filter_map(|s| s.ok().flatten()).sum::<u64>();
        }
    }
    Ok((keys, bytes))
}

/// Move `slots` from `src` to the node `to` with one `CLUSTER MIGRATESLOTS`, and follow the
/// job until it ends or `deadline` passes. `on_state` hears each state the job reaches.
///
/// # Errors
/// The source's refusal of the command; the job's own failure (its state and message); the
/// source no longer answering (killed mid-move: the target then drops what it imported).
pub(crate) async fn migrate(
    src: &mut Node,
    to: &NodeId,
    slots: &[u16],
    deadline: Instant,
    on_state: &mut (dyn FnMut(&str) + Send),
) -> Result<(), AdminError> {
    let before: BTreeSet<String> = jobs(src).await?.into_iter().map(|j| j.name).collect();
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("MIGRATESLOTS").arg("SLOTSRANGE");
    for r in to_ranges(slots.iter().copied()) {
        cmd.arg(r.start).arg(r.end);
    }
    cmd.arg("NODE").arg(&to.0);
    src.run::<()>(&cmd).await?;
    let ours =
        |jobs: Vec<Job>| jobs.into_iter().find(|j| j.operation == "EXPORT" && !before.contains(&j.name));
    let mut last = String::new();
    let mut answered = Instant::now();
    loop {
        // A poll that fails once (a slow reply) is not the end of the job; a source that
        // answers nothing for as long as a stall is.
        let job = match jobs(src).await {
            Ok(jobs) => {
                answered = Instant::now();
                ours(jobs)
            }
            Err(e) if answered.elapsed() >= STALL => return Err(e.into()),
            Err(_) => {
                sleep(POLL).await;
                continue;
            }
        };
        if let Some(job) = &job {
            if job.state != last {
                on_state(&job.state);
                last.clone_from(&job.state);
            }
            if job.ended() {
                return ended(job);
            }
        }
        let now_s =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        let stalled = job.as_ref().is_some_and(|j| now_s.saturating_sub(j.last_progress_s) > STALL.as_secs());
        if stalled || Instant::now() >= deadline {
            let state = if last.is_empty() { "no job yet".to_string() } else { last.clone() };
            let why = match stalled {
                true => format!(
                    "made no progress for {} s ({state}: the target does not answer)",
                    STALL.as_secs()
                ),
                false => format!("had not ended by the reshard's time limit ({state})"),
            };
            return cancel(src, &ours, &why).await;
        }
        sleep(POLL).await;
    }
}

/// How an ended job ended: `success` moved every slot; anything else none.
fn ended(job: &Job) -> Result<(), AdminError> {
    match job.state.as_str() {
        "success" => Ok(()),
        state => Err(AdminError::Atomic(format!("ended {state}: {}", job.message))),
    }
}

/// Cancel the source's migrations (`CLUSTER CANCELSLOTMIGRATIONS`: all of them; a run has
/// one at a time) so that it does not finish behind the run's back, and report how the job
/// really ended: a job past its point of no return may still succeed.
async fn cancel(
    src: &mut Node,
    ours: &(dyn Fn(Vec<Job>) -> Option<Job> + Send + Sync),
    why: &str,
) -> Result<(), AdminError> {
    let cancelled: Result<(), _> = src.run(redis::cmd("CLUSTER").arg("CANCELSLOTMIGRATIONS")).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(job) = jobs(src).await.ok().and_then(ours).filter(Job::ended) {
            return match job.state.as_str() {
                "success" => Ok(()),
                state => Err(AdminError::Atomic(format!("{why}; cancelled, and it ended {state}"))),
            };
        }
        if Instant::now() >= deadline {
            let answer = cancelled.err().map_or_else(|| "it said OK".to_string(), |e| e.to_string());
            return Err(AdminError::Atomic(format!(
                "{why}; asked to cancel ({answer}), it had not ended 5 s later: check CLUSTER GETSLOTMIGRATIONS on the source"
            )));
        }
        sleep(POLL).await;
    }
}

async fn jobs(src: &mut Node) -> Result<Vec<Job>, ClusterError> {
    let reply: redis::Value = src.run(redis::cmd("CLUSTER").arg("GETSLOTMIGRATIONS")).await?;
    parse_jobs(&reply).map_err(|reason| ClusterError::Reply { addr: src.addr, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> redis::Value {
        redis::Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn jobs_read_from_resp2_records_and_resp3_maps() {
        // As Valkey 9.1.2 answered on this machine, fields cut down.
        let flat = redis::Value::Array(vec![redis::Value::Array(
            [
                "name",
                "2c69b0",
                "operation",
                "EXPORT",
                "slot_ranges",
                "0-999",
                "state",
                "success",
                "message",
                "",
                "cow_size",
                "0",
            ]
            .iter()
            .map(|s| bulk(s))
            .collect(),
        )]);
        let jobs = parse_jobs(&flat).unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!((jobs[0].operation.as_str(), jobs[0].slot_ranges.as_str()), ("EXPORT", "0-999"));
        assert!(jobs[0].ended());
        let map = redis::Value::Array(vec![redis::Value::Map(vec![
            (bulk("name"), bulk("x")),
            (bulk("state"), bulk("snapshotting")),
            (bulk("operation"), bulk("IMPORT")),
        ])]);
        let jobs = parse_jobs(&map).unwrap();
        assert_eq!((jobs[0].name.as_str(), jobs[0].ended()), ("x", false));
        assert!(parse_jobs(&bulk("nope")).is_err());
        assert!(parse_jobs(&redis::Value::Array(vec![redis::Value::Array(vec![bulk("name")])])).is_err());
    }
}
