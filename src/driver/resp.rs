//! RESP on the driver's hot path: writing commands as RESP arrays of bulk strings, and an
//! incremental reply parser that keeps only what the driver uses.
//!
//! The parser reads RESP2 and tolerates RESP3 (null, boolean, double, big number, verbatim
//! string, blob error, map, set, attribute, push). It returns [`Reply::Ok`] for every reply
//! whose value the driver never looks at (status, bulk string, array, …) unless asked to
//! keep values, so a GET × 16 pipeline allocates nothing; it always keeps integers (the
//! limiter script's verdict) and errors, classified by their code.
//!
//! This module only encodes and decodes bytes: no I/O, no timeouts (see [`super::conn`]).

use crate::history::ErrorClass;
pub use crate::spec::template::decimal;

/// Frames nested deeper than this are a protocol error (Redis never sends them).
const MAX_DEPTH: usize = 64;

/// One reply, as far as the driver cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A reply whose value was not kept: a status, a bulk string, an array, a double…
    Ok,
    /// A null (RESP2 null bulk string or array, RESP3 `_`).
    Nil,
    /// An integer.
    Int(i64),
    /// A bulk, simple or verbatim string, kept because the request asked for values.
    Bulk(Vec<u8>),
    /// An array, set or map (flattened key, value, …), kept because the request asked for
    /// values.
    Array(Vec<Reply>),
    /// An error reply.
    Error(ErrorReply),
    /// A RESP3 push message: out of band, answers no request.
    Push,
}

/// An error reply from the server (never applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    /// Its class, from the code (the first word).
    pub class: ErrorClass,
    /// The whole text, code included: `MOVED 3999 127.0.0.1:6381`.
    pub text: Box<str>,
}

impl ErrorReply {
    /// The error `text`, classified by its code.
    pub fn new(text: &str) -> ErrorReply {
        ErrorReply { class: error_class(text), text: text.into() }
    }

    /// Where a `MOVED` or `ASK` reply points: `(slot, "host:port")`.
    pub fn redirect_target(&self) -> Option<(u16, &str)> {
        let mut parts = self.text.split_whitespace().skip(1);
        let slot = parts.next()?.parse().ok()?;
        Some((slot, parts.next()?))
    }
}

/// The class of an error reply, from its code: the same codes the `redis` crate knows
/// (`MASTERDOWN` counts as CLUSTERDOWN), anything else is `Other`.
pub fn error_class(text: &str) -> ErrorClass {
    match text.split(' ').next().unwrap_or_default() {
        "CLUSTERDOWN" | "MASTERDOWN" => ErrorClass::ClusterDown,
        "TRYAGAIN" => ErrorClass::TryAgain,
        "MOVED" => ErrorClass::Moved,
        "ASK" => ErrorClass::Ask,
        "READONLY" => ErrorClass::ReadOnly,
        "LOADING" => ErrorClass::Loading,
        "NOSCRIPT" => ErrorClass::NoScript,
        _ => ErrorClass::Other,
    }
}

