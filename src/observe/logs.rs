//! Following the nodes' own logs (through the Docker API) for the lines that mark failover
//! steps, timed by the node's clock: "Marking node … as failing", "Failover election won",
//! "configEpoch set to", "Cluster state changed". They let a report check the poller's
//! timestamps against the cluster's own account.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::query_parameters::LogsOptionsBuilder;
use futures_util::StreamExt;

use super::{EventLog, emit};
use crate::clock::RunClock;
use crate::history::EventKind;

/// What a log line marks, if anything: (`what`, node id it names).
pub fn classify(message: &str) -> Option<(&'static str, Option<&str>)> {
    if let Some(rest) = message.strip_prefix("Marking node ")
        && rest.contains("as failing")
    {
        return Some(("marked_failing", rest.split_whitespace().next()));
    }
    if message.starts_with("Failover election won") {
        return Some(("election_won", None));
    }
    if message.starts_with("configEpoch set to") {
        return Some(("config_epoch", None));
    }
    if message.starts_with("Cluster state changed") {
        return Some(("state_changed", None));
    }
    None
}

/// Split a Redis log line (`1:M 30 Nov 2026 20:55:05.123 # message`) into its wall-clock
/// time and message. Redis in the node image logs in UTC.
pub fn parse_line(line: &str) -> Option<(SystemTime, &str)> {
    let mut parts = line.splitn(7, ' ');
    let _pid_role = parts.next()?;
    let day: u32 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let time = parts.next()?;
    let _level = parts.next()?;
    let message = parts.next()?;
    let (hms, ms) = time.split_once('.')?;
    let mut hms = hms.split(':').map(|v| v.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    let ms: u64 = ms.parse().ok()?;
    let days = days_from_civil(year, month, day);
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + m * 60 + s;
    Some((UNIX_EPOCH + Duration::from_millis(secs * 1000 + ms), message))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Which log lines were seen already. A resumed stream (the container ran again) starts
/// at a whole second, so it repeats lines: those stamped before the last one seen, and as
/// many stamped with that same millisecond as were seen then. Lines within one stream are
/// all new, however many share a millisecond (Valkey logs its election's steps in one).
struct Seen {
    /// The last stamp seen.
    last: SystemTime,
    /// Lines seen with that stamp.
    at_last: usize,
    /// Lines with that stamp still to skip in a resumed stream.
    skip: usize,
}

impl From<SystemTime> for Seen {
    /// Nothing seen yet; lines before `start` are not new.
    fn from(start: SystemTime) -> Seen {
        Seen { last: start, at_last: 0, skip: 0 }
    }
}

impl Seen {
    /// A new stream begins: what it repeats is skipped.
    fn resume(&mut self) {
        self.skip = self.at_last;
    }

    /// Whether a line stamped `at` was not seen before (and note it).
    fn is_new(&mut self, at: SystemTime) -> bool {
        if at < self.last {
            return false;
        }
        if at == self.last && self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        if at == self.last {
            self.at_last += 1;
        } else {
            (self.last, self.at_last, self.skip) = (at, 1, 0);
        }
        true
    }
}

/// Follow `container`'s log from the run's start, emitting a [`EventKind::Log`] for each
/// marking line, until aborted. `ids` maps node ids to node names. A container that stops
/// (killed) ends the stream; following resumes when it runs again.
pub async fn follow(
    docker: Docker,
    node: String,
    container: String,
    ids: HashMap<String, String>,
    clock: RunClock,
    events: EventLog,
) {
    let mut since = clock.started_at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i32;
    let mut seen = Seen::from(clock.started_at);
    loop {
        seen.resume();
        let options =
            LogsOptionsBuilder::default().follow(true).stdout(true).stderr(true).since(since).build();
        let mut stream = docker.logs(&container, Some(options));
        let mut pending = String::new();
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { break };
            pending.push_str(&chunk.to_string());
            while let Some(end) = pending.find('\n') {
                let line: String = pending.drain(..=end).collect();
                let Some((at, message)) = parse_line(line.trim_end()) else { continue };
                if !seen.is_new(at) {
                    continue;
                }
                let Some((what, subject)) = classify(message) else { continue };
                let Ok(offset) = at.duration_since(clock.started_at) else { continue };
                let line = match subject.and_then(|id| ids.get(id)) {
                    Some(name) => format!("{} [{name}]", message.trim()),
                    None => message.trim().to_string(),
                };
                emit(
                    &events,
                    offset.as_micros() as u64,
                    EventKind::Log { node: node.clone(), what: what.into(), line },
                );
            }
        }
        since = seen.last.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i32;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_sharing_a_millisecond_are_each_new_and_a_resumed_stream_skips_what_it_repeats() {
        let t = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        let mut seen = Seen::from(t(1000));
        seen.resume();
        assert!(!seen.is_new(t(999)), "before the run");
        // Valkey's best-ranked replica: election started, won, epoch set, in one ms.
        assert!(seen.is_new(t(1500)) && seen.is_new(t(1500)) && seen.is_new(t(1500)));
        // The container restarts; its log is read again from second 1.
        seen.resume();
        assert!(!seen.is_new(t(1200)));
        assert!(!seen.is_new(t(1500)) && !seen.is_new(t(1500)) && !seen.is_new(t(1500)));
        assert!(seen.is_new(t(1500)), "a fourth line of that ms is new");
        assert!(seen.is_new(t(1600)) && seen.is_new(t(1600)));
    }

    #[test]
    fn redis_log_lines_parse_to_utc_wall_time() {
        let (at, msg) =
            parse_line("1:M 30 Nov 2026 20:55:05.123 # Marking node abc as failing (quorum reached).")
                .unwrap();
        // 2026-11-30T20:55:05.123Z
        assert_eq!(at.duration_since(UNIX_EPOCH).unwrap().as_millis(), 1_796_072_105_123);
        assert_eq!(msg, "Marking node abc as failing (quorum reached).");
        assert_eq!(classify(msg), Some(("marked_failing", Some("abc"))));
        assert!(parse_line("garbage").is_none());
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn failover_lines_are_classified() {
        assert_eq!(classify("Failover election won: I'm the new master."), Some(("election_won", None)));
        assert_eq!(classify("configEpoch set to 7 after successful failover"), Some(("config_epoch", None)));
        assert_eq!(classify("Cluster state changed: ok"), Some(("state_changed", None)));
        assert_eq!(classify("Ready to accept connections"), None);
    }
}
