//! Workload and chaos files: the TOML formats, their defaults, and their validation. A
//! workload file is read in two stages, as ripgrep reads its flags: `raw` deserializes it
//! into structs that only check the input's shape (unknown fields and wrong types are
//! errors), then `resolve` applies defaults, checks the rules between fields, compiles
//! command templates and reads script files, producing a [`Workload`] that the core uses as
//! it is and never re-parses.
//!
//! Chaos files (`chaos/*.toml`, the faults a run injects) are read the same way by
//! [`chaos`]; a workload's `chaos` names one, and loading the workload loads it too.
//!
//! Every error names `file:line:column: field: message` on one line (see [`SpecError`]).
//!
//! This module reads files; it never talks to Redis or Docker.
//!
//! # The format
//!
//! The files in `workloads/` are the examples. In short (defaults in parentheses):
//!
//! ```toml
//! name = "seed-users"          # (the file stem) names the run and its results folder
//! description = "..."          # optional
//! chaos = "../chaos/x.toml"    # optional, relative to this file; loaded and checked too
//!
//! [cluster]                    # optional; an embedded 3 x 1 cluster by default
//! kind = "embedded"            # "embedded" (default) | "external"
//! engine = "redis"             # embedded only: "redis" (default) | "valkey"
//! masters = 3                  # embedded only: 1..=100 (3)
//! replicas = 1                 # embedded only: 0..=5 (1)
//! node_timeout = "5s"          # embedded only ("5s")
//! appendonly = true            # embedded only (true)
//! require_full_coverage = true # embedded only (true)
//! config = { maxmemory = "256mb" } # embedded only: more redis.conf directives
//! seeds = ["10.0.0.1:6379"]    # external only, required there
//! password = "..."             # external only, optional
//!
//! [load]
//! duration = "30s"             # required: the measured part of the run
//! warmup = "2s"                # ("0s") runs before `duration`, recorded apart
//! mode = "open"                # "open" | "closed" (closed)
//! rate = 5000                  # ops/s; required for open, forbidden for closed
//! concurrency = 32             # closed: ops in flight (16); open: slotstorm's own cap on them
//!                              # (sized from rate and client policy, see InFlight)
//! connections = 1              # (1) per node
//! seed = 42                    # (0)
//! interval = "1s"              # ("1s") histogram interval, at least 100ms
//!
//! [client]                     # the application's client policy
//! timeout = "1s"               # ("1s") per request
//! retries = 0                  # (0)
//! backoff = "100ms"            # ("100ms") retry n waits backoff * 2^n ...
//! backoff_max = "2s"           # ("2s") ... but never longer than this
//! pool = 64                    # open loop only, unset by default: the application's pool
//!                              # (ops queue for it; the queueing is reported apart)
//!
//! [keys]
//! count = 10000                # (10000) ids are 0..count
//! distribution = "uniform"     # "uniform" (default) | "zipfian" | "sequential"
//! theta = 0.99                 # zipfian only (0.99)
//! value_size = 64              # (64) bytes, or { min = 16, max = 256 }
//!
//! [[op]]                       # one or more
//! name = "get"                 # required, unique, [a-z0-9_-]+
//! weight = 5                   # (1)
//! command = ["GET", "key:$id"] # exactly one of command / pipeline / script
//!
//! [slo]                        # optional; every limit optional, none set by default
//! max_failover = "15s"         # per fault: client_recovered - t0 (never recovered: violated)
//! max_disruption = "15s"       # per fault: disruption span on the victim's slots
//! max_error_window = "12s"     # per fault: error span on the victim's slots
//! max_lost_writes = 0          # lost acknowledged writes
//! max_over_admissions = 0      # rate-limit windows over the limit
//! min_throughput = 900         # successful ops/s over the measured part
//! max_send_lag = "50ms"        # the latest an op may be sent after its intended start
//! [slo.p99]                    # steady-state p99 per op name (names must be ops)
//! get = "5ms"
//! [slo.p99_9]                  # the same for p99.9
//! get = "20ms"
//! ```
//!
//! A `pipeline` is a list of commands (`batch = n` repeats it for n ids in one round trip);
//! a `script` is a Lua file with `keys` (required) and `args`. Placeholders are listed in
//! [`template`]. **Argument 1 of every command is its routing key**, as is `keys[0]` of a
//! script; see [`CommandTemplate`] about pipelines whose keys have different hash tags.

