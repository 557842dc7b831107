//! What can be wrong with a spec file, and where: every error carries the file, a 1-based
//! line and column, and the path of the field it concerns, and prints as one line that an
//! editor can jump to.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_path_to_error::Segment;

/// Why a spec file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file itself could not be read.
    #[error("{}: cannot read the file: {source}", .path.display())]
    Read {
        /// The file, as given.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The file was read, but something in it is wrong.
    #[error("{at}")]
    Invalid {
        /// Where, and what.
        at: Box<Located>,
    },
}

/// An error's place in a file and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The file, as given to [`super::load`].
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// The field's path in the file's structure, e.g. `op[2].weight` (array indexes count
    /// from 0, in file order), or `(top level)`.
    pub field: String,
    /// What is wrong and what is allowed instead.
    pub message: String,
}

impl fmt::Display for Located {
    /// `path:line:column: field: message`, on one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}: {}", self.path.display(), self.line, self.column, self.field, self.message)
    }
}

impl SpecError {
    /// The place and message, when the error is about the file's content.
    pub fn located(&self) -> Option<&Located> {
        match self {
            SpecError::Read { .. } => None,
            SpecError::Invalid { at } => Some(at),
        }
    }
}

/// Positions and paths for errors in one file. Stage 2 makes its errors through this, so
/// every message is placed the same way.
pub(super) struct Source<'a> {
    /// The file, for messages.
    pub path: &'a Path,
    /// Its text, for turning byte offsets into lines and columns.
    pub text: &'a str,
}

impl Source<'_> {
    /// An error at byte `span.start` about `field`.
    pub fn error(
        &self,
        span: Range<usize>,
        field: impl fmt::Display,
        message: impl fmt::Display,
    ) -> SpecError {
        let (line, column) = line_column(self.text, span.start);
        SpecError::Invalid {
            at: Box::new(Located {
                path: self.path.to_path_buf(),
                line,
                column,
                field: field.to_string(),
                // One line, whatever the message: callers print errors as they are.
                message: message.to_string().replace('\n', " "),
            }),
        }
    }

    /// An error from parsing or deserializing, placed by the span toml reports and named by
    /// the path serde walked.
    pub fn deserialize(&self, error: serde_path_to_error::Error<toml::de::Error>) -> SpecError {
        let path = field_path(error.path().iter());
        let inner = error.into_inner();
        let span = inner.span().unwrap_or(0..0);
        let message = plain_message(inner.message());
        // serde names a missing field only in the message; the path stops at its table.
        let field = match missing_field(inner.message()) {
            Some(missing) if path.is_empty() => missing.to_string(),
            Some(missing) => format!("{path}.{missing}"),
            None if path.is_empty() => TOP_LEVEL.to_string(),
            None => path,
        };
        self.error(span, field, message)
    }

    /// A TOML syntax error. The parser knows no field, so the path is read off the text:
    /// the table the error sits in and the key on its line, if any.
    pub fn syntax(&self, error: &toml::de::Error) -> SpecError {
        let span = error.span().unwrap_or(0..0);
        let field = field_at(self.text, span.start);
        self.error(span, field, format_args!("invalid TOML: {}", error.message()))
    }
}

/// The field name used for errors that belong to no field.
const TOP_LEVEL: &str = "(top level)";

/// 1-based line and character column of byte `offset` in `text`.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// `op[2].weight` from serde's path, leaving out the wrappers `toml::Spanned` adds.
fn field_path<'a>(segments: impl Iterator<Item = &'a Segment>) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } if key.starts_with("$__serde_spanned") => {}
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// The field named by serde's "missing field `x`".
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.strip_suffix('`')
}

