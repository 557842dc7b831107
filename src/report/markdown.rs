//! The SLO verdicts as Markdown: a one-line overall verdict, then a table of every limit
//! (SLO, limit, observed, verdict). Written for GitHub's job summary (`GITHUB_STEP_SUMMARY`)
//! and for `summary.md`; it reads as plain text too. Presents verdicts; never judges.

use std::fmt::Write;

use crate::check::slo::{Outcome, Verdict, overall};

/// The overall verdict and one table row per verdict, in their order; `No SLOs set.` when
/// there are none. Ends with a newline, so several summaries can be appended one after
/// another.
pub fn verdicts_markdown(verdicts: &[Verdict]) -> String {
    if verdicts.is_empty() {
        return "No SLOs set.\n".to_string();
    }
    let count = |o: Outcome| verdicts.iter().filter(|v| v.outcome == o).count();
    let mut out = format!(
        "**SLOs: {}** ({} of {} violated, {} unknown)\n\n",
        overall(verdicts),
        count(Outcome::Fail),
        verdicts.len(),
        count(Outcome::Unknown)
    );
    out.push_str("| SLO | limit | observed | verdict |\n|---|---|---|---|\n");
    for v in verdicts {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            cell(&v.name),
            cell(&v.limit),
            cell(&v.observed),
            badge(v.outcome)
        );
    }
    out
}

fn badge(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "✅ pass",
        Outcome::Fail => "❌ fail",
        Outcome::Unknown => "❔ unknown",
    }
}

/// `s` as one table cell: on one line, with `|` escaped and no HTML.
fn cell(s: &str) -> String {
    s.replace(['\n', '\r'], " ").replace('|', "\\|").replace('<', "&lt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(name: &str, observed: &str, outcome: Outcome) -> Verdict {
        Verdict {
            name: name.into(),
            slo: name.into(),
            limit: "≤ 5ms".into(),
            observed: observed.into(),
            outcome,
        }
    }

    #[test]
    fn a_table_row_per_verdict_under_the_overall_verdict() {
        let md = verdicts_markdown(&[
            verdict("p99 get", "2.709ms", Outcome::Pass),
            verdict("p99 set", "7.100ms", Outcome::Fail),
            verdict("max_lost_writes", "not measured", Outcome::Unknown),
        ]);
        assert_eq!(
            md,
            "**SLOs: fail** (1 of 3 violated, 1 unknown)\n\n\
             | SLO | limit | observed | verdict |\n|---|---|---|---|\n\
             | p99 get | ≤ 5ms | 2.709ms | ✅ pass |\n\
             | p99 set | ≤ 5ms | 7.100ms | ❌ fail |\n\
             | max_lost_writes | ≤ 5ms | not measured | ❔ unknown |\n"
        );
    }

    #[test]
    fn cells_stay_in_their_column() {
        let md = verdicts_markdown(&[verdict("a|b\n<c>", "x", Outcome::Pass)]);
        assert!(md.ends_with("| a\\|b &lt;c> | ≤ 5ms | x | ✅ pass |\n"), "{md}");
        assert_eq!(verdicts_markdown(&[]), "No SLOs set.\n");
    }
}
