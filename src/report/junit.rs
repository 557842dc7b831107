//! JUnit XML for CI: one `<testsuite>` per run and one `<testcase>` per SLO verdict, so a
//! CI system lists every limit and shows the violated ones as failures. A failed verdict
//! carries a `<failure>` naming what was observed against the limit; an unknown one (not
//! measured, no samples) is `<skipped>`; a passed one holds the observed value as its
//! output. Presents verdicts; never judges.

use std::fmt::Write;
use std::io;
use std::path::Path;

use crate::check::slo::{Outcome, Verdict};

/// The JUnit XML document for the verdicts of run `suite` (the workload's name): the
/// testsuite is named `suite`, every testcase's classname is `slotstorm.<suite>` and its
/// name is the verdict's.
pub fn junit_xml(suite: &str, verdicts: &[Verdict]) -> String {
    let count = |o: Outcome| verdicts.iter().filter(|v| v.outcome == o).count();
    let counts = format!(
        r#"tests="{}" failures="{}" errors="0" skipped="{}""#,
        verdicts.len(),
        count(Outcome::Fail),
        count(Outcome::Unknown)
    );
    let class = attr(&format!("slotstorm.{suite}"));
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(out, r#"<testsuites name="slotstorm" {counts}>"#);
    let _ = writeln!(out, r#"  <testsuite name="{}" {counts}>"#, attr(suite));
    for v in verdicts {
        let _ = write!(out, r#"    <testcase classname="{class}" name="{}">"#, attr(&v.name));
        let what = format!("{}: observed {}, limit {}", v.slo, v.observed, v.limit);
        match v.outcome {
            Outcome::Fail => {
                let _ = write!(
                    out,
                    r#"<failure message="{}" type="slo">{}</failure>"#,
                    attr(&what),
                    text(&format!("SLO violated: {what}"))
                );
            }
            Outcome::Unknown => {
                let _ = write!(out, r#"<skipped message="{}"/>"#, attr(&what));
            }
            Outcome::Pass => {
                let _ = write!(out, "<system-out>{}</system-out>", text(&what));
            }
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// Write [`junit_xml`] to `path` (e.g. `<results>/junit.xml`), replacing any file there.
///
/// # Errors
/// The I/O error, when the file cannot be written.
pub fn write_junit(path: &Path, suite: &str, verdicts: &[Verdict]) -> io::Result<()> {
    std::fs::write(path, junit_xml(suite, verdicts))
}

/// `s` escaped for an attribute value in double quotes. Line breaks and tabs are written as
/// character references, since a parser turns literal ones into spaces.
fn attr(s: &str) -> String {
    escape(s, true)
}

/// `s` escaped for element content.
fn text(s: &str) -> String {
    escape(s, false)
}

fn escape(s: &str, in_attr: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if in_attr => out.push_str("&quot;"),
            '\'' if in_attr => out.push_str("&apos;"),
            '\n' | '\r' | '\t' if in_attr => {
                let _ = write!(out, "&#{};", u32::from(c));
            }
            '\n' | '\r' | '\t' => out.push(c),
            // XML 1.0 allows no other control characters, not even as references.
            c if u32::from(c) < 0x20 || matches!(c, '\u{FFFE}' | '\u{FFFF}') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use quick_xml::XmlVersion;
    use quick_xml::events::{BytesStart, Event};

    use super::*;

    fn verdict(name: &str, observed: &str, outcome: Outcome) -> Verdict {
        Verdict {
            name: name.into(),
            slo: name.split(' ').next().unwrap_or_default().into(),
            limit: "≤ 5s".into(),
            observed: observed.into(),
            outcome,
        }
    }

    /// One element as parsed: its name and its attributes, unescaped.
    #[derive(Debug)]
    struct Element {
        name: String,
        depth: usize,
        attrs: Vec<(String, String)>,
    }

    impl Element {
        fn get(&self, key: &str) -> &str {
            self.attrs.iter().find(|(k, _)| k == key).map_or("", |(_, v)| v.as_str())
        }
    }

    /// Every element of `xml` in document order, after checking that it is well formed:
    /// it parses to the end, every tag is closed by its own end tag, attribute values
    /// unescape, and there is exactly one root element.
    fn parse(xml: &str) -> Vec<Element> {
        let mut reader = quick_xml::Reader::from_str(xml);
        reader.config_mut().check_end_names = true;
        let mut out = Vec::new();
        let mut depth = 0usize;
        let mut roots = 0;
        let element = |e: &BytesStart, depth: usize| {
            let attrs = e
                .attributes()
                .map(|a| {
                    let a = a.expect("a well-formed attribute");
                    let value =
                        a.normalized_value(XmlVersion::Explicit1_0).expect("an attribute that unescapes");
                    (a.key.as_ref().to_string(), value.into_owned())
                })
                .collect();
            let name = e.name().as_ref().to_string();
            Element { name, depth, attrs }
        };
        loop {
            match reader.read_event().unwrap_or_else(|e| panic!("not well formed: {e}\n{xml}")) {
                Event::Start(e) => {
                    roots += usize::from(depth == 0);
                    out.push(element(&e, depth));
                    depth += 1;
                }
                Event::Empty(e) => {
                    roots += usize::from(depth == 0);
                    out.push(element(&e, depth));
                }
                Event::End(_) => depth -= 1,
                Event::Text(t) => {
                    assert!(depth > 0 || t.xml10_content().trim().is_empty(), "text outside the root")
                }
                Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!((depth, roots), (0, 1), "every element closed, one root:\n{xml}");
        out
    }

    #[test]
    fn the_xml_is_well_formed_counts_and_names_the_violation() {
        let verdicts = [
            verdict("max_failover fault[0] kill redis-3 @10.0s", "6.82s", Outcome::Pass),
            verdict("max_disruption fault[0] kill redis-3 @10.0s", "7.10s", Outcome::Fail),
            verdict("max_lost_writes", "not measured", Outcome::Unknown),
        ];
        let xml = junit_xml("kill-primary", &verdicts);
        let elements = parse(&xml);
        let suite = elements.iter().find(|e| e.name == "testsuite").unwrap();
        assert_eq!(suite.get("name"), "kill-primary");
        assert_eq!((suite.get("tests"), suite.get("failures"), suite.get("skipped")), ("3", "1", "1"));
        let cases: Vec<&Element> = elements.iter().filter(|e| e.name == "testcase").collect();
        assert_eq!(cases.len(), 3);
        assert!(cases.iter().all(|c| c.get("classname") == "slotstorm.kill-primary" && c.depth == 2));
        let (i, failure) = elements.iter().enumerate().find(|(_, e)| e.name == "failure").unwrap();
        assert_eq!(elements[i - 1].get("name"), "max_disruption fault[0] kill redis-3 @10.0s");
        assert_eq!(failure.get("message"), "max_disruption: observed 7.10s, limit ≤ 5s");
        let (i, _) = elements.iter().enumerate().find(|(_, e)| e.name == "skipped").unwrap();
        assert_eq!(elements[i - 1].get("name"), "max_lost_writes");
    }

    #[test]
    fn markup_and_control_characters_are_escaped() {
        let name = "p99 <a & \"b\" 'c'>\nnext\u{1}";
        let xml = junit_xml("we<ird&", &[verdict(name, "<1ms & more>", Outcome::Fail)]);
        let elements = parse(&xml);
        let case = elements.iter().find(|e| e.name == "testcase").unwrap();
        assert_eq!(case.get("name"), "p99 <a & \"b\" 'c'>\nnext\u{FFFD}");
        assert_eq!(case.get("classname"), "slotstorm.we<ird&");
        let failure = elements.iter().find(|e| e.name == "failure").unwrap();
        assert!(failure.get("message").contains("observed <1ms & more>"), "{failure:?}");
        assert!(!xml.contains('\u{1}'));
    }

    #[test]
    fn no_verdicts_is_an_empty_suite() {
        let elements = parse(&junit_xml("smoke", &[]));
        let suite = elements.iter().find(|e| e.name == "testsuite").unwrap();
        assert_eq!((suite.get("tests"), suite.get("failures"), suite.get("skipped")), ("0", "0", "0"));
    }

    #[test]
    fn the_file_is_written() {
        let path = std::env::temp_dir().join(format!("slotstorm-junit-{}.xml", std::process::id()));
        write_junit(&path, "smoke", &[verdict("min_throughput", "10 ops/s", Outcome::Fail)]).unwrap();
        let xml = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(parse(&xml).iter().filter(|e| e.name == "failure").count(), 1);
    }
}