/// The bytes on the wire were not RESP: the connection can no longer be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("protocol error: {0}")]
pub struct ProtocolError(&'static str);

/// `ASKING`, encoded: sent before a command an ASK redirected.
pub const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";

/// Append `*<n>\r\n`: the header of a command of `n` arguments (its name included).
pub fn write_array_header(buf: &mut Vec<u8>, n: usize) {
    buf.push(b'*');
    write_decimal(buf, n);
    buf.extend_from_slice(b"\r\n");
}

/// Append one argument as a bulk string: `$<len>\r\n<bytes>\r\n`.
pub fn write_bulk(buf: &mut Vec<u8>, arg: &[u8]) {
    write_bulk_header(buf, arg.len());
    buf.extend_from_slice(arg);
    buf.extend_from_slice(b"\r\n");
}

/// Append the head of a bulk string of `len` bytes, `$<len>\r\n`: its bytes and a CRLF
/// must follow.
pub fn write_bulk_header(buf: &mut Vec<u8>, len: usize) {
    buf.push(b'$');
    write_decimal(buf, len);
    buf.extend_from_slice(b"\r\n");
}

/// Append a number as a bulk string argument (`numkeys` of `EVALSHA`).
pub fn write_bulk_decimal(buf: &mut Vec<u8>, n: usize) {
    let mut digits = [0u8; 20];
    write_bulk(buf, decimal(&mut digits, n as u64));
}

/// Append a whole command.
pub fn write_command(buf: &mut Vec<u8>, args: &[&[u8]]) {
    write_array_header(buf, args.len());
    for a in args {
        write_bulk(buf, a);
    }
}

fn write_decimal(buf: &mut Vec<u8>, n: usize) {
    // Most lengths and counts are under 100: no division loop for those.
    if n < 10 {
        buf.push(b'0' + n as u8);
    } else if n < 100 {
        buf.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
    } else {
        let mut digits = [0u8; 20];
        buf.extend_from_slice(decimal(&mut digits, n as u64));
    }
}

/// Parse one reply from the start of `buf`: `Ok(None)` when `buf` holds only part of it
/// (read more and call again with the same start), else the reply and the bytes it took.
/// With `keep`, strings and arrays are returned with their contents; without, as
/// [`Reply::Ok`] (integers, nulls and errors are always returned).
///
/// # Errors
/// [`ProtocolError`] when `buf` does not start with a RESP frame.
pub fn parse(buf: &[u8], keep: bool) -> Result<Option<(Reply, usize)>, ProtocolError> {
    let mut pos = 0;
    match value(buf, &mut pos, keep, 0)? {
        Some(reply) => Ok(Some((reply, pos))),
        None => Ok(None),
    }
}

/// The line starting at `*pos` (without its CRLF), moving `*pos` past it; `None` when the
/// CRLF has not arrived yet.
fn line<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let rest = &buf[*pos..];
    let end = rest.iter().position(|&b| b == b'\n')?;
    let line = rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]);
    *pos += end + 1;
    Some(line)
}

fn integer(line: &[u8]) -> Result<i64, ProtocolError> {
    let (negative, digits) = match line.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, line),
    };
    if digits.is_empty() || digits.len() > 19 {
        return Err(ProtocolError("bad integer"));
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(ProtocolError("bad integer"));
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(i64::from(d - b'0')))
            .ok_or(ProtocolError("integer overflow"))?;
    }
    Ok(if negative { -n } else { n })
}

/// A length line: `-1` (null) is `None`.
fn length(line: &[u8]) -> Result<Option<usize>, ProtocolError> {
    match integer(line)? {
        -1 => Ok(None),
        n if n >= 0 => Ok(Some(n as usize)),
        _ => Err(ProtocolError("negative length")),
    }
}

fn value(buf: &[u8], pos: &mut usize, keep: bool, depth: usize) -> Result<Option<Reply>, ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError("nested too deep"));
    }
    let Some(&kind) = buf.get(*pos) else { return Ok(None) };
    *pos += 1;
    let Some(head) = line(buf, pos) else { return Ok(None) };
    Ok(Some(match kind {
        b'+' => string(head, keep),
        b'-' => Reply::Error(ErrorReply::new(&String::from_utf8_lossy(head))),
        b':' => Reply::Int(integer(head)?),
        b'_' => Reply::Nil,
        b'#' | b',' | b'(' => Reply::Ok,
        b'$' | b'=' | b'!' => {
            let Some(len) = length(head)? else { return Ok(Some(Reply::Nil)) };
            let end = *pos + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtocolError("bulk string without CRLF"));
            }
            let body = &buf[*pos..end];
            *pos = end + 2;
            match kind {
                b'!' => Reply::Error(ErrorReply::new(&String::from_utf8_lossy(body))),
                // A verbatim string starts with its format: `txt:`.
                b'=' => string(body.get(4..).unwrap_or_default(), keep),
                _ => string(body, keep),
            }
        }
        b'*' | b'~' | b'%' | b'>' | b'|' => {
            let Some(n) = length(head)? else { return Ok(Some(Reply::Nil)) };
            let n = if matches!(kind, b'%' | b'|') {
                n.checked_mul(2).ok_or(ProtocolError("map too long"))?
            } else {
                n
            };
            let keep_items = keep && !matches!(kind, b'>' | b'|');
            let mut items = Vec::with_capacity(if keep_items { n.min(4096) } else { 0 });
            for _ in 0..n {
                let Some(item) = value(buf, pos, keep_items, depth + 1)? else { return Ok(None) };
                if keep_items {
                    items.push(item);
                }
            }
            match kind {
                b'>' => Reply::Push,
                // An attribute annotates the reply that follows it: return that one.
                b'|' => match value(buf, pos, keep, depth + 1)? {
                    Some(reply) => reply,
                    None => return Ok(None),
                },
                _ if keep => Reply::Array(items),
                _ => Reply::Ok,
            }
        }
        _ => return Err(ProtocolError("unknown reply type")),
    }))
}

