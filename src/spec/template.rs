//! Command templates: the arguments a workload file writes, with placeholders such as `$id`,
//! compiled once at load time into literal bytes and placeholder slots, so rendering an op
//! on the hot path copies bytes and formats integers, and never parses.
//!
//! | placeholder | renders as |
//! |---|---|
//! | `$id` | the key id chosen for this op, e.g. `4711` |
//! | `$value` | random bytes of the workload's `value_size` |
//! | `$now` | wall-clock seconds with a microsecond fraction, like Python's `time.time()`: `1712345678.123456` |
//! | `$now_ms` | wall-clock milliseconds, an integer: `1712345678123` |
//! | `$uid` | an id unique to this op within the run |
//! | `$$` | a literal `$` |
//!
//! A placeholder's name runs over letters, digits and `_`; write `${id}` to end it early
//! (`${id}_a`). Any other `$word`, and a `$` followed by nothing, is an error.

use std::fmt;
use std::time::Duration;

/// The placeholder names and what to write instead, for error messages.
const ALLOWED: &str =
    "placeholders are $id, $value, $now, $now_ms and $uid (or ${id} etc.), and $$ is a literal $";

/// One piece of an argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Bytes copied as they are.
    Lit(Vec<u8>),
    /// `$id`: the op's key id, in decimal.
    Id,
    /// `$value`: the op's random value bytes.
    Value,
    /// `$now`: wall-clock seconds with six decimals.
    Now,
    /// `$now_ms`: wall-clock milliseconds, in decimal.
    NowMs,
    /// `$uid`: the op's run-unique id, in decimal.
    Uid,
}

/// What the placeholders of one op stand for when it is rendered.
#[derive(Debug, Clone, Copy)]
pub struct RenderCtx<'a> {
    /// The key id chosen for the op (`$id`).
    pub id: u64,
    /// The value bytes to write (`$value`).
    pub value: &'a [u8],
    /// Wall-clock time since the Unix epoch (`$now`, `$now_ms`); read once per op so all
    /// of its arguments agree.
    pub now: Duration,
    /// The op's id, unique within the run (`$uid`).
    pub uid: u64,
}

/// One argument of a command: literal bytes and placeholders, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgTemplate {
    /// Adjacent literals are merged, so a placeholder-free argument is one `Lit`.
    parts: Vec<Part>,
}

