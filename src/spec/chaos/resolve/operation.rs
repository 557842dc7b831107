//! Stage 2 for `[[operation]]` tables: which options each action takes, the shape of its
//! targets (a failover starts on a replica, slots move between primaries, a removed node is
//! named), slot selections in bounds, and what can be known before the run: a reshard onto
//! its own source, a `remove-node` of the newest node before any `add-node`.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::Entry;
use crate::cluster::slot::{SLOT_COUNT, Slot};
use crate::spec::chaos::raw::{OperationKind, RawFailoverMode, RawMethod, RawOperation, RawRole, RawTarget};
use crate::spec::chaos::{
    FailoverMode, Migration, MigrationMethod, NewNodeRole, NodeRef, Operation, OperationSpec, SlotSelection,
    TargetSpec,
};
use crate::spec::error::{Source, SpecError};
use crate::spec::raw::RawDuration;

/// What a failover's target may be, for messages.
const REPLICA_RULE: &str = "a failover starts on a replica, which takes over from its primary: a node name (\"redis-4\"), \"random-replica\" or { replica-of = \"<key>\" }";

/// What `from`, `to` and `replica-of` may be, for messages.
const PRIMARY_RULE: &str =
    "a primary is a node name (\"redis-1\"), \"random-primary\" or { primary-of = \"<key>\" }";

/// What a removed node may be, for messages.
const REMOVE_RULE: &str = "remove-node takes a node by name (\"redis-7\") or \"newest\" (the node the latest add-node added); a node to remove is named, never drawn";

/// The actions that move slots, and so take the migration options.
const MIGRATING: [OperationKind; 3] =
    [OperationKind::Reshard, OperationKind::Rebalance, OperationKind::RemoveNode];

/// An option as written: its name, the actions that take it, and its span when given.
type Owned<'a> = (&'a str, &'a [OperationKind], Option<Range<usize>>);

/// Resolve the `[[operation]]` tables, in file order.
pub(super) fn resolve_all(src: &Source, raws: Vec<RawOperation>) -> Result<Vec<OperationSpec>, SpecError> {
    // `remove-node` of "newest" needs an `add-node` before it in the schedule, wherever that
    // stands in the file.
    let add_nodes: Vec<(Duration, usize)> = raws
        .iter()
        .enumerate()
        .filter(|(_, r)| *r.action.get_ref() == OperationKind::AddNode)
        .map(|(i, r)| (r.at.get_ref().0, i))
        .collect();
    raws.into_iter()
        .enumerate()
        .map(|(i, raw)| Entry { src, table: "operation", i }.operation(raw, &add_nodes))
        .collect()
}

