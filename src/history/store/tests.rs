use super::*;
use crate::history::{ErrorCounts, EventKind, Interval, OpStats};
use flate2::Compression;
use flate2::write::GzEncoder;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use std::io::Write;
use std::time::UNIX_EPOCH;

/// A histogram as format 1 stored it: base64 of its compressed V2 encoding.
fn histogram_text(h: &hdrhistogram::Histogram<u64>) -> io::Result<String> {
    let mut buf = Vec::new();
    V2DeflateSerializer::new().serialize(h, &mut buf).map_err(|e| invalid(format!("{e:?}")))?;
    Ok(STANDARD.encode(&buf))
}

fn sample() -> History {
    let mut stats = OpStats { ok: 3, moved: 2, ..Default::default() };
    stats.latency.record(1234).unwrap();
    stats.failed[ErrorClass::ClusterDown] = 1;
    History {
        op_names: vec!["get".into(), "set".into()],
        interval: Duration::from_secs(1),
        warmup: Duration::from_millis(500),
        started_at: UNIX_EPOCH + Duration::from_micros(1_796_072_105_123_456),
        elapsed: Duration::from_secs(3),
        intervals: vec![Interval {
            index: 0,
            ops: vec![stats.clone(), OpStats::default()],
            shards: Vec::new(),
        }]
        .into(),
        ops: vec![
            OpEvent {
                start_us: 10,
                latency_us: 20,
                kind: OpKind(1),
                slot: 99,
                id: 7,
                uid: 1 << 41,
                sent_us: 3,
                queued_us: 2,
                outcome: Outcome::Unknown(ErrorClass::Timeout),
                attempts: 2,
                moved: 1,
                ask: 3,
                reply: Some(-1),
            },
            OpEvent {
                start_us: 11,
                latency_us: 1,
                kind: OpKind(0),
                slot: 0,
                id: 0,
                uid: 2,
                sent_us: 3,
                queued_us: 0,
                outcome: Outcome::Fail(ErrorClass::Other),
                attempts: 1,
                moved: 0,
                ask: 0,
                reply: None,
            },
        ],
        errors: vec![ErrorEvent {
            at_us: 5,
            kind: OpKind(1),
            slot: 99,
            class: ErrorClass::NoScript,
            last: false,
        }],
        events: vec![Event {
            at_us: 42,
            kind: EventKind::Flagged {
                observer: "redis-2".into(),
                subject: "redis-1".into(),
                flag: "fail".into(),
            },
        }],
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("slotstorm-history-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn assert_same(back: &History, h: &History) {
    assert_eq!(back.op_names, h.op_names);
    assert_eq!(
        (back.interval, back.warmup, back.elapsed, back.started_at),
        (h.interval, h.warmup, h.elapsed, h.started_at)
    );
    assert_eq!(back.ops, h.ops);
    assert_eq!(back.errors, h.errors);
    assert_eq!(back.events, h.events);
    let (back0, h0) = (back.intervals.get(0).unwrap(), h.intervals.get(0).unwrap());
    let (s, stats) = (&back0.ops[0], &h0.ops[0]);
    assert_eq!((s.ok, s.moved, s.failed), (3, 2, stats.failed));
    assert_eq!(s.latency.len(), 1);
    assert_eq!(s.latency.max(), stats.latency.max());
}

#[test]
fn a_history_survives_a_round_trip() {
    let h = sample();
    let dir = temp_dir("v2");
    save(&dir, &h).unwrap();
    let loaded = load(&dir).unwrap();
    assert!(loaded.ends_early.is_none(), "{:?}", loaded.ends_early);
    let back = loaded.history;
    // Every field is named in the file: an op reads as what it is.
    let mut text = String::new();
    std::io::Read::read_to_string(&mut MultiGzDecoder::new(File::open(dir.join(FILE)).unwrap()), &mut text)
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_same(&back, &h);
    assert!(text.starts_with(r#"{"header":{"version":2,"#), "{text}");
    assert!(text.contains(r#""outcome":"unknown","class":"timeout""#), "{text}");
    assert!(text.lines().count() == 1 + 1 + 2 + 1 + 1 + 1, "{text}");
    assert!(text.ends_with("{\"end\":{\"elapsed_us\":3000000}}\n"), "{text}");
}

#[test]
fn a_folder_of_format_1_still_loads() {
    // As format 1 wrote it: ops and errors as positional arrays, counts in class order.
    let h = sample();
    let first = h.intervals.get(0).unwrap();
    let stats = &first.ops[0];
    let hist = histogram_text(&stats.latency).unwrap();
    let lag = histogram_text(&stats.send_lag).unwrap();
    let empty = histogram_text(&crate::history::new_histogram()).unwrap();
    let counts = |c: &ErrorCounts| ErrorClass::ALL.map(|k| c[k]);
    let doc = serde_json::json!({
        "version": 1,
        "op_names": h.op_names,
        "interval_us": 1_000_000, "warmup_us": 500_000, "started_at_us": 1_796_072_105_123_456u64, "elapsed_us": 3_000_000,
        "intervals": [{"index": 0, "ops": [
            {"h": hist, "lag": lag, "queued": 0, "ok": 3, "failed": counts(&stats.failed), "unknown": counts(&stats.unknown),
             "attempt_errors": counts(&stats.attempt_errors), "moved": 2, "ask": 0},
            {"h": empty, "ok": 0, "failed": [], "unknown": [], "attempt_errors": []}]}],
        "ops": [[10, 20, 1, 99, 7, 1u64 << 41, 101, 2, -1, 3, 1, 3, 2], [11, 1, 0, 0, 0, 2, 11, 1, null, 3, 0, 0, 0]],
        "errors": [[5, 1, 99, 9, false]],
        "events": h.events,
    });
    let dir = temp_dir("v1");
    let mut gz = GzEncoder::new(File::create(dir.join("history.json.gz")).unwrap(), Compression::fast());
    serde_json::to_writer(&mut gz, &doc).unwrap();
    gz.finish().unwrap();
    let back = load(&dir).unwrap().history;
    std::fs::remove_dir_all(&dir).unwrap();
    assert_same(&back, &h);
}

#[test]
fn a_damaged_line_is_named() {
    let dir = temp_dir("bad");
    let mut gz = GzEncoder::new(File::create(dir.join(FILE)).unwrap(), Compression::fast());
    gz.write_all(b"{\"header\":{\"version\":2,\"op_names\":[],\"interval_us\":1,\"warmup_us\":0,\"started_at_us\":0,\"elapsed_us\":0}}\n{\"op\":{}}\n").unwrap();
    gz.finish().unwrap();
    let e = load(&dir).err().unwrap().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(e.contains("history.jsonl.gz:2: "), "{e}");
}

/// A journal of `h` in three blocks: the header; the intervals and the first op; the rest
/// and the end. Returns the file's length after the second block.
fn journal_in_blocks(dir: &Path, h: &History) -> u64 {
    let start = journal::Start {
        op_names: &h.op_names,
        interval: h.interval,
        warmup: h.warmup,
        started_at: h.started_at,
    };
    let j = journal::Journal::start(dir, &start, None).unwrap();
    for i in h.intervals.sealed() {
        j.sink().interval(i);
    }
    j.sink().ops(&h.ops[..1]);
    j.block_now();
    let second = std::fs::metadata(dir.join(FILE)).unwrap().len();
    j.sink().ops(&h.ops[1..]);
    j.sink().errors(&h.errors);
    j.finish(h.events.clone(), h.elapsed).unwrap();
    second
}

#[test]
fn a_journal_written_in_blocks_reads_as_one_history() {
    let h = sample();
    let dir = temp_dir("blocks");
    journal_in_blocks(&dir, &h);
    let loaded = load(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(loaded.ends_early.is_none(), "{:?}", loaded.ends_early);
    assert_same(&loaded.history, &h);
}

#[test]
fn a_killed_runs_history_reads_up_to_its_last_whole_block_and_says_so() {
    let h = sample();
    let dir = temp_dir("cut");
    let second = journal_in_blocks(&dir, &h);
    // Killed while the third block was being written: half of it is on disk.
    let whole = std::fs::metadata(dir.join(FILE)).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(dir.join(FILE)).unwrap();
    f.set_len(second + (whole - second) / 2).unwrap();
    drop(f);
    let loaded = load(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let why = loaded.ends_early.expect("the file says it ends early");
    assert!(why.contains("history.jsonl.gz ends early after line 3"), "{why}");
    let back = loaded.history;
    assert_eq!(back.ops, h.ops[..1], "the first block's op, not the cut block's");
    assert!(back.errors.is_empty() && back.events.is_empty());
    assert_eq!(back.intervals.len(), 1);
    assert_eq!(back.elapsed, h.interval, "elapsed: the intervals it holds");
}

#[test]
fn a_later_record_of_an_interval_replaces_the_earlier() {
    let dir = temp_dir("late");
    let mut h = sample();
    let first = h.intervals.get(0).unwrap();
    let mut late = first.clone();
    late.ops[0].ok += 5;
    // As the aggregator writes it: sealed, then sealed again after a late report.
    let twice: Intervals = vec![first, late]
        .into_iter()
        .map(|mut i| {
            i.index = 0;
            i
        })
        .collect();
    h.intervals = twice;
    let start = journal::Start {
        op_names: &h.op_names,
        interval: h.interval,
        warmup: h.warmup,
        started_at: h.started_at,
    };
    let j = journal::Journal::start(&dir, &start, None).unwrap();
    for i in h.intervals.sealed() {
        j.sink().interval(i);
    }
    j.finish(Vec::new(), h.elapsed).unwrap();
    let back = load(&dir).unwrap().history;
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(back.intervals.len(), 1);
    assert_eq!(back.intervals.get(0).unwrap().ops[0].ok, 3 + 5);
}