/// A placeholder that is not one, found while compiling an argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// Byte offset of the offending `$` in the argument's text.
    pub offset: usize,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl ArgTemplate {
    /// Compile `text`.
    ///
    /// # Errors
    /// [`TemplateError`] at the first `$` that starts no known placeholder.
    pub fn parse(text: &str) -> Result<ArgTemplate, TemplateError> {
        let mut parts = Vec::new();
        let mut lit = Vec::new();
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'$' {
                lit.push(bytes[i]);
                i += 1;
                continue;
            }
            let start = i;
            let (name, next) = match bytes.get(i + 1) {
                Some(b'$') => {
                    lit.push(b'$');
                    i += 2;
                    continue;
                }
                Some(b'{') => match text[i + 2..].find('}') {
                    Some(len) => (&text[i + 2..i + 2 + len], i + 3 + len),
                    None => {
                        let message = format!("`${{` is not closed by `}}`; {ALLOWED}");
                        return Err(TemplateError { offset: start, message });
                    }
                },
                _ => {
                    let len = bytes[i + 1..]
                        .iter()
                        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                        .count();
                    (&text[i + 1..i + 1 + len], i + 1 + len)
                }
            };
            let part = match name {
                "id" => Part::Id,
                "value" => Part::Value,
                "now" => Part::Now,
                "now_ms" => Part::NowMs,
                "uid" => Part::Uid,
                "" => {
                    let message = format!("a `$` that starts no placeholder; {ALLOWED}");
                    return Err(TemplateError { offset: start, message });
                }
                other => {
                    let message = format!("unknown placeholder `${other}`; {ALLOWED}");
                    return Err(TemplateError { offset: start, message });
                }
            };
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(part);
            i = next;
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(ArgTemplate { parts })
    }

    /// The pieces, in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The bytes, when the argument has no placeholder (the caller can skip rendering).
    pub fn as_literal(&self) -> Option<&[u8]> {
        match self.parts.as_slice() {
            [] => Some(&[]),
            [Part::Lit(bytes)] => Some(bytes),
            _ => None,
        }
    }

    /// True when the argument contains `$value` (the caller need not draw a value otherwise).
    pub fn uses_value(&self) -> bool {
        self.parts.contains(&Part::Value)
    }

    /// Append the argument with its placeholders filled from `ctx` to `out`.
    pub fn render_into(&self, ctx: &RenderCtx<'_>, out: &mut Vec<u8>) {
        for part in &self.parts {
            match part {
                Part::Lit(bytes) => out.extend_from_slice(bytes),
                Part::Id => push_decimal(out, ctx.id),
                Part::Value => out.extend_from_slice(ctx.value),
                Part::Now => {
                    push_decimal(out, ctx.now.as_secs());
                    out.push(b'.');
                    let micros = ctx.now.subsec_micros();
                    // Six digits, zero-padded: 0.000042, never 0.42.
                    for div in [100_000, 10_000, 1_000, 100, 10, 1] {
                        out.push(b'0' + (micros / div % 10) as u8);
                    }
                }
                Part::NowMs => push_decimal(out, ctx.now.as_millis() as u64),
                Part::Uid => push_decimal(out, ctx.uid),
            }
        }
    }

    /// The argument rendered into a new buffer (for tests and cold paths; the hot path
    /// reuses one buffer with [`ArgTemplate::render_into`]).
    pub fn render(&self, ctx: &RenderCtx<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        self.render_into(ctx, &mut out);
        out
    }
}

impl fmt::Display for ArgTemplate {
    /// The argument as a workload file writes it (`$$` for a literal `$`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Lit(bytes) => f.write_str(&String::from_utf8_lossy(bytes).replace('$', "$$"))?,
                Part::Id => f.write_str("${id}")?,
                Part::Value => f.write_str("${value}")?,
                Part::Now => f.write_str("${now}")?,
                Part::NowMs => f.write_str("${now_ms}")?,
                Part::Uid => f.write_str("${uid}")?,
            }
        }
        Ok(())
    }
}

/// `n` in decimal, without going through `fmt`.
fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    out.extend_from_slice(decimal(&mut digits, n));
}

/// `n` in decimal, written at the end of `digits`.
pub fn decimal(digits: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[i..]
}

/// Commands whose first argument is not their key: routing them by argument 1 would send
/// them to the wrong node, so a workload must say what it means another way.
const NOT_KEYED_BY_ARG1: [(&str, &str); 6] = [
    ("EVAL", "run a script with `script = \"file.lua\"`, `keys` and `args`"),
    ("EVALSHA", "run a script with `script = \"file.lua\"`, `keys` and `args`"),
    ("EVAL_RO", "run a script with `script = \"file.lua\"`, `keys` and `args`"),
    ("EVALSHA_RO", "run a script with `script = \"file.lua\"`, `keys` and `args`"),
    ("FCALL", "functions are not supported; use `script = \"file.lua\"`"),
    ("FCALL_RO", "functions are not supported; use `script = \"file.lua\"`"),
];

