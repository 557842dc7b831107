//! From workload ops to commands on the wire: pick an op by weight, fill its templates
//! (`$id`, `$value`, `$now`, …) and note each command's slot from its key (argument 1, or a
//! script's first key).
//!
//! Rendering is on the hot path of every op, so it writes each command straight as RESP
//! (the bytes the connection sends) into one buffer per worker, kept for the whole run: no
//! command object, no copy of its arguments, no allocation once the buffer has grown.

use std::ops::Range;
use std::time::SystemTime;

use super::exec::{Commands, ScriptSource};
use super::keys::KeyChooser;
use super::resp::{decimal, write_array_header, write_bulk, write_bulk_decimal, write_bulk_header};
use crate::cluster::slot::Slot;
use crate::history::OpKind;
use crate::spec::{ArgTemplate, CommandTemplate, OpBody, OpSpec, Part, RenderCtx};

/// One op, ready to render.
struct RenderOp {
    name: String,
    body: Body,
}

enum Body {
    /// Commands (one, or a per-id pipeline repeated `batch` times with different ids), each
    /// with its RESP head (`*N` and the name), which never changes.
    Commands { templates: Vec<(Vec<u8>, CommandTemplate)>, batch: usize },
    /// `EVALSHA sha numkeys keys… args…`.
    Script { sha: String, source: ScriptSource, keys: Vec<ArgTemplate>, args: Vec<ArgTemplate> },
}

/// A rendered op.
#[derive(Default)]
pub struct Rendered {
    /// Its commands, encoded, with their slots, in order.
    pub cmds: Commands,
    /// The first id it addressed.
    pub id: u64,
}

/// A worker's reusable buffers.
#[derive(Default)]
pub struct Scratch {
    arg: Vec<u8>,
    value: Vec<u8>,
}

/// A command template with its RESP head: `*<1 + args>`, then its name as a bulk string.
fn with_head(t: &CommandTemplate) -> (Vec<u8>, CommandTemplate) {
    let mut head = Vec::new();
    write_array_header(&mut head, 1 + t.args().len());
    write_bulk(&mut head, t.name().as_bytes());
    (head, t.clone())
}

