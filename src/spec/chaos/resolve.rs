//! Stage 2: from the raw structs to a [`ChaosPlan`]. Checks what serde cannot: which fields
//! an action needs and which it forbids, the syntax of targets and rates, and that the
//! repeats of one fault never overlap. Each error points at the field it concerns; a field
//! that an action requires but the file lacks is reported at the `action`. Operations are
//! resolved in [`operation`], with the same context and target syntax.

mod operation;

use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use humantime::format_duration;
use toml::Spanned;

use super::raw::{ActionKind, RawChaos, RawFault, RawOperation, RawTarget};
use super::{Action, ChaosPlan, FaultSpec, TargetSpec};
use crate::cluster::slot::Slot;
use crate::spec::error::{Source, SpecError};
use crate::spec::raw::RawDuration;

/// The most occurrences one fault may have: far above any sensible run, low enough to stop
/// a typo from scheduling millions.
const MAX_COUNT: u32 = 10_000;

/// The smallest bandwidth cap, in bits per second: tc keeps rates in bytes per second.
const MIN_RATE: u64 = 8;

/// The target keywords, and what each resolves to.
const KEYWORDS: [(&str, TargetSpec); 4] = [
    ("random-primary", TargetSpec::RandomPrimary),
    ("random-replica", TargetSpec::RandomReplica),
    ("minority-of-primaries", TargetSpec::MinorityOfPrimaries),
    ("all-primaries", TargetSpec::AllPrimaries),
];

/// What a target may be, for messages.
const TARGET_RULE: &str = "a target is a node name (\"redis-1\"), \"random-primary\", \"random-replica\", \"minority-of-primaries\", \"all-primaries\", { primary-of = \"<key>\" } or { replica-of = \"<key>\" }";

/// tc's rate units and their worth in bits per second: `bit` and `bps` (bytes) with SI
/// (`k`, `m`, `g`, `t`: powers of 1000) and IEC (`ki`, `mi`, `gi`, `ti`: of 1024) prefixes.
const RATE_UNITS: [(&str, f64); 18] = [
    ("bit", 1.0),
    ("kbit", 1e3),
    ("mbit", 1e6),
    ("gbit", 1e9),
    ("tbit", 1e12),
    ("kibit", 1024.0),
    ("mibit", 1024.0 * 1024.0),
    ("gibit", 1024.0 * 1024.0 * 1024.0),
    ("tibit", 1024.0 * 1024.0 * 1024.0 * 1024.0),
    ("bps", 8.0),
    ("kbps", 8e3),
    ("mbps", 8e6),
    ("gbps", 8e9),
    ("tbps", 8e12),
    ("kibps", 8.0 * 1024.0),
    ("mibps", 8.0 * 1024.0 * 1024.0),
    ("gibps", 8.0 * 1024.0 * 1024.0 * 1024.0),
    ("tibps", 8.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0),
];

/// Parse and resolve `text`, read from `path`.
pub(super) fn plan(path: &Path, text: &str) -> Result<ChaosPlan, SpecError> {
    let src = Source { path, text };
    let de = toml::Deserializer::parse(text).map_err(|e| src.syntax(&e))?;
    let raw: RawChaos = serde_path_to_error::deserialize(de).map_err(|e| src.deserialize(e))?;
    let fault_count = raw.fault.as_ref().map_or(0, |f| f.get_ref().len());
    let operation_count = raw.operation.as_ref().map_or(0, |o| o.get_ref().len());
    if fault_count + operation_count == 0 {
        // An empty array written out is named; a file with neither table gets the example.
        if let Some(faults) = &raw.fault {
            return Err(src.error(faults.span(), "fault", "must list at least one fault or operation"));
        }
        if let Some(operations) = &raw.operation {
            return Err(src.error(
                operations.span(),
                "operation",
                "must list at least one operation or fault",
            ));
        }
        let message = "a chaos file needs at least one [[fault]] table or [[operation]] table, e.g. [[fault]] at = \"10s\" action = \"kill\" target = \"random-primary\" duration = \"10s\"";
        return Err(src.error(0..0, "fault", message));
    }
    let faults = raw
        .fault
        .map(|f| f.into_inner())
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, raw)| Entry { src: &src, table: "fault", i }.resolve(raw.into_inner()))
        .collect::<Result<Vec<_>, _>>()?;
    let raw_operations: Vec<RawOperation> = raw
        .operation
        .map(|o| o.into_inner())
        .unwrap_or_default()
        .into_iter()
        .map(Spanned::into_inner)
        .collect();
    let operations = operation::resolve_all(&src, raw_operations)?;
    overlaps(&src, &faults)?;
    Ok(ChaosPlan {
        path: path.to_path_buf(),
        seed: raw.seed.unwrap_or(0),
        faults,
        operations,
        text: text.to_string(),
    })
}