/// Commands that take more than one key, and which of their arguments are keys (0-based,
/// after the name): Redis Cluster refuses them when the keys lie in different slots
/// (CROSSSLOT), so the workload's templates must give them one hash tag.
pub fn key_positions(name: &str, args: usize) -> Vec<usize> {
    const ALL: [&str; 14] = [
        "MGET",
        "DEL",
        "UNLINK",
        "EXISTS",
        "TOUCH",
        "WATCH",
        "SUNION",
        "SINTER",
        "SDIFF",
        "SUNIONSTORE",
        "SINTERSTORE",
        "SDIFFSTORE",
        "PFCOUNT",
        "PFMERGE",
    ];
    const FIRST_TWO: [&str; 10] = [
        "RENAME",
        "RENAMENX",
        "RPOPLPUSH",
        "BRPOPLPUSH",
        "SMOVE",
        "LMOVE",
        "BLMOVE",
        "COPY",
        "GEOSEARCHSTORE",
        "ZRANGESTORE",
    ];
    const ALL_BUT_LAST: [&str; 4] = ["BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX"];
    let name = name.to_ascii_uppercase();
    let name = name.as_str();
    if ALL.contains(&name) {
        (0..args).collect()
    } else if FIRST_TWO.contains(&name) {
        (0..args.min(2)).collect()
    } else if ALL_BUT_LAST.contains(&name) {
        (0..args.saturating_sub(1)).collect()
    } else if name == "MSET" || name == "MSETNX" {
        (0..args).step_by(2).collect()
    } else {
        vec![0]
    }
}

/// One command: its name and its argument templates.
///
/// **Argument 1 (the first after the name) is the routing key**: the driver sends the command
/// to the node serving that key's slot, so every command has at least one argument and its
/// first one is a key. Commands of one pipeline are sent together per node; give their keys
/// one hash tag (`{user:$id}:profile`, `{user:$id}:tags`) when they must land on one slot.
/// Nothing checks that two keys of a pipeline share a tag: a pipeline that mixes
/// `{user:$id}` and `{cart:$id}` is allowed and simply splits across nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTemplate {
    /// The command's name, uppercased (`HSET`).
    name: String,
    /// Its arguments; never empty, the first is the routing key.
    args: Vec<ArgTemplate>,
}

impl CommandTemplate {
    /// A command named `name` with `args`. The name is uppercased.
    ///
    /// # Errors
    /// A message when `name` is not a plain command name (placeholders are not allowed
    /// there), when `args` is empty (there is no routing key), or when the command is one
    /// whose key is not argument 1.
    pub fn new(name: &str, args: Vec<ArgTemplate>) -> Result<CommandTemplate, String> {
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '|'));
        if !valid {
            return Err(format!(
                "{name:?} is not a command name: the first element names the command (letters, digits, `.`, `_`, `-`, `|`) and takes no placeholders"
            ));
        }
        let name = name.to_ascii_uppercase();
        if let Some((_, instead)) = NOT_KEYED_BY_ARG1.iter().find(|(n, _)| *n == name) {
            return Err(format!("`{name}` is not routed by its first argument; {instead}"));
        }
        if args.is_empty() {
            return Err(format!(
                "`{name}` has no arguments: argument 1 is the key that routes the command to its slot, so every command needs one"
            ));
        }
        Ok(CommandTemplate { name, args })
    }

    /// The command's name, uppercased.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The arguments after the name; never empty.
    pub fn args(&self) -> &[ArgTemplate] {
        &self.args
    }

    /// Argument 1, the key whose slot decides where the command goes.
    pub fn key(&self) -> &ArgTemplate {
        &self.args[0]
    }

    /// True when some argument contains `$value`.
    pub fn uses_value(&self) -> bool {
        self.args.iter().any(ArgTemplate::uses_value)
    }
}

impl fmt::Display for CommandTemplate {
    /// `HSET {user:${id}}:profile name user-${id}`: the name and arguments, space-separated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for arg in &self.args {
            write!(f, " {arg}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(value: &[u8]) -> RenderCtx<'_> {
        RenderCtx { id: 4711, value, now: Duration::new(1_712_345_678, 42_000), uid: 9 }
    }

    fn render(text: &str) -> String {
        String::from_utf8(ArgTemplate::parse(text).unwrap().render(&ctx(b"vvv"))).unwrap()
    }

