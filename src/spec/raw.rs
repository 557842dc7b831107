//! Stage 1: the workload file as serde reads it. These structs only check the input's shape
//! (known fields, right types); every field is optional here unless the file must have it,
//! and keeps its span so stage 2 can place its own errors. Defaults and rules that relate
//! fields live in `resolve`, never here.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkload {
    /// Names the run and its results folder; the file stem when absent.
    pub name: Option<Spanned<String>>,
    /// Free text for reports.
    pub description: Option<String>,
    /// A chaos file, relative to the workload file.
    pub chaos: Option<Spanned<String>>,
    /// Which cluster to run against.
    pub cluster: Option<Spanned<RawCluster>>,
    /// How long and how hard.
    pub load: Spanned<RawLoad>,
    /// The application's client policy.
    pub client: Option<RawClient>,
    /// The keyspace.
    pub keys: Option<Spanned<RawKeys>>,
    /// The ops (`[[op]]` tables).
    pub op: Option<Spanned<Vec<Spanned<RawOp>>>>,
    /// The service-level objectives the run is judged by.
    pub slo: Option<RawSlo>,
}

/// `[cluster]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    /// `embedded` or `external`.
    pub kind: Option<Spanned<ClusterKind>>,
    /// Embedded: the server the nodes run.
    pub engine: Option<Spanned<crate::backend::engine::Engine>>,
    /// Embedded: primaries.
    pub masters: Option<Spanned<u64>>,
    /// Embedded: replicas per primary.
    pub replicas: Option<Spanned<u64>>,
    /// Embedded: `cluster-node-timeout`.
    pub node_timeout: Option<Spanned<RawDuration>>,
    /// Embedded: `appendonly`.
    pub appendonly: Option<Spanned<bool>>,
    /// Embedded: `cluster-require-full-coverage`.
    pub require_full_coverage: Option<Spanned<bool>>,
    /// Embedded: further `redis.conf` directives.
    pub config: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    /// External: seed addresses.
    pub seeds: Option<Spanned<Vec<Spanned<String>>>>,
    /// External: the `AUTH` password.
    pub password: Option<Spanned<String>>,
}

/// `cluster.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum ClusterKind {
    /// Containers slotstorm starts.
    Embedded,
    /// A cluster that is already running.
    External,
}

/// `[load]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLoad {
    /// The measured part of the run.
    pub duration: Spanned<RawDuration>,
    /// Unmeasured time before it.
    pub warmup: Option<Spanned<RawDuration>>,
    /// Open or closed loop.
    pub mode: Option<Spanned<Mode>>,
    /// Open loop: ops per second.
    pub rate: Option<Spanned<f64>>,
    /// Ops in flight.
    pub concurrency: Option<Spanned<u64>>,
    /// Connections per node.
    pub connections: Option<Spanned<u64>>,
    /// Seed of the random choices.
    pub seed: Option<u64>,
    /// Histogram interval.
    pub interval: Option<Spanned<RawDuration>>,
}

/// `load.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Mode {
    /// Ops start on a schedule, whether or not earlier ones finished.
    Open,
    /// Each worker starts its next op when the last one finished.
    Closed,
}

/// `[client]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    /// Per-request timeout.
    pub timeout: Option<Spanned<RawDuration>>,
    /// Retries after the first attempt.
    pub retries: Option<Spanned<u32>>,
    /// Base backoff.
    pub backoff: Option<Spanned<RawDuration>>,
    /// Longest backoff.
    pub backoff_max: Option<Spanned<RawDuration>>,
    /// The application's pool: ops in flight at most (open loop only).
    pub pool: Option<Spanned<u64>>,
    /// The client library that sends the ops.
    pub library: Option<Spanned<super::ClientLibrary>>,
    /// A real library's threads: one shared client or one each.
    pub instances: Option<Spanned<super::Instances>>,
}

/// `[keys]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeys {
    /// How many ids.
    pub count: Option<Spanned<u64>>,
    /// How ids are drawn.
    pub distribution: Option<Spanned<DistributionKind>>,
    /// Zipfian skew.
    pub theta: Option<Spanned<f64>>,
    /// Bytes per `$value`.
    pub value_size: Option<Spanned<RawValueSize>>,
}

/// `keys.distribution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum DistributionKind {
    /// Every id alike.
    Uniform,
    /// Skewed to low ids.
    Zipfian,
    /// In order.
    Sequential,
}