/// Refuse two faults on the same node at once: what a kill during a pause, or a second
/// partition on a partitioned node, means is nobody's guess, and healing one would undo part
/// of the other. Only targets that name the same node whatever the cluster does are
/// compared: a node by name, and `primary-of` the same slot. A restart counts from its `at`
/// for a millisecond.
fn overlaps(src: &Source, faults: &[FaultSpec]) -> Result<(), SpecError> {
    let same_node = |t: &TargetSpec| match t {
        TargetSpec::Node(name) => Some(name.clone()),
        TargetSpec::PrimaryOf { slot, .. } => Some(format!("the primary of slot {}", slot.get())),
        _ => None,
    };
    // Every occurrence of every such fault: (node, start, end, fault).
    let mut spans: Vec<(String, Duration, Duration, usize)> = Vec::new();
    for (i, f) in faults.iter().enumerate() {
        let Some(node) = same_node(&f.target) else { continue };
        let length = f.duration.unwrap_or(Duration::from_millis(1));
        for k in 0..f.count {
            let start = f.at.saturating_add(f.every.unwrap_or_default().saturating_mul(k));
            spans.push((node.clone(), start, start.saturating_add(length), i));
        }
    }
    spans.sort();
    for pair in spans.windows(2) {
        let ((node, _, end, i), (other, start, _, j)) = (&pair[0], &pair[1]);
        if node == other && start < end && i != j {
            // Placed at the fault whose occurrence starts the later.
            let message = format!(
                "overlaps fault[{i}] on {node} (from {} to {}): two faults on one node at once have no defined meaning; move one or target another node",
                humantime::format_duration(pair[0].1),
                humantime::format_duration(*end),
            );
            let place = &faults[*j].place;
            return Err(src.error(place.at.clone(), format_args!("{}.at", place.table), message));
        }
    }
    Ok(())
}

/// Stage 2's context for one table of the file: `fault[i]` or `operation[i]`.
struct Entry<'a> {
    src: &'a Source<'a>,
    /// `fault` or `operation`: the array the table belongs to.
    table: &'static str,
    i: usize,
}

