//! How a finished run ended and the exit code for it: decided here once, for the CLI and
//! `compare` alike.

use super::RunReport;
use crate::check;

/// Exit codes, as documented in the README.
pub mod exit {
    /// Everything asked for was done (and, for runs, every SLO met).
    pub const OK: u8 = 0;
    /// A run finished but violated an SLO.
    pub const SLO_VIOLATED: u8 = 1;
    /// Bad input or setup: a malformed file, an unreachable engine, a taken name.
    pub const BAD_INPUT: u8 = 2;
    /// The harness itself failed (a cluster that would not form, an engine error mid-run).
    pub const HARNESS: u8 = 3;
    /// Interrupted by SIGINT or SIGTERM, after cleaning up.
    pub const INTERRUPTED: u8 = 130;
}

/// How a finished run ended, the first that applies: what the CLI exits with and what a
/// comparison records for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Cut short by this signal; its folder holds what it measured.
    Interrupted(&'static str),
    /// Something went wrong in slotstorm or its chaos ([`RunReport::run_errors`]): the run
    /// did not test what it was asked to.
    Broken,
    /// An SLO was violated.
    SloViolated,
    /// Done; every SLO met or none set.
    Passed,
}

impl Ending {
    /// The process's exit code for it.
    pub fn exit_code(self) -> u8 {
        match self {
            Ending::Interrupted(_) => exit::INTERRUPTED,
            Ending::Broken => exit::HARNESS,
            Ending::SloViolated => exit::SLO_VIOLATED,
            Ending::Passed => exit::OK,
        }
    }
}

impl RunReport {
    /// How the run ended: interrupted, else broken by a run error, else by its SLOs.
    pub fn ending(&self) -> Ending {
        if let Some(signal) = self.interrupted {
            Ending::Interrupted(signal)
        } else if !self.run_errors.is_empty() {
            Ending::Broken
        } else if check::slo::overall(&self.verdicts) == check::slo::Outcome::Fail {
            Ending::SloViolated
        } else {
            Ending::Passed
        }
    }

    /// One line on how it ended and where to look.
    pub fn ending_message(&self) -> String {
        let dir = self.dir.display();
        match self.ending() {
            Ending::Interrupted(signal) => format!("interrupted by {signal}; results so far are in {dir}"),
            Ending::Broken => format!(
                "the run did not go as planned ({} error{}), so it did not test what it was asked to; results in {dir}",
                self.run_errors.len(),
                if self.run_errors.len() == 1 { "" } else { "s" },
            ),
            Ending::SloViolated => {
                let failed = self.verdicts.iter().filter(|v| v.outcome == check::slo::Outcome::Fail).count();
                format!(
                    "{failed} of {} SLOs violated; see {}",
                    self.verdicts.len(),
                    self.dir.join("junit.xml").display()
                )
            }
            Ending::Passed => format!("done; results in {dir}"),
        }
    }
}