/// `[[op]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOp {
    /// Names the op's histogram.
    pub name: Spanned<String>,
    /// Relative frequency.
    pub weight: Option<Spanned<u64>>,
    /// One command.
    pub command: Option<RawArgs>,
    /// Commands sent together.
    pub pipeline: Option<Spanned<Vec<RawArgs>>>,
    /// Pipeline repeats per round trip.
    pub batch: Option<Spanned<u64>>,
    /// A Lua script file.
    pub script: Option<Spanned<String>>,
    /// The script's `KEYS`.
    pub keys: Option<RawArgs>,
    /// The script's `ARGV`.
    pub args: Option<RawArgs>,
}

/// `[slo]`: every limit optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlo {
    /// Per fault: longest `client_recovered − t0`.
    pub max_failover: Option<Spanned<RawDuration>>,
    /// Per fault: longest disruption span on the victim's slots.
    pub max_disruption: Option<Spanned<RawDuration>>,
    /// Per fault: longest error span on the victim's slots.
    pub max_error_window: Option<Spanned<RawDuration>>,
    /// Most acknowledged writes lost.
    pub max_lost_writes: Option<u64>,
    /// Most rate-limit windows over the limit.
    pub max_over_admissions: Option<u64>,
    /// Open loop: the latest any op may be sent after its intended start.
    pub max_send_lag: Option<Spanned<RawDuration>>,
    /// Fewest ops per second over the measured part.
    pub min_throughput: Option<Spanned<f64>>,
    /// `[slo.p99]`: steady-state p99 per op name. Keys are plain strings so that serde names
    /// a bad value's field (`slo.p99.get`); stage 2 finds a key's own span when it needs it.
    pub p99: Option<BTreeMap<String, Spanned<RawDuration>>>,
    /// `[slo.p99_9]`: the same for p99.9.
    pub p99_9: Option<BTreeMap<String, Spanned<RawDuration>>>,
}

/// A duration written as humantime text: `"500ms"`, `"5s"`, `"1m 30s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RawDuration(pub Duration);

/// The longest duration a file may give (any field): a run, its faults and their repeats
/// then fit the run clock with room to spare, and sums of them never overflow.
pub(super) const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a duration as a string such as "500ms", "5s" or "1m 30s""#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDuration, E> {
                let d = humantime::parse_duration(v)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(&super::error::shorten(v)), &self))?;
                if d > MAX_DURATION {
                    return Err(E::custom(format!(
                        "{} is longer than any run: durations are at most 30 days (\"30d\")",
                        super::error::shorten(v)
                    )));
                }
                if d.subsec_nanos() % 1_000 != 0 {
                    return Err(E::custom(format!(
                        "{v} is not a whole number of microseconds: durations count in microseconds, as the run's clock does (\"1us\" and up, e.g. \"500us\")"
                    )));
                }
                Ok(RawDuration(d))
            }
        }
        d.deserialize_str(V)
    }
}

/// A list of arguments (a command, a script's `keys` or `args`), each with its span.
pub(super) type RawArgs = Spanned<Vec<Spanned<RawArg>>>;

/// One argument of a command: a string, or an integer written without quotes
/// (`["EXPIRE", "k", 3600]`), kept as the text it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawArg(pub String);

impl<'de> Deserialize<'de> for RawArg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawArg;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string (or an integer) argument")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawArg, E> {
                Ok(RawArg(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawArg, E> {
                Ok(RawArg(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawArg, E> {
                Ok(RawArg(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `keys.value_size`: a fixed size, or `{ min = .., max = .. }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RawValueSize {
    /// Every value this long.
    Fixed(u64),
    /// Sizes drawn from `min..=max`.
    Range {
        /// Shortest.
        min: Spanned<u64>,
        /// Longest.
        max: Spanned<u64>,
    },
}

/// The table form of [`RawValueSize`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRange {
    min: Spanned<u64>,
    max: Spanned<u64>,
}

impl<'de> Deserialize<'de> for RawValueSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawValueSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size in bytes (64) or a range ({ min = 16, max = 256 })")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawValueSize, E> {
                Ok(RawValueSize::Fixed(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawValueSize, E> {
                u64::try_from(v)
                    .map(RawValueSize::Fixed)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawValueSize, A::Error> {
                // Going through a struct keeps serde's own messages for unknown and missing
                // fields, and the path of whichever is wrong.
                let range = RawRange::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawValueSize::Range { min: range.min, max: range.max })
            }
        }
        d.deserialize_any(V)
    }
}