impl Entry<'_> {
    fn err(&self, span: Range<usize>, name: &str, message: impl fmt::Display) -> SpecError {
        self.src.error(span, format_args!("{}[{}].{name}", self.table, self.i), message)
    }

    fn resolve(&self, raw: RawFault) -> Result<FaultSpec, SpecError> {
        let kind = *raw.action.get_ref();
        let action_at = raw.action.span();
        let place = super::Place {
            table: format!("{}[{}]", self.table, self.i),
            at: raw.at.span(),
            fields: [
                ("target", Some(raw.target.span())),
                ("count", raw.count.as_ref().map(Spanned::span)),
                ("action", Some(raw.action.span())),
            ]
            .into_iter()
            .filter_map(|(n, s)| Some((n, s?)))
            .collect(),
        };
        let target = self.target(raw.target, "target", TARGET_RULE)?;
        // An action's parameters on another action are errors rather than ignored: the file
        // expects an effect slotstorm would not have.
        let params = [
            ("probability", ActionKind::Loss, raw.probability.as_ref().map(Spanned::span)),
            ("rate", ActionKind::Bandwidth, raw.rate.as_ref().map(Spanned::span)),
            ("delay", ActionKind::Delay, raw.delay.as_ref().map(Spanned::span)),
            ("jitter", ActionKind::Delay, raw.jitter.as_ref().map(Spanned::span)),
        ];
        for (name, owner, span) in params {
            if let Some(span) = span
                && kind != owner
            {
                let message = format!(
                    "only for action = \"{}\"; this fault's action is \"{}\"",
                    owner.name(),
                    kind.name()
                );
                return Err(self.err(span, name, message));
            }
        }
        let duration = self.duration(kind, action_at.clone(), raw.duration)?;
        let action = self.action(kind, action_at, raw.probability, raw.rate, raw.delay, raw.jitter)?;
        let (every, count) = self.repeats(duration, raw.every, raw.count)?;
        Ok(FaultSpec { at: raw.at.get_ref().0, action, target, duration, every, count, place })
    }

    /// A target in any of its forms, as the field `name` writes it; which forms the field
    /// accepts is the caller's business, and `rule` says so in messages.
    fn target(&self, raw: Spanned<RawTarget>, name: &str, rule: &str) -> Result<TargetSpec, SpecError> {
        let span = raw.span();
        match raw.into_inner() {
            RawTarget::Word(word) => {
                if let Some((_, target)) = KEYWORDS.iter().find(|(k, _)| *k == word) {
                    return Ok(target.clone());
                }
                self.node_name(word, span, name, rule).map(TargetSpec::Node)
            }
            RawTarget::Table { primary_of, replica_of } => match (primary_of, replica_of) {
                (Some(key), None) => {
                    let (key, slot) = self.key(key, &format!("{name}.primary-of"))?;
                    Ok(TargetSpec::PrimaryOf { key, slot })
                }
                (None, Some(key)) => {
                    let (key, slot) = self.key(key, &format!("{name}.replica-of"))?;
                    Ok(TargetSpec::ReplicaOf { key, slot })
                }
                (Some(_), Some(second)) => {
                    let message = "a target table has one of `primary-of` or `replica-of`, not both";
                    Err(self.err(second.span(), &format!("{name}.replica-of"), message))
                }
                (None, None) => Err(self.err(span, name, format_args!("an empty table; {rule}"))),
            },
        }
    }

    /// A word that is no target keyword: a node name, or an error at `span`.
    fn node_name(
        &self,
        word: String,
        span: Range<usize>,
        name: &str,
        rule: &str,
    ) -> Result<String, SpecError> {
        if word.starts_with("redis-") {
            if valid_node_name(&word) {
                return Ok(word);
            }
            let message = format!(
                "{word:?} is not a node name: nodes are called redis-1, redis-2, … (`redis-<n>`, n from 1, no leading zeros)"
            );
            return Err(self.err(span, name, message));
        }
        Err(self.err(span, name, format_args!("unknown target {word:?}; {rule}")))
    }

    /// A key naming a slot, and that slot.
    fn key(&self, key: Spanned<String>, name: &str) -> Result<(String, Slot), SpecError> {
        if key.get_ref().is_empty() {
            return Err(self.err(key.span(), name, "must be a key or a hash tag, e.g. \"{user:42}\""));
        }
        let slot = Slot::of(key.get_ref().as_bytes());
        Ok((key.into_inner(), slot))
    }

    /// `duration`: required and more than zero, except on `restart`, which has none.
    fn duration(
        &self,
        kind: ActionKind,
        action_at: Range<usize>,
        raw: Option<Spanned<RawDuration>>,
    ) -> Result<Option<Duration>, SpecError> {
        match (kind, raw) {
            (ActionKind::Restart, None) => Ok(None),
            (ActionKind::Restart, Some(d)) => {
                let message = "not with action = \"restart\": a restart stops and starts the node at once, and has nothing to heal; remove it, or use \"stop\" to keep the node down for a while";
                Err(self.err(d.span(), "duration", message))
            }
            (_, None) => {
                let message = format!(
                    "required with action = \"{}\": how long the fault lasts before it is healed, e.g. duration = \"10s\"",
                    kind.name()
                );
                Err(self.err(action_at, "duration", message))
            }
            (_, Some(d)) if d.get_ref().0.is_zero() => {
                Err(self.err(d.span(), "duration", "must be longer than 0s, e.g. \"10s\""))
            }
            (_, Some(d)) => Ok(Some(d.get_ref().0)),
        }
    }

    /// The action with its parameters; parameters of other actions are already refused.
    fn action(
        &self,
        kind: ActionKind,
        action_at: Range<usize>,
        probability: Option<Spanned<f64>>,
        rate: Option<Spanned<String>>,
        delay: Option<Spanned<RawDuration>>,
        jitter: Option<Spanned<RawDuration>>,
    ) -> Result<Action, SpecError> {
        let required = |name: &str, example: &str| {
            let message = format!("required with action = \"{}\": {example}", kind.name());
            self.err(action_at.clone(), name, message)
        };
        Ok(match kind {
            ActionKind::Kill => Action::Kill,
            ActionKind::Stop => Action::Stop,
            ActionKind::ShutdownFailover => Action::ShutdownFailover,
            ActionKind::Restart => Action::Restart,
            ActionKind::Pause => Action::Pause,
            ActionKind::Sigstop => Action::Sigstop,
            ActionKind::Isolate => Action::Isolate,
            ActionKind::Partition => Action::Partition,
            ActionKind::Loss => {
                let p = probability.ok_or_else(|| {
                    required("probability", "the share of packets dropped, e.g. probability = 0.1")
                })?;
                let value = *p.get_ref();
                if !(value > 0.0 && value <= 1.0) {
                    let message = "must be more than 0 and at most 1: the share of packets dropped (0.1 drops one in ten)";
                    return Err(self.err(p.span(), "probability", message));
                }
                Action::Loss { probability: value }
            }
            ActionKind::Bandwidth => {
                let rate =
                    rate.ok_or_else(|| required("rate", "the cap in tc's units, e.g. rate = \"1mbit\""))?;
                let bits_per_s =
                    parse_rate(rate.get_ref()).map_err(|message| self.err(rate.span(), "rate", message))?;
                Action::Bandwidth { bits_per_s }
            }
            ActionKind::Delay => {
                let d =
                    delay.ok_or_else(|| required("delay", "the added latency, e.g. delay = \"100ms\""))?;
                if d.get_ref().0.is_zero() {
                    return Err(self.err(d.span(), "delay", "must be longer than 0s, e.g. \"100ms\""));
                }
                Action::Delay {
                    delay: d.get_ref().0,
                    jitter: jitter.map_or(Duration::ZERO, |j| j.get_ref().0),
                }
            }
        })
    }

    /// `every` and `count`: a period needs a count of at least 2 and must be longer than the
    /// fault, a count above 1 needs a period.
    fn repeats(
        &self,
        duration: Option<Duration>,
        every: Option<Spanned<RawDuration>>,
        count: Option<Spanned<u32>>,
    ) -> Result<(Option<Duration>, u32), SpecError> {
        let Some(every) = every else {
            return match count {
                Some(c) if *c.get_ref() != 1 => {
                    let message = "only with `every`: without a period a fault happens once; add e.g. every = \"30s\", or remove it";
                    Err(self.err(c.span(), "count", message))
                }
                _ => Ok((None, 1)),
            };
        };
        let Some(count) = count else {
            let message = "required with `every`: the occurrences in all, the first included, e.g. count = 3";
            return Err(self.err(every.span(), "count", message));
        };
        let n = *count.get_ref();
        if !(2..=MAX_COUNT).contains(&n) {
            let message = format!(
                "must be between 2 and {MAX_COUNT} with `every` (it counts the first occurrence too)"
            );
            return Err(self.err(count.span(), "count", message));
        }
        let period = every.get_ref().0;
        match duration {
            Some(d) if period <= d => {
                let message = format!(
                    "must be longer than `duration` ({}): the repeats of one fault must not overlap",
                    format_duration(d)
                );
                Err(self.err(every.span(), "every", message))
            }
            None if period.is_zero() => Err(self.err(every.span(), "every", "must be longer than 0s")),
            _ => Ok((Some(period), n)),
        }
    }
}