/// Write argument `arg` filled from `ctx` into `wire` as a bulk string and return where its
/// bytes lie. `id` is `ctx.id` already in decimal (formatted once per id, not per
/// argument). Arguments made of literals, `$id` and `$value` only (keys and values, nearly
/// all of a workload's) are written straight into `wire`; others are rendered into `buf`
/// first.
fn write_arg(
    wire: &mut Vec<u8>,
    arg: &ArgTemplate,
    ctx: &RenderCtx<'_>,
    id: &[u8],
    buf: &mut Vec<u8>,
) -> Range<usize> {
    let mut len = 0;
    for part in arg.parts() {
        len += match part {
            Part::Lit(bytes) => bytes.len(),
            Part::Id => id.len(),
            Part::Value => ctx.value.len(),
            Part::Now | Part::NowMs | Part::Uid => {
                buf.clear();
                arg.render_into(ctx, buf);
                write_bulk_header(wire, buf.len());
                let start = wire.len();
                wire.extend_from_slice(buf);
                wire.extend_from_slice(b"\r\n");
                return start..start + buf.len();
            }
        };
    }
    write_bulk_header(wire, len);
    let start = wire.len();
    for part in arg.parts() {
        match part {
            Part::Lit(bytes) => wire.extend_from_slice(bytes),
            Part::Id => wire.extend_from_slice(id),
            Part::Value => wire.extend_from_slice(ctx.value),
            Part::Now | Part::NowMs | Part::Uid => unreachable!("rendered above"),
        }
    }
    let end = wire.len();
    wire.extend_from_slice(b"\r\n");
    start..end
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
                    OpBody::Command(c) => Body::Commands { templates: vec![with_head(c)], batch: 1 },
                    OpBody::Pipeline { commands, batch } => Body::Commands {
                        templates: commands.iter().map(with_head).collect(),
                        batch: (*batch).max(1),
                    },
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
                let (_, t) = &templates[0];
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
    /// held and reusing its buffer (the worker loop's way: no allocation once the buffer
    /// has grown).
    pub fn render_into(
        &self,
        kind: OpKind,
        keys: &mut KeyChooser,
        uid: u64,
        scratch: &mut Scratch,
        out: &mut Rendered,
    ) {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        out.cmds.clear();
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
                    let mut digits = [0u8; 20];
                    let id_text = decimal(&mut digits, id);
                    for (head, t) in templates {
                        out.cmds.push_with(|wire| {
                            wire.extend_from_slice(head);
                            let mut slot = 0;
                            for (n, arg) in t.args().iter().enumerate() {
                                let bytes = write_arg(wire, arg, &ctx, id_text, &mut scratch.arg);
                                if n == 0 {
                                    slot = Slot::of(&wire[bytes]).get();
                                }
                            }
                            slot
                        });
                    }
                }
                out.id = first_id;
            }
            Body::Script { sha, keys: key_templates, args, .. } => {
                let id = keys.next_id();
                scratch.value.clear();
                scratch.value.extend_from_slice(keys.value());
                let ctx = RenderCtx { id, value: &scratch.value, now, uid };
                let mut digits = [0u8; 20];
                let id_text = decimal(&mut digits, id);
                out.cmds.push_with(|wire| {
                    write_array_header(wire, 3 + key_templates.len() + args.len());
                    write_bulk(wire, b"EVALSHA");
                    write_bulk(wire, sha.as_bytes());
                    write_bulk_decimal(wire, key_templates.len());
                    let mut slot = 0;
                    for (n, t) in key_templates.iter().chain(args).enumerate() {
                        let bytes = write_arg(wire, t, &ctx, id_text, &mut scratch.arg);
                        if n == 0 {
                            slot = Slot::of(&wire[bytes]).get();
                        }
                    }
                    slot
                });
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
                (0..r.cmds.len()).map(|i| (r.cmds.bytes(i).to_vec(), r.cmds.slot(i))).collect()
            };
            assert_eq!(packed(&reused), packed(&fresh), "op {uid}");
            assert_eq!(reused.id, fresh.id);
            assert_eq!(reused.cmds.len(), if kind == 0 { 3 } else { 1 });
        }
        let expire =
            redis::cmd("EXPIRE").arg(format!("{{user:{}}}:profile", reused.id)).arg(60).get_packed_command();
        assert_eq!(reused.cmds.bytes(1), expire, "encoded as the redis crate packs it");
        assert_eq!(reused.cmds.slot(1), Slot::of(format!("{{user:{}}}:profile", reused.id).as_bytes()).get());
        // Keys, `$id` inside text, `$uid` and `$value` all land where they belong.
        let id = reused.id;
        let hset = redis::cmd("HSET")
            .arg(format!("{{user:{id}}}:profile"))
            .arg("name")
            .arg(format!("user-{id}"))
            .arg("op")
            .arg(4)
            .get_packed_command();
        assert_eq!(reused.cmds.bytes(0), hset);
        let Ok(Some((crate::driver::resp::Reply::Array(set), _))) =
            crate::driver::resp::parse(reused.cmds.bytes(2), true)
        else {
            panic!("SET is a RESP array")
        };
        let crate::driver::resp::Reply::Bulk(value) = &set[2] else { panic!("{set:?}") };
        assert!((4..=40).contains(&value.len()), "{value:?}");
    }

    #[test]
    fn a_script_renders_as_evalsha_with_its_keys_and_args() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/workloads/rate-limit.toml");
        let workload = crate::spec::load(std::path::Path::new(path)).unwrap();
        let renderer = Renderer::new(&workload.ops);
        let space = crate::driver::keys::KeySpace::new(200, crate::spec::Distribution::Uniform, 8, 8);
        let mut keys = space.chooser(1, 0, 1);
        let r = renderer.render(OpKind(0), &mut keys, 77, &mut Scratch::default());
        let key = format!("{{ratelimit:{}}}:sliding", r.id);
        assert_eq!(r.cmds.slot(0), Slot::of(key.as_bytes()).get());
        let Ok(Some((crate::driver::resp::Reply::Array(args), used))) =
            crate::driver::resp::parse(r.cmds.bytes(0), true)
        else {
            panic!("EVALSHA is a RESP array")
        };
        assert_eq!(used, r.cmds.bytes(0).len());
        let text: Vec<String> = args
            .iter()
            .map(|a| match a {
                crate::driver::resp::Reply::Bulk(b) => String::from_utf8(b.clone()).unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        let sha = match renderer.script(OpKind(0)) {
            Some(s) => sha1_hex(s.source.as_bytes()),
            None => panic!("a script op"),
        };
        assert_eq!(text[..6], ["EVALSHA".to_string(), sha, "1".into(), key, "100".into(), "60".into()]);
        let (secs, micros) = text[6].split_once('.').unwrap();
        assert!(secs.parse::<u64>().unwrap() > 1_700_000_000 && micros.len() == 6, "{}", text[6]);
    }
}
