//! A run's intervals, kept compressed. One interval's latency histogram takes about 190 KB
//! in memory (a microsecond to an hour at three significant digits) but a few hundred
//! bytes in HdrHistogram's compressed V2 encoding; a run keeps every interval that way once
//! every worker has reported it, so an hour at one-second intervals costs megabytes, not
//! gigabytes. Readers get each interval back whole, one at a time ([`Intervals::iter`]).

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

use super::{ErrorCounts, Interval, OpStats, ShardStats};

/// One op kind's stats of one interval ([`OpStats`]), with its histograms compressed: the
/// V2 deflate encoding, empty for an empty histogram. The saved history stores it as it is
/// (the bytes as base64).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SealedStats {
    /// Latency from the intended start, µs.
    #[serde(with = "base64_bytes")]
    pub(super) latency: Box<[u8]>,
    /// Send lag, µs.
    #[serde(with = "base64_bytes")]
    pub(super) send_lag: Box<[u8]>,
    pub(super) queued: u64,
    pub(super) ok: u64,
    pub(super) failed: ErrorCounts,
    pub(super) unknown: ErrorCounts,
    pub(super) attempt_errors: ErrorCounts,
    pub(super) moved: u64,
    pub(super) ask: u64,
}

/// An empty histogram's encoding is not stored: most intervals of most op kinds in a short
/// run are full, but a kind with no ops leaves its histograms empty.
fn seal_histogram(h: &Histogram<u64>) -> Box<[u8]> {
    if h.is_empty() {
        return Box::default();
    }
    let mut buf = Vec::new();
    V2DeflateSerializer::new().serialize(h, &mut buf).expect("a histogram serialises into memory");
    buf.into_boxed_slice()
}

/// Decode `bytes` (empty: an empty histogram) into the bounds every histogram of a run
/// shares, so they add up.
///
/// # Errors
/// What is wrong with the bytes.
pub(super) fn open_histogram(bytes: &[u8], empty: fn() -> Histogram<u64>) -> Result<Histogram<u64>, String> {
    let mut h = empty();
    if !bytes.is_empty() {
        let read: Histogram<u64> =
            Deserializer::new().deserialize(&mut &bytes[..]).map_err(|e| format!("{e:?}"))?;
        h.add(&read).map_err(|e| format!("{e:?}"))?;
    }
    Ok(h)
}

impl SealedStats {
    fn seal(s: &OpStats) -> SealedStats {
        SealedStats {
            latency: seal_histogram(&s.latency),
            send_lag: seal_histogram(&s.send_lag),
            queued: s.queued,
            ok: s.ok,
            failed: s.failed,
            unknown: s.unknown,
            attempt_errors: s.attempt_errors,
            moved: s.moved,
            ask: s.ask,
        }
    }

    fn open(&self) -> OpStats {
        // Bytes sealed here, or checked when a saved history was loaded.
        let open = |bytes: &[u8], empty| open_histogram(bytes, empty).expect("checked histogram bytes");
        OpStats {
            latency: open(&self.latency, super::new_histogram),
            send_lag: open(&self.send_lag, super::new_lag_histogram),
            queued: self.queued,
            ok: self.ok,
            failed: self.failed,
            unknown: self.unknown,
            attempt_errors: self.attempt_errors,
            moved: self.moved,
            ask: self.ask,
        }
    }

    /// Whether both histograms decode (a loaded history's may not).
    ///
    /// # Errors
    /// What is wrong with them.
    pub(super) fn check(&self) -> Result<(), String> {
        open_histogram(&self.latency, super::new_histogram)?;
        open_histogram(&self.send_lag, super::new_lag_histogram).map(|_| ())
    }

    fn bytes(&self) -> usize {
        self.latency.len() + self.send_lag.len() + std::mem::size_of::<SealedStats>()
    }
}

/// One interval, compressed: also its record in a saved history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Sealed {
    pub(super) index: u32,
    /// Per op kind.
    pub(super) ops: Vec<SealedStats>,
    /// Per shard, in the run's order of shards (one more for slots none held).
    #[serde(default)]
    pub(super) shards: Vec<ShardStats>,
}

/// Histogram bytes in a saved history: base64 text.
mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Box<[u8]>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map(Vec::into_boxed_slice).map_err(serde::de::Error::custom)
    }
}

impl Sealed {
    fn open(&self) -> Interval {
        Interval {
            index: self.index,
            ops: self.ops.iter().map(SealedStats::open).collect(),
            shards: self.shards.clone(),
        }
    }
}

/// Every interval of a run in order, none missing, compressed.
#[derive(Debug, Clone, Default)]
pub struct Intervals {
    sealed: Vec<Sealed>,
}

