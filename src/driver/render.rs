//! From workload ops to commands on the wire: pick an op by weight, fill its templates
//! (`$id`, `$value`, `$now`, …) and note each command's slot from its key (argument 1, or a
//! script's first key).
//!
//! Rendering is on the hot path of every op, so a worker renders into one [`Rendered`] it
//! keeps for the whole run: each op clears and refills the same [`Cmd`] buffers instead of
//! allocating a command (and growing its buffers argument by argument) per command.

use std::time::SystemTime;

use redis::Cmd;

use super::exec::{Routed, ScriptSource};
use super::keys::KeyChooser;
use crate::cluster::slot::Slot;
use crate::history::OpKind;
use crate::spec::{ArgTemplate, CommandTemplate, OpBody, OpSpec, Part, RenderCtx};

/// One op, ready to render.
struct RenderOp {
    name: String,
    body: Body,
}

enum Body {
    /// Commands (one, or a per-id pipeline repeated `batch` times with different ids).
    Commands { templates: Vec<CommandTemplate>, batch: usize },
    /// `EVALSHA sha numkeys keys… args…`.
    Script { sha: String, source: ScriptSource, keys: Vec<ArgTemplate>, args: Vec<ArgTemplate> },
}

/// A rendered op.
#[derive(Default)]
pub struct Rendered {
    /// Its commands with their slots, in order.
    pub cmds: Vec<Routed>,
    /// The first id it addressed.
    pub id: u64,
}

/// A worker's reusable buffers.
#[derive(Default)]
pub struct Scratch {
    arg: Vec<u8>,
    value: Vec<u8>,
    /// Commands of earlier ops, cleared and refilled by the next ones: their buffers have
    /// already grown to the sizes the workload's commands need.
    spare: Vec<Routed>,
}

/// Argument `arg` filled from `ctx`. Literal arguments and a bare `$value` (most of a
/// workload's arguments besides keys) are used as they are; any other is rendered into
/// `buf`, so only those are copied twice.
fn fill<'a>(arg: &'a ArgTemplate, ctx: &RenderCtx<'a>, buf: &'a mut Vec<u8>) -> &'a [u8] {
    if let Some(literal) = arg.as_literal() {
        return literal;
    }
    if arg.parts() == [Part::Value] {
        return ctx.value;
    }
    buf.clear();
    arg.render_into(ctx, buf);
    buf
}

/// A command to fill: a spare one with its buffers (cleared), or a new one.
fn reuse(spare: &mut Vec<Routed>) -> Cmd {
    match spare.pop() {
        Some(Routed { mut cmd, .. }) => {
            cmd.clear();
            cmd
        }
        None => Cmd::new(),
    }
}

/// The workload's ops, with their weights.
pub struct Renderer {
    ops: Vec<RenderOp>,
    /// Running sum of weights: op `i` is picked for draws below `cumulative[i]`.
    cumulative: Vec<u32>,
}

impl Renderer {
    /// Prepare `ops` (as resolved from the workload file).
    pub fn new(ops: &[OpSpec]) -> Renderer {
        let mut cumulative = Vec::with_capacity(ops.len());
        let mut total = 0u32;
        let ops = ops
            .iter()
            .map(|op| {
                total += op.weight;
                cumulative.push(total);
                let body = match &op.body {
                    OpBody::Command(c) => Body::Commands { templates: vec![c.clone()], batch: 1 },
                    OpBody::Pipeline { commands, batch } => {
                        Body::Commands { templates: commands.clone(), batch: (*batch).max(1) }
                    }
                    OpBody::Script { source, keys, args, .. } => Body::Script {
                        sha: sha1_hex(source.as_bytes()),
                        source: ScriptSource { source: source.clone() },
                        keys: keys.clone(),
                        args: args.clone(),
                    },
                };
                RenderOp { name: op.name.clone(), body }
            })
            .collect();
        Renderer { ops, cumulative }
    }

    /// Number of op kinds.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when there are no ops (a resolved workload always has one).
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The op names, indexed by [`OpKind`].
    pub fn names(&self) -> Vec<String> {
        self.ops.iter().map(|o| o.name.clone()).collect()
    }

