//! Stage 2 for the `[[op]]` tables: names, weights, exactly one body per op, command
//! templates compiled, script files read relative to the workload file.

use std::collections::HashMap;
use std::ops::Range;

use toml::Spanned;

use super::Resolver;
use crate::spec::error::SpecError;
use crate::spec::raw::{RawArg, RawArgs, RawOp};
use crate::spec::template::{ArgTemplate, CommandTemplate};
use crate::spec::{OpBody, OpSpec};

/// The most commands one op may send (a pipeline's commands × its batch).
const MAX_OP_COMMANDS: usize = 100_000;
/// The most `$value` bytes one op may send.
const MAX_OP_VALUE_BYTES: u64 = 64 * 1024 * 1024;

impl Resolver<'_> {
    /// The `[[op]]` tables, in file order: at least one, names unique.
    pub(super) fn ops(
        &self,
        raw: Option<Spanned<Vec<Spanned<RawOp>>>>,
        value_max: usize,
    ) -> Result<Vec<OpSpec>, SpecError> {
        let Some(raw) = raw else {
            let message = "a workload needs at least one [[op]] table, e.g. [[op]] name = \"get\" command = [\"GET\", \"key:$id\"]";
            return Err(self.err(0..0, "op", message));
        };
        if raw.get_ref().is_empty() {
            return Err(self.err(raw.span(), "op", "must list at least one op"));
        }
        let mut seen: HashMap<String, (usize, Range<usize>)> = HashMap::new();
        let mut ops = Vec::with_capacity(raw.get_ref().len());
        for (i, op) in raw.into_inner().into_iter().enumerate() {
            let name = &op.get_ref().name;
            if let Some((first, span)) = seen.get(name.get_ref()) {
                let message = format!(
                    "op names must be unique; op[{first}] at line {} is also called {:?}",
                    self.line(span.clone()),
                    name.get_ref()
                );
                return Err(self.err(name.span(), format_args!("op[{i}].name"), message));
            }
            seen.insert(name.get_ref().clone(), (i, name.span()));
            ops.push(self.op(i, op, value_max)?);
        }
        Ok(ops)
    }

    fn op(&self, i: usize, raw: Spanned<RawOp>, value_max: usize) -> Result<OpSpec, SpecError> {
        let at = raw.span();
        let raw = raw.into_inner();
        let field = |name: &str| format!("op[{i}].{name}");
        if !valid_op_name(raw.name.get_ref()) {
            let message = "must be 1 to 64 of `a-z`, `0-9`, `_` and `-` (it names the op's histogram)";
            return Err(self.err(raw.name.span(), field("name"), message));
        }
        let weight = match &raw.weight {
            Some(w) => self.ranged(w, &field("weight"), 1, 1_000_000)? as u32,
            None => 1,
        };
        let mut bodies: Vec<(&str, Range<usize>)> = [
            ("command", raw.command.as_ref().map(Spanned::span)),
            ("pipeline", raw.pipeline.as_ref().map(Spanned::span)),
            ("script", raw.script.as_ref().map(Spanned::span)),
        ]
        .into_iter()
        .filter_map(|(name, span)| Some((name, span?)))
        .collect();
        bodies.sort_by_key(|(_, span)| span.start);
        match bodies.as_slice() {
            [] => {
                let message = "needs one of `command`, `pipeline` or `script`";
                return Err(self.err(at, format_args!("op[{i}]"), message));
            }
            [_] => {}
            [(first, first_span), (second, span), ..] => {
                let message = format!(
                    "an op has exactly one of `command`, `pipeline` or `script`; this one also has `{first}` (line {})",
                    self.line(first_span.clone())
                );
                return Err(self.err(span.clone(), field(second), message));
            }
        }
        if let (None, Some(batch)) = (&raw.pipeline, &raw.batch) {
            let message = "only with `pipeline`: it repeats the pipeline's commands for that many ids";
            return Err(self.err(batch.span(), field("batch"), message));
        }
        if raw.script.is_none() {
            for (name, list) in [("keys", &raw.keys), ("args", &raw.args)] {
                if let Some(list) = list {
                    let message = "only with `script`; a command's key is its argument 1";
                    return Err(self.err(list.span(), field(name), message));
                }
            }
        }
        let body = if let Some(command) = &raw.command {
            OpBody::Command(self.command(&field("command"), command)?)
        } else if let Some(pipeline) = &raw.pipeline {
            if pipeline.get_ref().is_empty() {
                let message = "must list at least one command, e.g. [[\"GET\", \"key:$id\"]]";
                return Err(self.err(pipeline.span(), field("pipeline"), message));
            }
            let commands = pipeline
                .get_ref()
                .iter()
                .enumerate()
                .map(|(j, c)| self.command(&format!("op[{i}].pipeline[{j}]"), c))
                .collect::<Result<Vec<_>, _>>()?;
            let batch = match &raw.batch {
                Some(b) => self.ranged(b, &field("batch"), 1, 10_000)? as usize,
                None => 1,
            };
            OpBody::Pipeline { commands, batch }
        } else {
            let script = raw.script.as_ref().expect("one body is present");
            self.script(i, script, raw.keys.as_ref(), raw.args.as_ref())?
        };
        self.op_size(i, &raw, &body, value_max)?;
        Ok(OpSpec { name: raw.name.into_inner(), weight, body })
    }

    /// Refuse an op whose one request could not be held: more than [`MAX_OP_COMMANDS`]
    /// commands, or more than [`MAX_OP_VALUE_BYTES`] of `$value`s at `keys.value_size`'s
    /// largest. Each op in flight holds its request, and Redis caps a client's query buffer.
    fn op_size(&self, i: usize, raw: &RawOp, body: &OpBody, value_max: usize) -> Result<(), SpecError> {
        let values = |args: &[ArgTemplate]| args.iter().filter(|a| a.uses_value()).count();
        let (commands, per_repeat, repeats, field, span) = match body {
            OpBody::Command(c) => {
                (1, values(c.args()), 1, "command", raw.command.as_ref().map(Spanned::span))
            }
            OpBody::Pipeline { commands, batch } => {
                let per = commands.iter().map(|c| values(c.args())).sum();
                let (field, span) = match &raw.batch {
                    Some(b) => ("batch", Some(b.span())),
                    None => ("pipeline", raw.pipeline.as_ref().map(Spanned::span)),
                };
                (commands.len() * batch, per, *batch, field, span)
            }
            OpBody::Script { keys, args, .. } => (
                1,
                values(keys) + values(args),
                1,
                "args",
                raw.args.as_ref().or(raw.keys.as_ref()).map(Spanned::span),
            ),
        };
        let span = span.unwrap_or(0..0);
        if commands > MAX_OP_COMMANDS {
            let message = format!(
                "{commands} commands in one op ({} × batch {repeats}); at most {MAX_OP_COMMANDS}: lower `batch`",
                commands / repeats
            );
            return Err(self.err(span, format_args!("op[{i}].{field}"), message));
        }
        let bytes = (per_repeat * repeats) as u64 * value_max as u64;
        if bytes > MAX_OP_VALUE_BYTES {
            let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
            let message = format!(
                "{} `$value`s of up to {:.1} MiB (keys.value_size) make {:.0} MiB in one op; at most {:.0} MiB, since every op in flight holds its request: lower {} or keys.value_size",
                per_repeat * repeats,
                mib(value_max as u64),
                mib(bytes),
                mib(MAX_OP_VALUE_BYTES),
                if repeats > 1 { "`batch`" } else { "the `$value`s" }
            );
            return Err(self.err(span, format_args!("op[{i}].{field}"), message));
        }
        Ok(())
    }

    fn script(
        &self,
        i: usize,
        script: &Spanned<String>,
        keys: Option<&RawArgs>,
        args: Option<&RawArgs>,
    ) -> Result<OpBody, SpecError> {
        let path = self.dir.join(script.get_ref());
        // A script that is not UTF-8 is the script file's mistake, placed there; one that
        // cannot be read at all is the `script` field's.
        let source = crate::spec::error::read_text(&path).map_err(|e| match e {
            SpecError::Read { source, .. } => {
                let message = format!(
                    "cannot read {}: {source}; the path is relative to the workload file's folder",
                    path.display()
                );
                self.err(script.span(), format_args!("op[{i}].script"), message)
            }
            invalid @ SpecError::Invalid { .. } => invalid,
        })?;
        if source.trim().is_empty() {
            let message = format!("{} is empty", path.display());
            return Err(self.err(script.span(), format_args!("op[{i}].script"), message));
        }
        let Some(keys) = keys else {
            let message = "required with `script`: the keys it touches, e.g. keys = [\"{ratelimit:$id}:sliding\"]; keys[0] routes the script";
            return Err(self.err(script.span(), format_args!("op[{i}].keys"), message));
        };
        if keys.get_ref().is_empty() {
            let message = "must list at least one key: keys[0] routes the script to its slot";
            return Err(self.err(keys.span(), format_args!("op[{i}].keys"), message));
        }
        let named: Vec<_> =
            keys.get_ref().iter().enumerate().map(|(k, key)| (format!("op[{i}].keys[{k}]"), key)).collect();
        self.same_slot(&named, "a script")?;
        let keys = self.args(&format!("op[{i}].keys"), keys.get_ref())?;
        let args = match args {
            Some(args) => self.args(&format!("op[{i}].args"), args.get_ref())?,
            None => Vec::new(),
        };
        Ok(OpBody::Script { path, source, keys, args })
    }

    /// Keys that one command or script sends together must share a slot for every id, or
    /// Redis Cluster refuses them (CROSSSLOT): they route by the same hash tag (or the same
    /// whole key), as written; keys without placeholders may also route by different text to
    /// the same slot. `keys` are the keys with their fields; `what` names what sends them.
    fn same_slot(&self, keys: &[(String, &Spanned<RawArg>)], what: &str) -> Result<(), SpecError> {
        use crate::cluster::slot::{Slot, hash_tag};
        let Some(((first_field, first), rest)) = keys.split_first() else { return Ok(()) };
        let routing = |k: &Spanned<RawArg>| hash_tag(k.get_ref().0.as_bytes()).to_vec();
        let literal = |k: &Spanned<RawArg>| !k.get_ref().0.contains('$');
        for (field, key) in rest {
            let same = routing(key) == routing(first)
                || (literal(key)
                    && literal(first)
                    && Slot::of(key.get_ref().0.as_bytes()) == Slot::of(first.get_ref().0.as_bytes()));
            if !same {
                let shorten = super::super::error::shorten;
                let shown = |k: &Spanned<RawArg>| shorten(&k.get_ref().0);
                let routed = |k: &Spanned<RawArg>| shorten(&String::from_utf8_lossy(&routing(k)));
                let first_name = first_field.rsplit('.').next().unwrap_or(first_field);
                let message = format!(
                    "\"{}\" routes by \"{}\" but {first_name} \"{}\" by \"{}\": Redis Cluster refuses {what} whose keys lie in different slots (CROSSSLOT); give them one hash tag, e.g. \"{{user:$id}}:a\" and \"{{user:$id}}:b\"",
                    shown(key),
                    routed(key),
                    shown(first),
                    routed(first),
                );
                return Err(self.err(key.span(), field, message));
            }
        }
        Ok(())
    }

    /// A command: the name first, then the arguments, argument 1 being the key.
    fn command(
        &self,
        field: &str,
        raw: &Spanned<Vec<Spanned<RawArg>>>,
    ) -> Result<CommandTemplate, SpecError> {
        let Some((name, rest)) = raw.get_ref().split_first() else {
            let message = "must name a command and its key, e.g. [\"GET\", \"key:$id\"]";
            return Err(self.err(raw.span(), field, message));
        };
        let mut args = Vec::with_capacity(rest.len());
        for (k, arg) in rest.iter().enumerate() {
            args.push(self.arg(&format!("{field}[{}]", k + 1), arg)?);
        }
        let command = CommandTemplate::new(&name.get_ref().0, args)
            .map_err(|message| self.err(name.span(), format_args!("{field}[0]"), message))?;
        let keys: Vec<_> = crate::spec::template::key_positions(command.name(), rest.len())
            .into_iter()
            .map(|k| (format!("{field}[{}]", k + 1), &rest[k]))
            .collect();
        self.same_slot(&keys, &format!("`{}`", command.name()))?;
        Ok(command)
    }

    fn args(&self, field: &str, raw: &[Spanned<RawArg>]) -> Result<Vec<ArgTemplate>, SpecError> {
        raw.iter().enumerate().map(|(k, arg)| self.arg(&format!("{field}[{k}]"), arg)).collect()
    }

    /// One argument, its placeholder errors placed at the offending `$` when the string is
    /// written without escapes (else at the string's start).
    fn arg(&self, field: &str, raw: &Spanned<RawArg>) -> Result<ArgTemplate, SpecError> {
        let value = &raw.get_ref().0;
        ArgTemplate::parse(value).map_err(|e| {
            let span = raw.span();
            let quoted = self.src.text.get(span.clone()).filter(|s| s.len() >= 2);
            let start = match quoted.and_then(|s| s.get(1..s.len() - 1)) {
                Some(inside) if inside == value => span.start + 1 + e.offset,
                _ => span.start,
            };
            self.err(start..start, field, e.message)
        })
    }
}

/// An op name: it names a histogram and columns in reports.
fn valid_op_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
}