pub mod chaos;
mod error;
mod raw;
mod resolve;
pub mod template;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use self::chaos::{
    Action, ChaosPlan, FaultSpec, Operation, OperationSpec, Scheduled, ScheduledFault, ScheduledOperation,
    TargetSpec, load_chaos, parse_chaos,
};
pub use self::error::{Located, SpecError};
pub use self::resolve::MAX_IN_FLIGHT;
pub use self::template::{ArgTemplate, CommandTemplate, Part, RenderCtx, TemplateError};
use crate::embedded::EmbeddedSpec;

/// A workload file, resolved: everything the run needs, with defaults applied and every
/// reference checked.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Names the run and its results folder: letters, digits, `_`, `-`, `.`.
    pub name: String,
    /// The file it was read from, as given.
    pub path: PathBuf,
    /// Free text for reports.
    pub description: Option<String>,
    /// The chaos file to run with the workload, read and checked; its `path` is the one the
    /// workload names, joined to the workload file's folder.
    pub chaos: Option<ChaosPlan>,
    /// Which cluster to drive.
    pub cluster: ClusterTarget,
    /// How long and how hard.
    pub load: Load,
    /// How the application's client behaves.
    pub client: ClientPolicy,
    /// The keyspace ops draw their `$id` and `$value` from.
    pub keys: Keys,
    /// The ops, in file order; never empty, names unique.
    pub ops: Vec<OpSpec>,
    /// The service-level objectives the run is judged by (`[slo]`); none by default.
    pub slo: Slo,
}

/// Service-level objectives: the limits a run is judged by (`check::slo` turns them into
/// verdicts). Every limit is optional; one that is not set is not judged. Limits are
/// inclusive: an observed value equal to the limit meets it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Slo {
    /// Per fault: the longest failover, `client_recovered − t0`. A fault whose client had
    /// not recovered by the end of the run violates it.
    pub max_failover: Option<Duration>,
    /// Per fault: the longest disruption span (errors or slow ops) on the victim's slots.
    pub max_disruption: Option<Duration>,
    /// Per fault: the longest error span on the victim's slots.
    pub max_error_window: Option<Duration>,
    /// The most acknowledged writes that may be lost.
    pub max_lost_writes: Option<u64>,
    /// The most rate-limit windows that may admit more than the limit.
    pub max_over_admissions: Option<u64>,
    /// The fewest completed ops per second (every op, every outcome) over the measured
    /// part of the run; finite and above 0.
    pub min_throughput: Option<f64>,
    /// The latest any measured op may be sent after its intended start (the driver's or
    /// the application pool's send lag; a closed loop sends every op when it means to).
    pub max_send_lag: Option<Duration>,
    /// Steady-state p99 per op, in file order: `(op name, limit)`; every name is an op of
    /// the workload, each at most once, every limit above 0.
    pub p99: Vec<(String, Duration)>,
    /// The same for p99.9.
    pub p99_9: Vec<(String, Duration)>,
}

impl Slo {
    /// True when no limit is set.
    pub fn is_empty(&self) -> bool {
        *self == Slo::default()
    }
}

/// Which cluster a workload runs against.
#[derive(Debug, Clone)]
pub enum ClusterTarget {
    /// A cluster slotstorm starts in Docker and removes afterwards.
    Embedded(EmbeddedSpec),
    /// A cluster that already runs; slotstorm neither starts nor changes its shape.
    External {
        /// `host:port` of one or more nodes; never empty.
        seeds: Vec<String>,
        /// The `AUTH` password, if the cluster wants one.
        password: Option<String>,
    },
}

/// How long the load runs and how it is paced.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    /// The measured part of the run; more than zero.
    pub duration: Duration,
    /// Load before `duration` starts, recorded apart and left out of the results (the run
    /// takes `warmup + duration`).
    pub warmup: Duration,
    /// Open or closed loop.
    pub pacing: Pacing,
    /// Closed loop: ops in flight (always set). Open loop: slotstorm's own limit on ops in
    /// flight when the file sets one; unset, [`Workload::in_flight`] sizes it.
    pub concurrency: Option<usize>,
    /// Connections to each node.
    pub connections: usize,
    /// Seed of every random choice (ids, values, op mix), so runs repeat.
    pub seed: u64,
    /// Width of a histogram interval; at least 100 ms.
    pub interval: Duration,
}

/// How ops are started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// Ops start on a fixed schedule, whether or not earlier ones have finished, so a
    /// stall shows as latency rather than as fewer ops.
    Open {
        /// Ops started per second; finite and more than zero.
        rate: f64,
    },
    /// Each of `concurrency` workers starts its next op when its last one finished.
    Closed,
}