    /// Sum of the weights.
    pub fn total_weight(&self) -> u32 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// The op a uniform draw `r` in `0..total_weight()` picks.
    pub fn pick(&self, r: u32) -> OpKind {
        OpKind(self.cumulative.partition_point(|&c| c <= r) as u16)
    }

    /// The rate-limiter ops: scripts called, like the seed's sliding-window limiter, with
    /// `ARGV = [limit, window seconds, $now]` (literal limit and window), whose reply 1
    /// means admitted. Returns each with its limit and window.
    pub fn limiter_ops(&self) -> Vec<(OpKind, String, u64, std::time::Duration)> {
        let number = |a: &ArgTemplate| std::str::from_utf8(a.as_literal()?).ok()?.trim().parse::<f64>().ok();
        self.ops
            .iter()
            .enumerate()
            .filter_map(|(i, op)| match &op.body {
                Body::Script { args, .. } if args.len() == 3 && args[2].parts() == [Part::Now] => {
                    let limit = number(&args[0]).filter(|l| *l >= 0.0 && l.fract() == 0.0)? as u64;
                    let window = number(&args[1]).filter(|w| *w > 0.0 && w.is_finite())?;
                    Some((
                        OpKind(i as u16),
                        op.name.clone(),
                        limit,
                        std::time::Duration::from_secs_f64(window),
                    ))
                }
                _ => None,
            })
            .collect()
    }

    /// The set-full ops: those whose one command is `SADD <key> $uid`. Each add writes a
    /// run-unique id, so the sets can be read back after the run to find lost writes.
    pub fn set_full_ops(&self) -> Vec<(OpKind, String)> {
        self.ops
            .iter()
            .enumerate()
            .filter(|(_, op)| self.set_full_key(op).is_some())
            .map(|(i, op)| (OpKind(i as u16), op.name.clone()))
            .collect()
    }

    fn set_full_key<'a>(&self, op: &'a RenderOp) -> Option<&'a ArgTemplate> {
        match &op.body {
            Body::Commands { templates, batch: 1 } if templates.len() == 1 => {
                let t = &templates[0];
                let args = t.args();
                (t.name() == "SADD" && args.len() == 2 && args[1].parts() == [Part::Uid]).then(|| &args[0])
            }
            _ => None,
        }
    }

    /// The key set-full op `kind` writes for `id`, or `None` if `kind` is not set-full.
    pub fn set_full_key_for(&self, kind: OpKind, id: u64) -> Option<Vec<u8>> {
        let key = self.set_full_key(&self.ops[usize::from(kind.0)])?;
        let ctx = RenderCtx { id, value: &[], now: std::time::Duration::ZERO, uid: 0 };
        Some(key.render(&ctx))
    }

    /// The script op `kind` runs, if it runs one.
    pub fn script(&self, kind: OpKind) -> Option<&ScriptSource> {
        match &self.ops[usize::from(kind.0)].body {
            Body::Script { source, .. } => Some(source),
            Body::Commands { .. } => None,
        }
    }

    /// Fill op `kind`'s templates with fresh ids and values, into a new [`Rendered`].
    pub fn render(&self, kind: OpKind, keys: &mut KeyChooser, uid: u64, scratch: &mut Scratch) -> Rendered {
        let mut out = Rendered::default();
        self.render_into(kind, keys, uid, scratch, &mut out);
        out
    }

    /// Fill op `kind`'s templates with fresh ids and values into `out`, replacing the op it
    /// held and reusing its commands' buffers (the worker loop's way: no allocation once
    /// the buffers have grown).
    pub fn render_into(
        &self,
        kind: OpKind,
        keys: &mut KeyChooser,
        uid: u64,
        scratch: &mut Scratch,
        out: &mut Rendered,
    ) {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        // The last op's commands become the spares this one is built from.
        scratch.spare.append(&mut out.cmds);
        match &self.ops[usize::from(kind.0)].body {
            Body::Commands { templates, batch } => {
                let mut first_id = 0;
                for b in 0..*batch {
                    let id = keys.next_id();
                    if b == 0 {
                        first_id = id;
                    }
                    scratch.value.clear();
                    scratch.value.extend_from_slice(keys.value());
                    let ctx = RenderCtx { id, value: &scratch.value, now, uid };
                    for t in templates {
                        let mut cmd = reuse(&mut scratch.spare);
                        cmd.arg(t.name());
                        let mut slot = 0;
                        for (n, arg) in t.args().iter().enumerate() {
                            let bytes = fill(arg, &ctx, &mut scratch.arg);
                            if n == 0 {
                                slot = Slot::of(bytes).get();
                            }
                            cmd.arg(bytes);
                        }
                        out.cmds.push(Routed { cmd, slot });
                    }
                }
                out.id = first_id;
            }
            Body::Script { sha, keys: key_templates, args, .. } => {
                let id = keys.next_id();
                scratch.value.clear();
                scratch.value.extend_from_slice(keys.value());
                let mut cmd = reuse(&mut scratch.spare);
                let ctx = RenderCtx { id, value: &scratch.value, now, uid };
                cmd.arg("EVALSHA").arg(sha).arg(key_templates.len());
                let mut slot = 0;
                for (n, t) in key_templates.iter().chain(args).enumerate() {
                    let bytes = fill(t, &ctx, &mut scratch.arg);
                    if n == 0 {
                        slot = Slot::of(bytes).get();
                    }
                    cmd.arg(bytes);
                }
                out.cmds.push(Routed { cmd, slot });
                out.id = id;
            }
        }
    }
}

