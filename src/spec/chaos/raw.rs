//! Stage 1: the chaos file as serde reads it. These structs only check the input's shape
//! (known fields, right types) and keep spans; which fields an action needs or forbids is
//! stage 2's business.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use toml::Spanned;

use crate::spec::raw::RawDuration;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChaos {
    /// Seeds the random choice of targets.
    pub seed: Option<u64>,
    /// The `[[fault]]` tables.
    pub fault: Option<Spanned<Vec<Spanned<RawFault>>>>,
}

/// `[[fault]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFault {
    /// First start, from the start of the run.
    pub at: Spanned<RawDuration>,
    /// What is done.
    pub action: Spanned<ActionKind>,
    /// To whom.
    pub target: Spanned<RawTarget>,
    /// How long each occurrence lasts.
    pub duration: Option<Spanned<RawDuration>>,
    /// Period of repeats.
    pub every: Option<Spanned<RawDuration>>,
    /// Occurrences in all.
    pub count: Option<Spanned<u32>>,
    /// `loss`: the share of packets dropped.
    pub probability: Option<Spanned<f64>>,
    /// `bandwidth`: the cap, in tc's rate syntax.
    pub rate: Option<Spanned<String>>,
    /// `delay`: the added delay.
    pub delay: Option<Spanned<RawDuration>>,
    /// `delay`: its variation.
    pub jitter: Option<Spanned<RawDuration>>,
}

/// `fault.action`, without its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum ActionKind {
    /// SIGKILL.
    Kill,
    /// Graceful stop.
    Stop,
    /// Stop and start.
    Restart,
    /// Cgroup freezer.
    Pause,
    /// SIGSTOP.
    Sigstop,
    /// Cut from peers and clients.
    Isolate,
    /// Cut from peers.
    Partition,
    /// Random packet loss.
    Loss,
    /// Egress cap.
    Bandwidth,
    /// Added latency.
    Delay,
}

impl ActionKind {
    /// The name as the file writes it.
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Kill => "kill",
            ActionKind::Stop => "stop",
            ActionKind::Restart => "restart",
            ActionKind::Pause => "pause",
            ActionKind::Sigstop => "sigstop",
            ActionKind::Isolate => "isolate",
            ActionKind::Partition => "partition",
            ActionKind::Loss => "loss",
            ActionKind::Bandwidth => "bandwidth",
            ActionKind::Delay => "delay",
        }
    }
}

/// `fault.target`: a string (a node name or a keyword, told apart in stage 2) or a table
/// naming a slot by a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RawTarget {
    /// `"redis-3"`, `"random-primary"`, …
    Word(String),
    /// `{ primary-of = "…" }` or `{ replica-of = "…" }`; stage 2 checks that exactly one is
    /// given.
    Table {
        /// The key whose primary is meant.
        primary_of: Option<Spanned<String>>,
        /// The key whose replica is meant.
        replica_of: Option<Spanned<String>>,
    },
}

/// The table form of [`RawTarget`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawTargetTable {
    primary_of: Option<Spanned<String>>,
    replica_of: Option<Spanned<String>>,
}

impl<'de> Deserialize<'de> for RawTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawTarget;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    r#"a node name ("redis-1"), a keyword ("random-primary") or a table ({ primary-of = "{user:42}" })"#,
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawTarget, E> {
                Ok(RawTarget::Word(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawTarget, A::Error> {
                // Through a struct, as `keys.value_size` does: serde's own messages and paths
                // for unknown fields.
                let t = RawTargetTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawTarget::Table { primary_of: t.primary_of, replica_of: t.replica_of })
            }
        }
        d.deserialize_any(V)
    }
}