/// The application's client policy: what an ordinary client does on errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientPolicy {
    /// How long one request may take (the seed's `socket_timeout`); more than zero.
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub retries: u32,
    /// The wait before retry 0; retry n waits `backoff * 2^n`.
    pub backoff: Duration,
    /// The longest wait before a retry; at least `backoff`.
    pub backoff_max: Duration,
    /// Open loop only: the application's pool (a thread or connection pool), the most ops
    /// it has in flight. Ops queue for it, and that queueing is the application's, reported
    /// apart from what the cluster did.
    pub pool: Option<usize>,
    /// The client library that sends the ops: slotstorm's own, or a real one in a process
    /// of its own (`driver::library`).
    pub library: ClientLibrary,
    /// A real library's threads: one client shared by all, or one each.
    pub instances: Instances,
}

/// `client.instances`: how a real library's threads hold their client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Instances {
    /// One client for every thread, as a threaded application usually holds it.
    #[default]
    Shared,
    /// A client of each thread's own, as an application of one process per worker has.
    PerThread,
}

impl Instances {
    /// As written in a workload file.
    pub fn name(self) -> &'static str {
        match self {
            Instances::Shared => "shared",
            Instances::PerThread => "per-thread",
        }
    }
}

/// `client.library`: who sends the ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientLibrary {
    /// slotstorm's own cluster client: every attempt, redirect and retry seen and timed.
    #[default]
    Slotstorm,
    /// redis-py's `RedisCluster` (the seed's client), in a Python process beside the run:
    /// what an application on it sees, its retries and refreshes inside each op.
    RedisPy,
}

impl ClientLibrary {
    /// As written in a workload file.
    pub fn name(self) -> &'static str {
        match self {
            ClientLibrary::Slotstorm => "slotstorm",
            ClientLibrary::RedisPy => "redis-py",
        }
    }

    /// Retries when the file names none: the library's own default (redis-py's
    /// `cluster_error_retry_attempts` is 3).
    pub fn default_retries(self) -> u32 {
        match self {
            ClientLibrary::Slotstorm => 0,
            ClientLibrary::RedisPy => 3,
        }
    }

    /// Threads an external library sends from in open loop when `client.pool` says nothing.
    pub const DEFAULT_THREADS: usize = 64;

    /// The most threads an external library may be given (`client.pool` or
    /// `load.concurrency`).
    pub const MAX_THREADS: usize = 1024;
}

impl ClientPolicy {
    /// The wait before retry `n` (0 for the first retry): `backoff * 2^n`, at most
    /// `backoff_max`, as the seed's `resilient_get` does.
    pub fn backoff_before(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n).unwrap_or(u32::MAX);
        self.backoff.saturating_mul(factor).min(self.backoff_max)
    }

    /// The longest an op can take under this policy in the usual worst case: every attempt
    /// timing out, with every backoff between them.
    pub fn worst_op_time(&self) -> Duration {
        let waits =
            (0..self.retries).map(|n| self.backoff_before(n)).fold(Duration::ZERO, Duration::saturating_add);
        self.timeout.saturating_mul(self.retries.saturating_add(1)).saturating_add(waits)
    }
}

/// How many ops a run has in flight at most, and who set that limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// Ops in flight at most.
    pub limit: usize,
    /// Where the limit comes from.
    pub source: LimitSource,
}

/// Who set a run's limit on ops in flight, which says what waiting for it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitSource {
    /// Closed loop: `load.concurrency` workers, each with one op in flight.
    Workers,
    /// Open loop, `client.pool`: the application's pool. An op that waits for it waits in
    /// the application, as it would in production.
    Pool,
    /// Open loop, `load.concurrency`: slotstorm's own limit, set in the file. An op that
    /// waits for it is slotstorm falling behind its schedule.
    Set,
    /// Open loop, neither set: sized for the rate times the client policy's worst op time,
    /// at most [`MAX_IN_FLIGHT`]. An op that waits for it is slotstorm falling behind.
    Sized,
}

impl InFlight {
    /// `16 workers`, `an application pool of 64`, `at most 64 in flight (load.concurrency)`,
    /// `at most 4125 in flight (sized for the rate and client policy)`.
    pub fn describe(&self) -> String {
        match self.source {
            LimitSource::Workers => format!("{} workers", self.limit),
            LimitSource::Pool => format!("an application pool of {}", self.limit),
            LimitSource::Set => format!("at most {} in flight (load.concurrency)", self.limit),
            LimitSource::Sized if self.limit >= MAX_IN_FLIGHT => {
                format!("at most {} in flight (sized for the rate and client policy, capped)", self.limit)
            }
            LimitSource::Sized => {
                format!("at most {} in flight (sized for the rate and client policy)", self.limit)
            }
        }
    }
}