/// Lower-case hex SHA1, as `SCRIPT LOAD` answers and `EVALSHA` expects.
fn sha1_hex(data: &[u8]) -> String {
    redis::Script::new(std::str::from_utf8(data).unwrap_or_default()).get_hash().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_matches_redis() {
        // SCRIPT LOAD "return 1" answers this hash.
        assert_eq!(sha1_hex(b"return 1"), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    }

    #[test]
    fn rendering_into_reused_commands_matches_rendering_afresh() {
        let workload = crate::spec::parse(
            std::path::Path::new("reuse.toml"),
            r#"
[load]
duration = "1s"
[keys]
value_size = { min = 4, max = 40 }
[[op]]
name = "profile"
pipeline = [
  ["HSET", "{user:$id}:profile", "name", "user-$id", "op", "$uid"],
  ["EXPIRE", "{user:$id}:profile", 60],
  ["SET", "{user:$id}:last", "$value"],
]
[[op]]
name = "get"
command = ["GET", "key:$id"]
"#,
        )
        .unwrap();
        let renderer = Renderer::new(&workload.ops);
        let space = crate::driver::keys::KeySpace::new(1000, crate::spec::Distribution::Uniform, 4, 40);
        let (mut keys_a, mut keys_b) = (space.chooser(7, 0, 1), space.chooser(7, 0, 1));
        let (mut scratch_a, mut scratch_b) = (Scratch::default(), Scratch::default());
        let mut reused = Rendered::default();
        // Longer op, shorter op, longer again: spares are cleared, and none is left over.
        for (uid, kind) in [0, 1, 0, 1, 0].into_iter().enumerate() {
            renderer.render_into(OpKind(kind), &mut keys_a, uid as u64, &mut scratch_a, &mut reused);
            let fresh = renderer.render(OpKind(kind), &mut keys_b, uid as u64, &mut scratch_b);
            let packed = |r: &Rendered| -> Vec<(Vec<u8>, u16)> {
                r.cmds.iter().map(|c| (c.cmd.get_packed_command(), c.slot)).collect()
            };
            assert_eq!(packed(&reused), packed(&fresh), "op {uid}");
            assert_eq!(reused.id, fresh.id);
            assert_eq!(reused.cmds.len(), if kind == 0 { 3 } else { 1 });
        }
        let expire = String::from_utf8(reused.cmds[1].cmd.get_packed_command()).unwrap();
        assert!(
            expire.starts_with("*3\r\n$6\r\nEXPIRE\r\n") && expire.ends_with("$2\r\n60\r\n"),
            "{expire:?}"
        );
    }
}