fn string(bytes: &[u8], keep: bool) -> Reply {
    if keep { Reply::Bulk(bytes.to_vec()) } else { Reply::Ok }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(buf: &[u8], keep: bool) -> Vec<Reply> {
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some((reply, used)) = parse(&buf[pos..], keep).unwrap() {
            out.push(reply);
            pos += used;
        }
        assert_eq!(pos, buf.len(), "everything parsed");
        out
    }

    #[test]
    fn commands_encode_as_the_redis_crate_packs_them() {
        let mut buf = Vec::new();
        let value = vec![b'x'; 1234];
        write_command(&mut buf, &[b"SET", b"{b1}:1", &value]);
        write_command(&mut buf, &[b"GET", b""]);
        let mut expected = redis::cmd("SET").arg("{b1}:1").arg(&value).get_packed_command();
        expected.extend(redis::cmd("GET").arg("").get_packed_command());
        assert_eq!(buf, expected);
        let mut asking = Vec::new();
        write_command(&mut asking, &[b"ASKING"]);
        assert_eq!(asking, ASKING);
        let mut big = Vec::new();
        write_array_header(&mut big, 0);
        write_array_header(&mut big, 1_000_000_007);
        write_bulk_decimal(&mut big, 12);
        write_array_header(&mut big, 9);
        write_array_header(&mut big, 100);
        assert_eq!(big, b"*0\r\n*1000000007\r\n$2\r\n12\r\n*9\r\n*100\r\n");
    }

    #[test]
    fn simple_replies_and_errors() {
        let buf =
            b"+OK\r\n:42\r\n:-7\r\n$-1\r\n*-1\r\n_\r\n-MOVED 3999 127.0.0.1:6381\r\n-ERR wrong type\r\n";
        let replies = all(buf, false);
        assert_eq!(
            replies[..6],
            [Reply::Ok, Reply::Int(42), Reply::Int(-7), Reply::Nil, Reply::Nil, Reply::Nil]
        );
        let Reply::Error(moved) = &replies[6] else { panic!("{:?}", replies[6]) };
        assert_eq!(moved.class, ErrorClass::Moved);
        assert_eq!(moved.redirect_target(), Some((3999, "127.0.0.1:6381")));
        let Reply::Error(other) = &replies[7] else { panic!("{:?}", replies[7]) };
        assert_eq!((other.class, &*other.text), (ErrorClass::Other, "ERR wrong type"));
    }

    #[test]
    fn error_codes_classify_as_the_driver_needs() {
        for (text, class) in [
            ("CLUSTERDOWN The cluster is down", ErrorClass::ClusterDown),
            ("MASTERDOWN Link with MASTER is down", ErrorClass::ClusterDown),
            ("TRYAGAIN Multiple keys request during rehashing of slot", ErrorClass::TryAgain),
            ("ASK 12 10.0.0.2:6379", ErrorClass::Ask),
            ("READONLY You can't write against a read only replica.", ErrorClass::ReadOnly),
            ("LOADING Redis is loading the dataset in memory", ErrorClass::Loading),
            ("NOSCRIPT No matching script. Please use EVAL.", ErrorClass::NoScript),
            ("WRONGTYPE Operation against a key", ErrorClass::Other),
            ("", ErrorClass::Other),
        ] {
            assert_eq!(error_class(text), class, "{text}");
        }
        assert_eq!(ErrorReply::new("MOVED x 1.2.3.4:5").redirect_target(), None);
        assert_eq!(ErrorReply::new("MOVED 12").redirect_target(), None);
    }

    #[test]
    fn values_are_kept_only_when_asked() {
        let buf = b"*3\r\n$1\r\n7\r\n$2\r\n12\r\n*2\r\n:1\r\n$-1\r\n$5\r\nhello\r\n";
        assert_eq!(all(buf, false), [Reply::Ok, Reply::Ok]);
        let kept = all(buf, true);
        assert_eq!(
            kept,
            [
                Reply::Array(vec![
                    Reply::Bulk(b"7".to_vec()),
                    Reply::Bulk(b"12".to_vec()),
                    Reply::Array(vec![Reply::Int(1), Reply::Nil])
                ]),
                Reply::Bulk(b"hello".to_vec())
            ]
        );
        assert_eq!(all(b"*0\r\n", true), [Reply::Array(vec![])]);
    }

    #[test]
    fn every_prefix_of_a_frame_asks_for_more() {
        let frames: [&[u8]; 4] = [
            b"*2\r\n*2\r\n:1\r\n$3\r\nabc\r\n-ERR x\r\n",
            b"$10\r\n0123456789\r\n",
            b"-CLUSTERDOWN Hash slot not served\r\n",
            b"%1\r\n+a\r\n~2\r\n:1\r\n:2\r\n",
        ];
        for frame in frames {
            for keep in [false, true] {
                for cut in 0..frame.len() {
                    assert_eq!(parse(&frame[..cut], keep), Ok(None), "{:?} cut at {cut}", frame);
                }
                let (_, used) = parse(frame, keep).unwrap().unwrap();
                assert_eq!(used, frame.len());
            }
        }
    }

    #[test]
    fn a_big_bulk_string_split_across_reads_parses_once_whole() {
        let body: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut frame = format!("${}\r\n", body.len()).into_bytes();
        frame.extend_from_slice(&body);
        frame.extend_from_slice(b"\r\n:5\r\n");
        // Arriving in 16 KiB reads: nothing until the last byte of the string is there.
        let mut received = Vec::new();
        let mut got = None;
        for chunk in frame.chunks(16 * 1024) {
            received.extend_from_slice(chunk);
            if let Some(r) = parse(&received, true).unwrap() {
                got = Some(r);
                break;
            }
        }
        let (reply, used) = got.unwrap();
        assert_eq!(reply, Reply::Bulk(body));
        assert_eq!(parse(&received[used..], false).unwrap(), Some((Reply::Int(5), 4)));
    }

    #[test]
    fn resp3_types_are_tolerated() {
        let buf =
            b"#t\r\n,3.14\r\n(12345678901234567890\r\n=8\r\ntxt:abcd\r\n!20\r\nNOSCRIPT No matching\r\n\
>2\r\n$7\r\nmessage\r\n$1\r\nx\r\n|1\r\n+key\r\n+val\r\n:9\r\n~2\r\n$1\r\n1\r\n$1\r\n2\r\n";
        let replies = all(buf, true);
        assert_eq!(replies[..4], [Reply::Ok, Reply::Ok, Reply::Ok, Reply::Bulk(b"abcd".to_vec())]);
        assert!(matches!(&replies[4], Reply::Error(e) if e.class == ErrorClass::NoScript));
        assert_eq!(replies[5..7], [Reply::Push, Reply::Int(9)]);
        assert_eq!(replies[7], Reply::Array(vec![Reply::Bulk(b"1".to_vec()), Reply::Bulk(b"2".to_vec())]));
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        assert!(parse(b"hello\r\n", false).is_err());
        assert!(parse(b":12a\r\n", false).is_err());
        assert!(parse(b"$3\r\nabcd\r\n", false).is_err());
        assert!(parse(b"*-2\r\n", false).is_err());
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2);
        assert!(parse(deep.as_bytes(), false).is_err());
    }
}