/// serde's messages, with Rust type names put in words.
fn plain_message(message: &str) -> String {
    const WORDS: [(&str, &str); 6] = [
        ("expected u64", "expected a whole number, 0 or more"),
        ("expected u32", "expected a whole number, 0 or more"),
        ("expected u16", "expected a whole number, 0 or more"),
        ("expected usize", "expected a whole number, 0 or more"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
    ];
    // TOML calls them tables and arrays.
    let mut message = message
        .replace("invalid type: map", "invalid type: table")
        .replace("expected a sequence", "expected an array");
    for (rust, words) in WORDS {
        if let Some(head) = message.strip_suffix(rust) {
            message = format!("{head}{words}");
        }
    }
    if let Some(field) = missing_field(&message) {
        message = format!("missing field `{field}`, which is required here");
    }
    message
}

/// The field a byte offset lies in, read off the text: the last table header before it
/// (`[[op]]` headers counted into `op[i]`) and the bare key at the start of its line.
fn field_at(text: &str, offset: usize) -> String {
    let (line_no, _) = line_column(text, offset);
    let mut table = String::new();
    let mut arrays: Vec<(String, usize)> = Vec::new();
    let mut current = "";
    for (i, line) in text.lines().enumerate() {
        if i + 1 == line_no {
            current = line;
            break;
        }
        if let Some(name) = header(line, &mut arrays) {
            table = name;
        }
    }
    if let Some(name) = header(current, &mut arrays) {
        return name;
    }
    let key = current.split_once('=').map(|(k, _)| k.trim()).filter(|k| {
        !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    });
    match (table.is_empty(), key) {
        (true, None) => TOP_LEVEL.to_string(),
        (true, Some(key)) => key.to_string(),
        (false, None) => table,
        (false, Some(key)) => format!("{table}.{key}"),
    }
}

/// The table a header line opens (`[load]` → `load`, the third `[[op]]` → `op[2]`).
fn header(line: &str, arrays: &mut Vec<(String, usize)>) -> Option<String> {
    let line = line.trim_start();
    if let Some(rest) = line.strip_prefix("[[") {
        let name = rest.split("]]").next().unwrap_or_default().trim().to_string();
        let index = match arrays.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => {
                *count += 1;
                *count - 1
            }
            None => {
                arrays.push((name.clone(), 1));
                0
            }
        };
        return Some(format!("{name}[{index}]"));
    }
    let rest = line.strip_prefix('[')?;
    Some(rest.split(']').next().unwrap_or_default().trim().to_string())
}

/// The most a workload, chaos or script file may hold: far more than any real one, and a
/// bound on what a mistaken path (a log, an image) costs to read.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Read a workload, chaos or script file whole, as UTF-8 text, without ever hanging: what is
/// not a regular file (a directory, a FIFO, a socket, a device) is refused before it is
/// opened for reading, and so is a file over 4 MiB.
///
/// # Errors
/// [`SpecError::Read`] for a file that cannot be read or is not a regular one;
/// [`SpecError::Invalid`] at the line and column of the first byte that is not UTF-8.
pub fn read_text(path: &Path) -> Result<String, SpecError> {
    let refuse = |why: String| SpecError::Read { path: path.to_path_buf(), source: io::Error::other(why) };
    let meta =
        std::fs::metadata(path).map_err(|source| SpecError::Read { path: path.to_path_buf(), source })?;
    if meta.is_dir() {
        return Err(refuse("it is a directory, not a file".into()));
    }
    if !meta.is_file() {
        return Err(refuse(
            "it is not a regular file (a FIFO, a socket or a device?): give the path of a file".into(),
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(refuse(format!(
            "it is {} bytes long, more than the {MAX_FILE_BYTES} a file may have",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|source| SpecError::Read { path: path.to_path_buf(), source })?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let bytes = e.into_bytes();
        // Everything before the bad byte is valid text: count lines and columns in it.
        let before = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
        let (line, column) = line_column(before, valid);
        SpecError::Invalid {
            at: Box::new(Located {
                path: path.to_path_buf(),
                line,
                column,
                field: field_at(before, before.len()),
                message: format!("byte 0x{:02x} is not UTF-8: files are UTF-8 text", bytes[valid]),
            }),
        }
    })
}

/// `value` as an error message quotes it: whole when short, else its first 40 characters
/// and how long it is (a 1 MB key is not worth echoing).
pub(super) fn shorten(value: &str) -> String {
    const KEEP: usize = 40;
    if value.chars().count() <= KEEP + 10 {
        return value.to_string();
    }
    let head: String = value.chars().take(KEEP).collect();
    format!("{head}… ({} characters)", value.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 4), (1, 5));
        assert_eq!(line_column(text, 6), (2, 1));
        // "bé = " is six bytes but five characters.
        assert_eq!(line_column(text, 6 + "bé = ".len()), (2, 6));
        assert_eq!(line_column(text, text.len()), (3, 1));
    }

    #[test]
    fn syntax_errors_are_named_by_table_and_key() {
        let text = "name = 'x'\n[[op]]\nname = 'a'\n[[op]]\nname = 'b' x\n[load]\n";
        let offset = text.find(" x").unwrap() + 1;
        assert_eq!(field_at(text, offset), "op[1].name");
        assert_eq!(field_at(text, 0), "name");
        assert_eq!(field_at(text, text.find("[load]").unwrap()), "load");
        assert_eq!(field_at("junk junk", 5), TOP_LEVEL);
    }

    #[test]
    fn rust_type_names_are_put_in_words() {
        assert_eq!(
            plain_message("invalid type: map, expected a sequence"),
            "invalid type: table, expected an array"
        );
        assert_eq!(
            plain_message("invalid value: integer `-1`, expected u32"),
            "invalid value: integer `-1`, expected a whole number, 0 or more"
        );
    }
}