impl Workload {
    /// The run's limit on ops in flight. An open loop without a pool or a set limit gets
    /// enough for `rate` × the policy's worst op time with a quarter more (and at least 16),
    /// so that ops keep their schedule while a shard times out every attempt; at most
    /// [`MAX_IN_FLIGHT`].
    pub fn in_flight(&self) -> InFlight {
        let (limit, source) = match (self.load.pacing, self.client.pool, self.load.concurrency) {
            (Pacing::Closed, _, c) => (c.unwrap_or(1), LimitSource::Workers),
            (Pacing::Open { .. }, Some(pool), _) => (pool, LimitSource::Pool),
            (Pacing::Open { .. }, None, Some(c)) => (c, LimitSource::Set),
            (Pacing::Open { rate }, None, None) => {
                let need = (rate * self.client.worst_op_time().as_secs_f64() * 1.25).ceil();
                (need.clamp(16.0, MAX_IN_FLIGHT as f64) as usize, LimitSource::Sized)
            }
        };
        InFlight { limit: limit.max(1), source }
    }
}

impl Default for ClientPolicy {
    fn default() -> Self {
        ClientPolicy {
            timeout: Duration::from_secs(1),
            retries: 0,
            backoff: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            pool: None,
            library: ClientLibrary::Slotstorm,
            instances: Instances::Shared,
        }
    }
}

/// The keyspace.
#[derive(Debug, Clone, PartialEq)]
pub struct Keys {
    /// Ids are `0..count`; at least 1.
    pub count: u64,
    /// How ids are drawn.
    pub distribution: Distribution,
    /// How long `$value` is.
    pub value_size: ValueSize,
}

/// The length of `$value`, in bytes: drawn from `min..=max` per op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueSize {
    /// Shortest value.
    pub min: usize,
    /// Longest value; at least `min`.
    pub max: usize,
}

/// One kind of op in the mix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpSpec {
    /// Names the op's histogram: `[a-z0-9_-]+`, unique in the workload.
    pub name: String,
    /// Relative frequency in the mix; at least 1.
    pub weight: u32,
    /// What the op sends.
    pub body: OpBody,
}

/// What an op sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpBody {
    /// One command.
    Command(CommandTemplate),
    /// Commands sent together in one round trip per node.
    Pipeline {
        /// The commands for one id; never empty.
        commands: Vec<CommandTemplate>,
        /// How many different ids the commands are repeated for in one op (the seed's
        /// `cache_user_batch`); at least 1. With more than one the op spans many slots and
        /// nodes, and counts as one op.
        batch: usize,
    },
    /// A Lua script, run with `EVALSHA` (loaded where a node answers `NOSCRIPT`).
    Script {
        /// The script file, resolved against the workload file's folder.
        path: PathBuf,
        /// Its text, read at load time.
        source: String,
        /// `KEYS`; never empty, `keys[0]` routes the script.
        keys: Vec<ArgTemplate>,
        /// `ARGV`.
        args: Vec<ArgTemplate>,
    },
}

/// How ids are drawn from `0..count`.
#[derive(Debug, Clone, PartialEq)]
pub enum Distribution {
    /// Every id equally likely.
    Uniform,
    /// Few ids are hot: P(rank k) ∝ 1/k^theta (YCSB's generator), id 0 hottest.
    Zipfian {
        /// Skew, 0 < theta < 1; YCSB's default is 0.99.
        theta: f64,
    },
    /// Each worker walks the ids in order, interleaved with the others.
    Sequential,
}

/// Read and resolve the workload file at `path`. Relative paths inside it (`chaos`,
/// `script`) are taken from the file's folder.
///
/// # Errors
/// [`SpecError::Read`] when the file cannot be read; [`SpecError::Invalid`], which prints
/// as `path:line:column: field: message`, for anything wrong inside it (including a
/// script or chaos file it names that cannot be read). An error inside the chaos file
/// names the chaos file and its own line and column.
pub fn load(path: &Path) -> Result<Workload, SpecError> {
    let text = error::read_text(path)?;
    parse(path, &text)
}

/// Resolve a workload from `text`, as if read from `path` (used in messages, for the
/// default name, and as the base of relative paths).
///
/// # Errors
/// As [`load`], less the read error.
pub fn parse(path: &Path, text: &str) -> Result<Workload, SpecError> {
    resolve::workload(path, text)
}

#[cfg(test)]
mod tests;