/// `redis-<n>`, `n >= 1`, without leading zeros: the names slotstorm gives its nodes.
fn valid_node_name(name: &str) -> bool {
    name.strip_prefix("redis-").is_some_and(|n| {
        !n.is_empty()
            && !n.starts_with('0')
            && n.chars().all(|c| c.is_ascii_digit())
            && n.parse::<u32>().is_ok()
    })
}

/// A rate in tc's syntax (`"512kbit"`, `"1.5mbit"`, `"10mbps"`), in bits per second. A
/// unit is required: tc reads a bare number as bits per second, many other tools as bytes.
pub(super) fn parse_rate(text: &str) -> Result<u64, String> {
    let example = "e.g. \"512kbit\", \"1mbit\", \"10mbit\" or \"1gbit\" (tc's units; `bps`, `kbps`, `mbps` are bytes per second)";
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let Ok(number) = number.parse::<f64>() else {
        return Err(format!("{text:?} is not a rate: write a number and a unit, {example}"));
    };
    let unit = unit.trim().to_ascii_lowercase();
    if unit.is_empty() {
        return Err(format!("{text:?} has no unit: write one, {example}"));
    }
    let Some((_, factor)) = RATE_UNITS.iter().find(|(u, _)| *u == unit) else {
        return Err(format!("{text:?}: unknown unit `{unit}`; {example}"));
    };
    let bits = (number * factor).round();
    // The upper bound only keeps the conversion exact; no link is that fast.
    if !(bits >= MIN_RATE as f64 && bits < 1e18) {
        return Err(format!("{text:?} is out of range: the cap must be at least 8bit (one byte per second)"));
    }
    Ok(bits as u64)
}