    #[test]
    fn placeholders_render_from_the_context() {
        assert_eq!(render("{user:$id}:profile"), "{user:4711}:profile");
        assert_eq!(render("$id@example.com"), "4711@example.com");
        assert_eq!(render("$value"), "vvv");
        assert_eq!(render("$now"), "1712345678.000042");
        assert_eq!(render("$now_ms"), "1712345678000");
        assert_eq!(render("op-$uid"), "op-9");
        assert_eq!(render("${id}_x"), "4711_x");
        assert_eq!(render(""), "");
    }

    #[test]
    fn double_dollar_is_a_literal_dollar() {
        assert_eq!(render("$$"), "$");
        assert_eq!(render("cost $$5"), "cost $5");
        assert_eq!(render("$$id"), "$id");
        assert_eq!(render("$$$id"), "$4711");
        let t = ArgTemplate::parse("a$$b").unwrap();
        assert_eq!(t.as_literal(), Some(&b"a$b"[..]), "an escape leaves a single literal");
    }

    #[test]
    fn unknown_and_dangling_placeholders_are_errors_at_their_dollar() {
        let e = ArgTemplate::parse("key:$idx").unwrap_err();
        assert_eq!(e.offset, 4);
        assert!(e.message.starts_with("unknown placeholder `$idx`; placeholders are"), "{}", e.message);
        assert_eq!(ArgTemplate::parse("ab $").unwrap_err().offset, 3);
        assert_eq!(ArgTemplate::parse("$ x").unwrap_err().offset, 0);
        assert!(ArgTemplate::parse("${id").unwrap_err().message.contains("not closed"));
        assert!(ArgTemplate::parse("${nope}").unwrap_err().message.contains("`$nope`"));
    }

    #[test]
    fn literals_merge_and_render_unchanged() {
        let t = ArgTemplate::parse("a$$b").unwrap();
        assert_eq!(t.parts(), &[Part::Lit(b"a$b".to_vec())]);
        let t = ArgTemplate::parse("x$id").unwrap();
        assert_eq!(t.parts(), &[Part::Lit(b"x".to_vec()), Part::Id]);
        assert_eq!(t.as_literal(), None);
        assert!(!t.uses_value());
        assert!(ArgTemplate::parse("v=$value").unwrap().uses_value());
    }

    #[test]
    fn render_into_appends_to_the_buffer() {
        let t = ArgTemplate::parse("$id").unwrap();
        let mut out = b"k:".to_vec();
        t.render_into(&RenderCtx { id: 0, ..ctx(b"") }, &mut out);
        t.render_into(&RenderCtx { id: u64::MAX, ..ctx(b"") }, &mut out);
        assert_eq!(out, b"k:018446744073709551615");
    }

    #[test]
    fn display_writes_the_template_back() {
        for text in ["{user:$id}:profile", "a$$b", "${id}_x", "$now $now_ms $uid $value"] {
            let t = ArgTemplate::parse(text).unwrap();
            assert_eq!(ArgTemplate::parse(&t.to_string()).unwrap(), t, "{text}");
        }
    }

    #[test]
    fn commands_are_uppercased_and_need_a_key() {
        let key = ArgTemplate::parse("k:$id").unwrap();
        let cmd = CommandTemplate::new("hset", vec![key.clone()]).unwrap();
        assert_eq!(cmd.name(), "HSET");
        assert_eq!(cmd.key(), &key);
        assert_eq!(cmd.to_string(), "HSET k:${id}");
        assert!(CommandTemplate::new("PING", vec![]).unwrap_err().contains("argument 1 is the key"));
        assert!(CommandTemplate::new("$id", vec![key.clone()]).unwrap_err().contains("not a command name"));
        assert!(CommandTemplate::new("eval", vec![key]).unwrap_err().contains("script"));
    }
}
