//! Writing a history as the run goes: a thread of its own takes records over a channel and
//! appends them to [`super::FILE`] in blocks, each block a complete gzip member (a file of
//! several members is one gzip stream to `gunzip`, `zcat` and [`super::load`]). A block goes
//! out every [`BLOCK_EVERY`] or [`BLOCK_BYTES`], whichever comes first, and is synced to
//! disk, so a run that is killed or crashes leaves everything up to its last block; the
//! loader reads up to there and says where the file ends.
//!
//! The run's event log is read by the same thread at every block, so faults, flags and log
//! lines reach the disk within a block of their happening, not at the end.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;

use super::{End, ErrorRecord, Header, OpRecord, Record, VERSION};
use crate::history::intervals::Sealed;
use crate::history::{ErrorEvent, Event, EventLog, History, OpEvent};

/// A block is written at least this often.
pub const BLOCK_EVERY: Duration = Duration::from_secs(1);

/// Or once this much JSON has gathered.
const BLOCK_BYTES: usize = 1 << 20;

enum Msg {
    Records(Vec<Record>),
    /// Write the rest: the events given (the driver's own, after the log's), then the end.
    Finish {
        events: Vec<Event>,
        elapsed_us: u64,
    },
    /// Write a block now, and say so (tests).
    #[cfg(test)]
    Block(mpsc::Sender<()>),
}

/// Where records go: cheap to clone, never blocks (the channel is unbounded; the thread
/// keeps up with a run's kept ops by a wide margin).
#[derive(Clone)]
pub struct Sink(mpsc::Sender<Msg>);

impl Sink {
    /// A sealed interval, or one sealed again after a late report (the later record of an
    /// index replaces the earlier when loaded).
    pub(in crate::history) fn interval(&self, sealed: &Sealed) {
        self.send(vec![Record::Interval(sealed.clone())]);
    }

    /// Kept ops, in the order the run keeps them.
    pub fn ops(&self, ops: &[OpEvent]) {
        if !ops.is_empty() {
            self.send(ops.iter().map(|o| Record::Op(OpRecord::of(o))).collect());
        }
    }

    /// Failed attempts.
    pub fn errors(&self, errors: &[ErrorEvent]) {
        if !errors.is_empty() {
            self.send(errors.iter().map(|e| Record::Error(ErrorRecord::of(e))).collect());
        }
    }

    fn send(&self, records: Vec<Record>) {
        // The thread is gone only once the journal has been finished or failed; what is
        // sent after that is not the run's (a late report after the end) or is reported
        // by `finish` as the write error.
        let _ = self.0.send(Msg::Records(records));
    }
}

/// The history file being written.
pub struct Journal {
    sink: Sink,
    thread: Option<JoinHandle<io::Result<()>>>,
}

/// What the header says about the run, known when it starts.
pub struct Start<'a> {
    /// Op names, indexed by the ops' kind.
    pub op_names: &'a [String],
    /// Interval length.
    pub interval: Duration,
    /// Warm-up.
    pub warmup: Duration,
    /// The run clock's zero.
    pub started_at: std::time::SystemTime,
}

impl Journal {
    /// Create [`super::FILE`] in `dir`, write its header, and from then on write what the
    /// sinks send, and `events` as it grows (when given).
    ///
    /// # Errors
    /// The file could not be created.
    pub fn start(dir: &Path, start: &Start<'_>, events: Option<EventLog>) -> io::Result<Journal> {
        let file = File::create(dir.join(super::FILE))?;
        let us = |d: Duration| d.as_micros() as u64;
        let header = Record::Header(Header {
            version: VERSION,
            op_names: start.op_names.to_vec(),
            interval_us: us(start.interval),
            warmup_us: us(start.warmup),
            started_at_us: us(start.started_at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default()),
        });
        let (tx, rx) = mpsc::channel();
        let mut writer = Writer { file, buf: Vec::with_capacity(64 * 1024), events, events_written: 0 };
        writer.line(&header)?;
        writer.block()?;
        let thread =
            std::thread::Builder::new().name("history-journal".into()).spawn(move || writer.run(&rx))?;
        Ok(Journal { sink: Sink(tx), thread: Some(thread) })
    }

    /// A sink for the aggregator.
    pub fn sink(&self) -> Sink {
        self.sink.clone()
    }

