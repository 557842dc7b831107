//! Stage 2 for the `[slo]` table: limits checked (percentile limits above 0, a finite
//! throughput above 0) and the op names of `[slo.p99]` and `[slo.p99_9]` checked against the
//! workload's ops, so a typo fails at load time rather than as a verdict nobody can meet.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use serde::de::IgnoredAny;
use toml::Spanned;

use super::Resolver;
use crate::spec::error::SpecError;
use crate::spec::raw::{RawDuration, RawSlo};
use crate::spec::{OpSpec, Slo};

/// A `[slo.p99]`-style table as stage 1 reads it: op name to limit.
type RawLimits = BTreeMap<String, Spanned<RawDuration>>;

impl Resolver<'_> {
    /// The `[slo]` table (empty when absent), checked against the resolved `ops`.
    pub(super) fn slo(&self, raw: RawSlo, ops: &[OpSpec]) -> Result<Slo, SpecError> {
        let duration = |d: Option<Spanned<RawDuration>>| d.map(|d| d.get_ref().0);
        let min_throughput = match raw.min_throughput {
            Some(t) if !(t.get_ref().is_finite() && *t.get_ref() > 0.0) => {
                let message = "must be a number of ops per second above 0, e.g. min_throughput = 900";
                return Err(self.err(t.span(), "slo.min_throughput", message));
            }
            Some(t) => Some(t.into_inner()),
            None => None,
        };
        // Every op is sent some microseconds after it is due (timers, a task switch): a limit
        // of nothing can never be met.
        if let Some(lag) = raw.max_send_lag.as_ref().filter(|l| l.get_ref().0.is_zero()) {
            let message = "must be longer than 0s: no op is sent at the very microsecond it is due, e.g. max_send_lag = \"50ms\"";
            return Err(self.err(lag.span(), "slo.max_send_lag", message));
        }
        Ok(Slo {
            max_failover: duration(raw.max_failover),
            max_disruption: duration(raw.max_disruption),
            max_error_window: duration(raw.max_error_window),
            max_lost_writes: raw.max_lost_writes,
            max_over_admissions: raw.max_over_admissions,
            min_throughput,
            max_send_lag: duration(raw.max_send_lag),
            p99: self.percentile_limits("p99", raw.p99, ops)?,
            p99_9: self.percentile_limits("p99_9", raw.p99_9, ops)?,
        })
    }

    /// `[slo.<table>]`: every key an op's name, every limit above 0; in file order.
    fn percentile_limits(
        &self,
        table: &str,
        raw: Option<RawLimits>,
        ops: &[OpSpec],
    ) -> Result<Vec<(String, Duration)>, SpecError> {
        let mut limits: Vec<(String, Spanned<RawDuration>)> = raw.unwrap_or_default().into_iter().collect();
        // File order, which is the order the verdicts are listed in.
        limits.sort_by_key(|(_, limit)| limit.span().start);
        for (name, limit) in &limits {
            let field = format!("slo.{table}.{name}");
            if !ops.iter().any(|o| o.name == *name) {
                let names: Vec<&str> = ops.iter().map(|o| o.name.as_str()).collect();
                let message =
                    format!("no op is called {name:?}; the workload's ops are {}", names.join(", "));
                let span = key_span(self.src.text, table, name).unwrap_or_else(|| limit.span());
                return Err(self.err(span, field, message));
            }
            if limit.get_ref().0.is_zero() {
                return Err(self.err(limit.span(), field, "must be longer than 0s, e.g. \"5ms\""));
            }
        }
        Ok(limits.into_iter().map(|(name, limit)| (name, limit.get_ref().0)).collect())
    }
}

/// Where the key `name` of `[slo.<table>]` is written in `text`. Stage 1 reads those tables
/// with plain string keys, because serde cannot name the field of a bad value under a
/// spanned key; this second read, on the error path only, keeps the keys' spans.
fn key_span(text: &str, table: &str, name: &str) -> Option<Range<usize>> {
    type Keys = BTreeMap<Spanned<String>, IgnoredAny>;
    #[derive(Deserialize)]
    struct File {
        slo: Option<Tables>,
    }
    #[derive(Deserialize)]
    struct Tables {
        p99: Option<Keys>,
        p99_9: Option<Keys>,
    }
    let tables = toml::from_str::<File>(text).ok()?.slo?;
    let keys = if table == "p99" { tables.p99 } else { tables.p99_9 }?;
    keys.into_keys().find(|k| k.get_ref() == name).map(|k| k.span())
}