impl Entry<'_> {
    fn operation(
        &self,
        raw: RawOperation,
        add_nodes: &[(Duration, usize)],
    ) -> Result<OperationSpec, SpecError> {
        let kind = *raw.action.get_ref();
        let action_at = raw.action.span();
        let at = raw.at.get_ref().0;
        let named =
            [("target", &raw.target), ("from", &raw.from), ("to", &raw.to), ("replica-of", &raw.replica_of)];
        let mut place = crate::spec::chaos::Place {
            table: format!("{}[{}]", self.table, self.i),
            at: raw.at.span(),
            fields: named.iter().filter_map(|(n, t)| Some((*n, t.as_ref()?.span()))).collect(),
        };
        place.fields.extend(raw.method.as_ref().map(|m| ("method", m.span())));
        self.forbidden(&raw)?;
        self.foreign_options(kind, &raw)?;
        let required = |name: &str, example: &str| {
            let message = format!("required with action = \"{}\": {example}", kind.name());
            self.err(action_at.clone(), name, message)
        };
        let operation = match kind {
            OperationKind::Failover => {
                let target = raw.target.ok_or_else(|| {
                    required(
                        "target",
                        "the replica that takes over, e.g. target = { replica-of = \"{user:42}\" }",
                    )
                })?;
                let mode = match raw.mode.map(|m| *m.get_ref()) {
                    None | Some(RawFailoverMode::Default) => FailoverMode::Default,
                    Some(RawFailoverMode::Force) => FailoverMode::Force,
                    Some(RawFailoverMode::Takeover) => FailoverMode::Takeover,
                };
                Operation::Failover { target: self.replica(target)?, mode }
            }
            OperationKind::Reshard => {
                let from = raw.from.ok_or_else(|| {
                    required(
                        "from",
                        "the primary the slots leave, e.g. from = { primary-of = \"{user:42}\" }",
                    )
                })?;
                let to = raw.to.ok_or_else(|| {
                    required("to", "the primary the slots go to, e.g. to = \"random-primary\"")
                })?;
                let from = self.primary(from, "from")?;
                let to_span = to.span();
                let to = self.primary(to, "to")?;
                self.distinct(&from, &to, to_span)?;
                let slots = self.selection(action_at.clone(), raw.slots, raw.range, raw.key)?;
                let options = [
                    ("keys_per_batch", raw.keys_per_batch.as_ref().map(Spanned::span)),
                    ("pipeline", raw.pipeline.as_ref().map(Spanned::span)),
                    ("timeout", raw.timeout.as_ref().map(Spanned::span)),
                ];
                let mut migration = self.migration(raw.keys_per_batch, raw.pipeline, raw.timeout)?;
                if raw.method.as_ref().is_some_and(|m| *m.get_ref() == RawMethod::Atomic) {
                    // The nodes move the slots themselves: nothing of slotstorm's key-by-key
                    // loop applies.
                    if let Some((name, Some(span))) = options.into_iter().find(|(_, s)| s.is_some()) {
                        let message = "only with method = \"keys\": an atomic migration is run by the nodes (CLUSTER MIGRATESLOTS), not key by key";
                        return Err(self.err(span, name, message));
                    }
                    migration.method = MigrationMethod::Atomic;
                }
                Operation::Reshard { from, to, slots, migration }
            }
            OperationKind::AddNode => {
                let role = match (raw.role.map(|r| (*r.get_ref(), r.span())), raw.replica_of) {
                    (None | Some((RawRole::Primary, _)), None) => NewNodeRole::Primary,
                    (Some((RawRole::Replica, span)), None) => {
                        let message = "with role = \"replica\", `replica-of` names the primary the new node replicates, e.g. replica-of = { primary-of = \"{user:42}\" }";
                        return Err(self.err(span, "role", message));
                    }
                    (Some((RawRole::Primary, _)), Some(of)) => {
                        let message = "not with role = \"primary\": a new primary replicates nobody; remove it, or write role = \"replica\"";
                        return Err(self.err(of.span(), "replica-of", message));
                    }
                    (None | Some((RawRole::Replica, _)), Some(of)) => {
                        NewNodeRole::Replica { of: self.primary(of, "replica-of")? }
                    }
                };
                Operation::AddNode { role }
            }
            OperationKind::Rebalance => Operation::Rebalance {
                use_empty_primaries: raw.use_empty_primaries.is_none_or(|u| *u.get_ref()),
                migration: self.migration(raw.keys_per_batch, raw.pipeline, raw.timeout)?,
            },
            OperationKind::RemoveNode => {
                let target = raw
                    .target
                    .ok_or_else(|| required("target", "the node that leaves, e.g. target = \"newest\""))?;
                let target = self.removed(target, at, add_nodes)?;
                let drain = match raw.drain {
                    Some(d) if *d.get_ref() => {
                        Some(self.migration(raw.keys_per_batch, raw.pipeline, raw.timeout)?)
                    }
                    _ => {
                        let options = [
                            ("keys_per_batch", raw.keys_per_batch.map(|s| s.span())),
                            ("pipeline", raw.pipeline.map(|s| s.span())),
                            ("timeout", raw.timeout.map(|s| s.span())),
                        ];
                        if let Some((name, Some(span))) = options.into_iter().find(|(_, s)| s.is_some()) {
                            let message = "only with drain = true: without it remove-node moves no slots (the node must hold none)";
                            return Err(self.err(span, name, message));
                        }
                        None
                    }
                };
                Operation::RemoveNode { target, drain }
            }
        };
        Ok(OperationSpec { at, operation, place })
    }

    /// Fields no operation takes, each refused with its reason.
    fn forbidden(&self, raw: &RawOperation) -> Result<(), SpecError> {
        if let Some(name) = &raw.name {
            let message = "not allowed: slotstorm names the nodes add-node adds (the next redis-<n>); remove-node finds the latest as target = \"newest\"";
            return Err(self.err(name.span(), "name", message));
        }
        if let Some(d) = &raw.duration {
            let message =
                "not for an operation: it runs until it is done, and has nothing to heal; remove it";
            return Err(self.err(d.span(), "duration", message));
        }
        let repeat = [("every", &raw.every), ("count", &raw.count)];
        if let Some((name, Some(field))) = repeat.into_iter().find(|(_, f)| f.is_some()) {
            let message =
                "not for an operation: an operation happens once; write one [[operation]] per occurrence";
            return Err(self.err(field.span(), name, message));
        }
        Ok(())
    }

    /// Options of other actions are errors rather than ignored: the file expects an effect
    /// slotstorm would not have.
    fn foreign_options(&self, kind: OperationKind, raw: &RawOperation) -> Result<(), SpecError> {
        use OperationKind::{AddNode, Failover, Rebalance, RemoveNode, Reshard};
        let options: [Owned; 15] = [
            ("target", &[Failover, RemoveNode], raw.target.as_ref().map(Spanned::span)),
            ("mode", &[Failover], raw.mode.as_ref().map(Spanned::span)),
            ("from", &[Reshard], raw.from.as_ref().map(Spanned::span)),
            ("to", &[Reshard], raw.to.as_ref().map(Spanned::span)),
            ("slots", &[Reshard], raw.slots.as_ref().map(Spanned::span)),
            ("range", &[Reshard], raw.range.as_ref().map(Spanned::span)),
            ("key", &[Reshard], raw.key.as_ref().map(Spanned::span)),
            ("method", &[Reshard], raw.method.as_ref().map(Spanned::span)),
            ("keys_per_batch", &MIGRATING, raw.keys_per_batch.as_ref().map(Spanned::span)),
            ("pipeline", &MIGRATING, raw.pipeline.as_ref().map(Spanned::span)),
            ("timeout", &MIGRATING, raw.timeout.as_ref().map(Spanned::span)),
            ("role", &[AddNode], raw.role.as_ref().map(Spanned::span)),
            ("replica-of", &[AddNode], raw.replica_of.as_ref().map(Spanned::span)),
            ("use_empty_primaries", &[Rebalance], raw.use_empty_primaries.as_ref().map(Spanned::span)),
            ("drain", &[RemoveNode], raw.drain.as_ref().map(Spanned::span)),
        ];
        for (name, owners, span) in options {
            if let Some(span) = span
                && !owners.contains(&kind)
            {
                let owners: Vec<String> = owners.iter().map(|o| format!("\"{}\"", o.name())).collect();
                let mut message = format!(
                    "only for action = {}; this operation's action is \"{}\"",
                    owners.join(" or "),
                    kind.name()
                );
                if name == "target" {
                    message.push_str(match kind {
                        Reshard => ": a reshard moves slots `from` one primary `to` another",
                        Rebalance => ": a rebalance evens out the slots over every primary",
                        _ => ": add-node adds a new node (see `role` and `replica-of`)",
                    });
                }
                return Err(self.err(span, name, message));
            }
        }
        Ok(())
    }

    /// A failover's target: a node name, `random-replica` or `{ replica-of = … }`.
    fn replica(&self, raw: Spanned<RawTarget>) -> Result<TargetSpec, SpecError> {
        let span = raw.span();
        let target = self.target(raw, "target", REPLICA_RULE)?;
        let instead = match &target {
            TargetSpec::Node(_) | TargetSpec::RandomReplica | TargetSpec::ReplicaOf { .. } => {
                return Ok(target);
            }
            TargetSpec::RandomPrimary => "; write \"random-replica\"".to_string(),
            TargetSpec::PrimaryOf { key, .. } => format!("; write {{ replica-of = {key:?} }}"),
            TargetSpec::MinorityOfPrimaries | TargetSpec::AllPrimaries => String::new(),
        };
        let message = format!("`{target}` is not one replica; {REPLICA_RULE}{instead}");
        Err(self.err(span, "target", message))
    }

    /// `from`, `to` or `replica-of`: a node name, `random-primary` or `{ primary-of = … }`.
    fn primary(&self, raw: Spanned<RawTarget>, name: &str) -> Result<TargetSpec, SpecError> {
        let span = raw.span();
        let target = self.target(raw, name, PRIMARY_RULE)?;
        let instead = match &target {
            TargetSpec::Node(_) | TargetSpec::RandomPrimary | TargetSpec::PrimaryOf { .. } => {
                return Ok(target);
            }
            TargetSpec::RandomReplica => "; write \"random-primary\"".to_string(),
            TargetSpec::ReplicaOf { key, .. } => format!("; write {{ primary-of = {key:?} }}"),
            TargetSpec::MinorityOfPrimaries | TargetSpec::AllPrimaries => String::new(),
        };
        let message = format!("`{name}` is one primary, and `{target}` is not; {PRIMARY_RULE}{instead}");
        Err(self.err(span, name, message))
    }

    /// A reshard's `to` must not be its `from`, as far as the file can tell: the same name,
    /// or keys in the same slot.
    fn distinct(&self, from: &TargetSpec, to: &TargetSpec, to_span: Range<usize>) -> Result<(), SpecError> {
        let message = match (from, to) {
            (TargetSpec::Node(a), TargetSpec::Node(b)) if a == b => {
                format!("{b} is `from` as well: a reshard moves slots between two different primaries")
            }
            (TargetSpec::PrimaryOf { key: a, slot: s }, TargetSpec::PrimaryOf { key: b, slot: t })
                if s == t =>
            {
                format!(
                    "{b:?} is in slot {t}, as `from`'s {a:?}: both name the same primary, and a reshard moves slots between two different primaries"
                )
            }
            _ => return Ok(()),
        };
        Err(self.err(to_span, "to", message))
    }

    /// Exactly one of `slots`, `range` and `key`.
    fn selection(
        &self,
        action_at: Range<usize>,
        slots: Option<Spanned<u64>>,
        range: Option<Spanned<Vec<Spanned<u64>>>>,
        key: Option<Spanned<String>>,
    ) -> Result<SlotSelection, SpecError> {
        let mut given: Vec<(&str, Range<usize>)> = [
            ("slots", slots.as_ref().map(Spanned::span)),
            ("range", range.as_ref().map(Spanned::span)),
            ("key", key.as_ref().map(Spanned::span)),
        ]
        .into_iter()
        .filter_map(|(name, span)| Some((name, span?)))
        .collect();
        // The error goes to the one written second: the first is taken as meant.
        given.sort_by_key(|(_, span)| span.start);
        if let [(first, _), (second, span), ..] = given.as_slice() {
            let message = format!(
                "a reshard takes one of `slots`, `range` or `key`, and this one has `{first}` as well: remove one"
            );
            return Err(self.err(span.clone(), second, message));
        }
        if let Some(n) = slots {
            let count = *n.get_ref();
            if !(1..=u64::from(SLOT_COUNT)).contains(&count) {
                let message = format!("must be between 1 and {SLOT_COUNT}: the number of slots that move");
                return Err(self.err(n.span(), "slots", message));
            }
            return Ok(SlotSelection::Count(count as u16));
        }
        if let Some(range) = range {
            let span = range.span();
            let [first, last] = range.into_inner().try_into().map_err(|_| {
                self.err(span.clone(), "range", "must be two slots, [first, last], e.g. range = [0, 999]")
            })?;
            let slot = |s: Spanned<u64>| {
                u16::try_from(*s.get_ref()).ok().and_then(Slot::new).ok_or_else(|| {
                    let message =
                        format!("slot {} does not exist: slots are 0 to {}", s.get_ref(), SLOT_COUNT - 1);
                    self.err(s.span(), "range", message)
                })
            };
            let (first, last) = (slot(first)?, slot(last)?);
            if first > last {
                let message = format!(
                    "the first slot ({first}) comes after the last ({last}): write [{last}, {first}]"
                );
                return Err(self.err(span, "range", message));
            }
            return Ok(SlotSelection::Range { first, last });
        }
        if let Some(key) = key {
            let (key, slot) = self.key(key, "key")?;
            return Ok(SlotSelection::Key { key, slot });
        }
        let message = "required with action = \"reshard\": which slots move, one of slots = 1000, range = [0, 999] or key = \"{user:42}\"";
        Err(self.err(action_at, "slots", message))
    }

    /// The migration options, defaulted.
    fn migration(
        &self,
        keys_per_batch: Option<Spanned<u32>>,
        pipeline: Option<Spanned<u32>>,
        timeout: Option<Spanned<RawDuration>>,
    ) -> Result<Migration, SpecError> {
        let default = Migration::default();
        // One MIGRATE carries at most 100,000 keys; at most 1,024 slots move at once (each
        // with a connection pair of its own).
        let bounded = |value: Option<Spanned<u32>>, name: &str, max: u32, fallback: u32| match value {
            Some(v) if !(1..=max).contains(v.get_ref()) => {
                Err(self.err(v.span(), name, format!("must be between 1 and {max}, not {}", v.get_ref())))
            }
            Some(v) => Ok(*v.get_ref()),
            None => Ok(fallback),
        };
        let keys_per_batch = bounded(keys_per_batch, "keys_per_batch", 100_000, default.keys_per_batch)?;
        let pipeline = bounded(pipeline, "pipeline", 1_024, default.pipeline)?;
        let timeout = match timeout {
            Some(t) if t.get_ref().0.is_zero() => {
                return Err(self.err(t.span(), "timeout", "must be longer than 0s, e.g. \"5s\""));
            }
            Some(t) => t.get_ref().0,
            None => default.timeout,
        };
        Ok(Migration { method: MigrationMethod::Keys, keys_per_batch, pipeline, timeout })
    }

    /// A removed node: a name, or `newest` when an `add-node` starts before this operation.
    fn removed(
        &self,
        raw: Spanned<RawTarget>,
        at: Duration,
        add_nodes: &[(Duration, usize)],
    ) -> Result<NodeRef, SpecError> {
        let span = raw.span();
        let word = match raw.into_inner() {
            RawTarget::Word(word) => word,
            RawTarget::Table { .. } => return Err(self.err(span, "target", REMOVE_RULE)),
        };
        if word == "newest" {
            if !add_nodes.iter().any(|&added| added < (at, self.i)) {
                let message = "\"newest\" is the node the latest add-node added, and no add-node starts before this operation: add one, or name the node";
                return Err(self.err(span, "target", message));
            }
            return Ok(NodeRef::Newest);
        }
        if word.starts_with("redis-") {
            return self.node_name(word, span, "target", REMOVE_RULE).map(NodeRef::Name);
        }
        Err(self.err(span, "target", format_args!("{word:?} cannot be removed; {REMOVE_RULE}")))
    }
}