    /// Write the events not yet written, then `events` (the driver's own), then the end
    /// record with `elapsed`, and close the file.
    ///
    /// # Errors
    /// The first write error of the run.
    pub fn finish(mut self, events: Vec<Event>, elapsed: Duration) -> io::Result<()> {
        let elapsed_us = elapsed.as_micros() as u64;
        let _ = self.sink.0.send(Msg::Finish { events, elapsed_us });
        self.join()
    }

    /// Write a block of what has been sent, and wait until it is on disk.
    #[cfg(test)]
    pub(crate) fn block_now(&self) {
        let (tx, rx) = mpsc::channel();
        let _ = self.sink.0.send(Msg::Block(tx));
        let _ = rx.recv();
    }

    fn join(&mut self) -> io::Result<()> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(written)) => written,
            Some(Err(_)) => Err(io::Error::other("the history writer panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Journal {
    /// A run that ends without finishing (an error, a panic) still gets what was sent on
    /// disk: the thread writes it once every sink is gone or at the next block.
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            // Not joined: sinks may outlive the journal (a driver still unwinding), and the
            // thread ends by itself when the last of them goes.
            drop(thread);
        }
    }
}

/// Write `history` whole into `dir` (a history built elsewhere than in a run: tests, tools).
///
/// # Errors
/// The I/O error.
pub fn save(dir: &Path, history: &History) -> io::Result<()> {
    let start = Start {
        op_names: &history.op_names,
        interval: history.interval,
        warmup: history.warmup,
        started_at: history.started_at,
    };
    let journal = Journal::start(dir, &start, None)?;
    for i in history.intervals.sealed() {
        journal.sink.interval(i);
    }
    journal.sink.ops(&history.ops);
    journal.sink.errors(&history.errors);
    journal.finish(history.events.clone(), history.elapsed)
}

struct Writer {
    file: File,
    buf: Vec<u8>,
    events: Option<EventLog>,
    events_written: usize,
}

impl Writer {
    fn run(mut self, rx: &mpsc::Receiver<Msg>) -> io::Result<()> {
        let mut last = Instant::now();
        loop {
            let wait = BLOCK_EVERY.saturating_sub(last.elapsed());
            match rx.recv_timeout(wait) {
                Ok(Msg::Records(records)) => {
                    for r in &records {
                        self.line(r)?;
                    }
                }
                Ok(Msg::Finish { events, elapsed_us }) => {
                    self.log_events()?;
                    for e in events {
                        self.line(&Record::Event(e))?;
                    }
                    self.line(&Record::End(End { elapsed_us }))?;
                    return self.block();
                }
                #[cfg(test)]
                Ok(Msg::Block(done)) => {
                    self.block()?;
                    let _ = done.send(());
                }
                Err(RecvTimeoutError::Timeout) => {}
                // Every sender gone without a finish: the run failed or panicked. What it
                // measured goes out; the missing end says the file stops early.
                Err(RecvTimeoutError::Disconnected) => {
                    self.log_events()?;
                    return self.block();
                }
            }
            if last.elapsed() >= BLOCK_EVERY || self.buf.len() >= BLOCK_BYTES {
                self.log_events()?;
                self.block()?;
                last = Instant::now();
            }
        }
    }

    fn line(&mut self, record: &Record) -> io::Result<()> {
        serde_json::to_writer(&mut self.buf, record)?;
        self.buf.push(b'\n');
        Ok(())
    }

    /// The event log's records not yet written, in the log's order.
    fn log_events(&mut self) -> io::Result<()> {
        let Some(log) = &self.events else { return Ok(()) };
        // The log is emptied into the history only after the finish; a journal dropped on
        // an error path may find it emptied already, and has nothing more to write.
        let new: Vec<Event> =
            log.lock().expect("event log lock").get(self.events_written..).unwrap_or_default().to_vec();
        self.events_written += new.len();
        for e in new {
            self.line(&Record::Event(e))?;
        }
        Ok(())
    }

    /// One gzip member of what has gathered, appended and synced.
    fn block(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut gz = GzEncoder::new(Vec::with_capacity(self.buf.len() / 4), Compression::fast());
        gz.write_all(&self.buf)?;
        self.file.write_all(&gz.finish()?)?;
        self.file.sync_data()?;
        self.buf.clear();
        Ok(())
    }
}
