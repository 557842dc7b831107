//! The classes of errors the client meets, and counts of them by class.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What kind of failure an attempt met, as the report counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ErrorClass {
    /// No reply within the request timeout (or no connection within the connect timeout).
    Timeout,
    /// The node refused the connection, or it could not be reached at all.
    Refused,
    /// The connection broke: reset, broken pipe, closed by the peer.
    Reset,
    /// `CLUSTERDOWN`: the cluster is not serving this slot (or any, with full coverage).
    ClusterDown,
    /// `TRYAGAIN`: a multi-key op during resharding.
    TryAgain,
    /// `MOVED` that reached the application (the driver follows it; counted when it gives up).
    Moved,
    /// `ASK` that reached the application.
    Ask,
    /// `READONLY`: a write reached a replica (a demoted primary).
    ReadOnly,
    /// `LOADING`: the node is loading its dataset.
    Loading,
    /// `NOSCRIPT` after the driver's reload also failed.
    NoScript,
    /// Anything else.
    Other,
}

impl ErrorClass {
    /// Every class, in report order.
    pub const ALL: [ErrorClass; 11] = [
        ErrorClass::Timeout,
        ErrorClass::Refused,
        ErrorClass::Reset,
        ErrorClass::ClusterDown,
        ErrorClass::TryAgain,
        ErrorClass::Moved,
        ErrorClass::Ask,
        ErrorClass::ReadOnly,
        ErrorClass::Loading,
        ErrorClass::NoScript,
        ErrorClass::Other,
    ];

    /// Number of classes.
    pub const COUNT: usize = Self::ALL.len();

    /// Position in [`ErrorClass::ALL`], for counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name used in files and summaries (`timeout`, `clusterdown`, …).
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Timeout => "timeout",
            ErrorClass::Refused => "refused",
            ErrorClass::Reset => "reset",
            ErrorClass::ClusterDown => "clusterdown",
            ErrorClass::TryAgain => "tryagain",
            ErrorClass::Moved => "moved",
            ErrorClass::Ask => "ask",
            ErrorClass::ReadOnly => "readonly",
            ErrorClass::Loading => "loading",
            ErrorClass::NoScript => "noscript",
            ErrorClass::Other => "other",
        }
    }
}

/// Counts by [`ErrorClass`], one named field each: files name every class they count (a
/// class with no errors is left out), so a reader never depends on an order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorCounts {
    /// `timeout`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: u64,
    /// `refused`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refused: u64,
    /// `reset`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reset: u64,
    /// `clusterdown`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub clusterdown: u64,
    /// `tryagain`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tryagain: u64,
    /// `moved`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub moved: u64,
    /// `ask`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ask: u64,
    /// `readonly`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub readonly: u64,
    /// `loading`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub loading: u64,
    /// `noscript`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub noscript: u64,
    /// `other`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub other: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl std::ops::Index<ErrorClass> for ErrorCounts {
    type Output = u64;

    fn index(&self, class: ErrorClass) -> &u64 {
        match class {
            ErrorClass::Timeout => &self.timeout,
            ErrorClass::Refused => &self.refused,
            ErrorClass::Reset => &self.reset,
            ErrorClass::ClusterDown => &self.clusterdown,
            ErrorClass::TryAgain => &self.tryagain,
            ErrorClass::Moved => &self.moved,
            ErrorClass::Ask => &self.ask,
            ErrorClass::ReadOnly => &self.readonly,
            ErrorClass::Loading => &self.loading,
            ErrorClass::NoScript => &self.noscript,
            ErrorClass::Other => &self.other,
        }
    }
}

impl std::ops::IndexMut<ErrorClass> for ErrorCounts {
    fn index_mut(&mut self, class: ErrorClass) -> &mut u64 {
        match class {
            ErrorClass::Timeout => &mut self.timeout,
            ErrorClass::Refused => &mut self.refused,
            ErrorClass::Reset => &mut self.reset,
            ErrorClass::ClusterDown => &mut self.clusterdown,
            ErrorClass::TryAgain => &mut self.tryagain,
            ErrorClass::Moved => &mut self.moved,
            ErrorClass::Ask => &mut self.ask,
            ErrorClass::ReadOnly => &mut self.readonly,
            ErrorClass::Loading => &mut self.loading,
            ErrorClass::NoScript => &mut self.noscript,
            ErrorClass::Other => &mut self.other,
        }
    }
}

impl ErrorCounts {
    /// Errors of every class.
    pub fn total(&self) -> u64 {
        ErrorClass::ALL.iter().map(|&c| self[c]).sum()
    }

    /// Add `other`'s counts into these.
    pub fn add(&mut self, other: &ErrorCounts) {
        for c in ErrorClass::ALL {
            self[c] += other[c];
        }
    }

    /// The classes with errors and their counts, in report order.
    pub fn nonzero(&self) -> impl Iterator<Item = (ErrorClass, u64)> + '_ {
        ErrorClass::ALL.iter().map(|&c| (c, self[c])).filter(|&(_, n)| n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_written_by_name_without_zeros_and_read_back() {
        let mut counts = ErrorCounts::default();
        counts[ErrorClass::ClusterDown] = 3;
        counts[ErrorClass::Timeout] += 2;
        let json = serde_json::to_string(&counts).unwrap();
        assert_eq!(json, r#"{"timeout":2,"clusterdown":3}"#);
        assert_eq!(serde_json::from_str::<ErrorCounts>(&json).unwrap(), counts);
        assert_eq!(counts.total(), 5);
        assert!(serde_json::from_str::<ErrorCounts>(r#"{"timeouts":1}"#).is_err());
    }

    #[test]
    fn every_class_has_its_own_field_and_its_file_name() {
        let mut counts = ErrorCounts::default();
        for (i, c) in ErrorClass::ALL.into_iter().enumerate() {
            counts[c] = i as u64 + 1;
            assert_eq!(serde_json::to_value(c).unwrap(), c.name());
        }
        let v = serde_json::to_value(counts).unwrap();
        for (i, c) in ErrorClass::ALL.into_iter().enumerate() {
            assert_eq!(v[c.name()], i as u64 + 1);
        }
    }
}