impl Intervals {
    /// How many.
    pub fn len(&self) -> usize {
        self.sealed.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.sealed.is_empty()
    }

    /// Each interval, whole, in order: decoded one at a time, so a reader holds one.
    pub fn iter(&self) -> impl Iterator<Item = Interval> + '_ {
        self.sealed.iter().map(Sealed::open)
    }

    /// Interval `i` (by position), whole; only that one is decoded.
    pub fn get(&self, i: usize) -> Option<Interval> {
        self.sealed.get(i).map(Sealed::open)
    }

    /// Add `interval` at the end.
    pub fn push(&mut self, interval: &Interval) {
        self.sealed.push(Sealed {
            index: interval.index,
            ops: interval.ops.iter().map(SealedStats::seal).collect(),
            shards: interval.shards.clone(),
        });
    }

    /// Add `ops` and `shards` into the interval at `position` (a late report: a worker that
    /// was stuck in one op while the others moved on).
    pub(crate) fn add_to(&mut self, position: usize, ops: &[OpStats], shards: &[ShardStats]) {
        let Some(mut interval) = self.get(position) else { return };
        for (into, from) in interval.ops.iter_mut().zip(ops) {
            into.merge(from);
        }
        interval.shards.resize(interval.shards.len().max(shards.len()), ShardStats::default());
        for (into, from) in interval.shards.iter_mut().zip(shards) {
            into.merge(from);
        }
        let sealed = &mut self.sealed[position];
        sealed.ops = interval.ops.iter().map(SealedStats::seal).collect();
        sealed.shards = interval.shards;
    }

    /// The compressed intervals, for saving them as they are.
    pub(super) fn sealed(&self) -> &[Sealed] {
        &self.sealed
    }

    /// Add an interval compressed elsewhere (a loaded history; its bytes checked) at the
    /// end, or in place of the one of its index (sealed again after a late report).
    ///
    /// # Errors
    /// When its index is neither the next one nor one already there.
    pub(super) fn put_sealed(&mut self, sealed: Sealed) -> Result<(), String> {
        let at = sealed.index as usize;
        match at.cmp(&self.sealed.len()) {
            std::cmp::Ordering::Less => self.sealed[at] = sealed,
            std::cmp::Ordering::Equal => self.sealed.push(sealed),
            std::cmp::Ordering::Greater => {
                return Err(format!("interval {at} follows interval {}", self.sealed.len() as i64 - 1));
            }
        }
        Ok(())
    }

    /// Bytes held (for the soak benchmark's accounting).
    pub fn bytes(&self) -> usize {
        self.sealed.iter().map(|s| s.ops.iter().map(SealedStats::bytes).sum::<usize>()).sum()
    }
}

impl From<Vec<Interval>> for Intervals {
    fn from(intervals: Vec<Interval>) -> Intervals {
        let mut out = Intervals::default();
        for i in &intervals {
            out.push(i);
        }
        out
    }
}

impl FromIterator<Interval> for Intervals {
    fn from_iter<T: IntoIterator<Item = Interval>>(iter: T) -> Intervals {
        let mut out = Intervals::default();
        for i in iter {
            out.push(&i);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::ErrorClass;

    #[test]
    fn an_interval_comes_back_as_it_went_in_in_a_small_fraction_of_its_memory() {
        let mut s = OpStats { ok: 1000, moved: 3, queued: 2, ..OpStats::default() };
        for v in 0..1000u64 {
            s.latency.record(500 + v * 7).unwrap();
            s.send_lag.record(1 + v % 50).unwrap();
        }
        s.failed[ErrorClass::Timeout] = 4;
        let interval = Interval {
            index: 7,
            ops: vec![s.clone(), OpStats::default()],
            shards: vec![ShardStats { ops: 1000, errors: 4, moved: 3, ask: 0 }],
        };
        let intervals = Intervals::from(vec![interval]);
        let back = intervals.get(0).unwrap();
        assert_eq!(back.index, 7);
        assert_eq!(back.shards, vec![ShardStats { ops: 1000, errors: 4, moved: 3, ask: 0 }]);
        let b = &back.ops[0];
        assert_eq!(b.latency, s.latency);
        assert_eq!(b.send_lag, s.send_lag);
        assert_eq!((b.ok, b.moved, b.queued, b.failed), (1000, 3, 2, s.failed));
        assert!(back.ops[1].latency.is_empty());
        // Merging stays possible: the decoded histograms have the run's bounds.
        let mut total = OpStats::default();
        total.merge(b);
        total.merge(&back.ops[1]);
        assert_eq!(total.latency.len(), 1000);
        // A live latency histogram of a run's bounds holds about 190 KB of counts.
        assert!(intervals.bytes() < 190_000 / 20, "{} bytes", intervals.bytes());
    }
}
