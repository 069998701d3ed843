//! The one error type: every failure deploy reports carries the context an operator needs to
//! find it (file and line, or host and path) and, where there is one, a hint.

use std::fmt;
use std::path::{Path, PathBuf};

/// A failure of a whole command (as opposed to one host failing, which is recorded in that
/// host's result and does not stop the others).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A YAML file that does not parse or does not have the expected shape.
    #[error("{}:{line}:{column}: {message}{}", path.display(), excerpt_suffix(excerpt))]
    Yaml {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
        excerpt: String,
    },
    /// Valid YAML that says something deploy cannot accept.
    #[error("{location}: {message}{}", hint_suffix(hint))]
    Config {
        location: String,
        message: String,
        hint: Option<String>,
    },
    /// A template (file, `dest:` or handler command) failed to render for a host.
    #[error("host {host}: {message}")]
    Render { host: String, message: String },
    /// The command line asks for something the inventory does not have.
    #[error("{message}{}", hint_suffix(hint))]
    Usage {
        message: String,
        hint: Option<String>,
    },
    /// A file of the operator's repo could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Checks failed after rendering; no host was contacted. `report` lists the failures.
    #[error("{report}refusing to go on: {count} failed; no host was contacted")]
    Checks { count: String, report: String },
    /// The operator declined the confirmation prompt.
    #[error("apply cancelled; nothing was changed")]
    Cancelled,
}

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn config(location: impl fmt::Display, message: impl Into<String>) -> Error {
        Error::Config {
            location: location.to_string(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn usage(message: impl Into<String>, hint: Option<String>) -> Error {
        Error::Usage {
            message: message.into(),
            hint,
        }
    }

    /// Adds (or replaces) the hint of a `Config` or `Usage` error.
    pub fn with_hint(mut self, new: impl Into<String>) -> Error {
        if let Error::Config { hint, .. } | Error::Usage { hint, .. } = &mut self {
            *hint = Some(new.into());
        }
        self
    }
}

fn hint_suffix(hint: &Option<String>) -> String {
    match hint {
        Some(h) => format!("\n  hint: {h}"),
        None => String::new(),
    }
}

fn excerpt_suffix(excerpt: &str) -> String {
    if excerpt.is_empty() {
        String::new()
    } else {
        format!("\n{excerpt}")
    }
}

/// How many characters of a line an excerpt shows; a longer line (minified JSON written as
/// YAML, say) is shown as a window around the column.
const EXCERPT_WIDTH: usize = 160;

/// A source excerpt in the style of rustc: the numbered line and a caret under `column`
/// (1-based characters; 0 means no column). Empty when the line is not in `text`. Cut on
/// character boundaries ([`crate::text`]), whatever the text.
pub fn excerpt(text: &str, line: usize, column: usize) -> String {
    let Some(src) = line.checked_sub(1).and_then(|i| text.lines().nth(i)) else {
        return String::new();
    };
    let (shown, cut) = crate::text::window(src, column.saturating_sub(1), EXCERPT_WIDTH);
    let number = line.to_string();
    let pad = " ".repeat(number.len());
    let mut out = format!("{pad} |\n{number} | {shown}");
    if column > 0 {
        let mut indent = String::from(if cut > 0 { "   " } else { "" });
        indent.extend(
            src.chars()
                .skip(cut)
                .take((column - 1).saturating_sub(cut))
                .map(|c| if c == '\t' { '\t' } else { ' ' }),
        );
        out.push_str(&format!("\n{pad} | {indent}^"));
    }
    out
}

/// A location in a file, printed `path:line:column` (or `path:line`, or `path`).
#[derive(Debug, Clone)]
pub struct Location {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::excerpt;

    #[test]
    fn excerpt_points_at_the_column() {
        let text = "a: 1\nbb: [\n";
        assert_eq!(excerpt(text, 2, 5), "  |\n2 | bb: [\n  |     ^");
        assert_eq!(excerpt(text, 9, 1), "");
    }

    #[test]
    fn a_long_line_is_shown_around_the_column() {
        let text = format!("{}: [\n", "é".repeat(1000));
        let out = excerpt(&text, 1, 1003);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[1].ends_with("éé: ["), "{out}");
        assert!(lines[1].chars().count() < 200, "{out}");
        let caret = lines[2].chars().count() - 1;
        assert_eq!(lines[1].chars().nth(caret), Some('['), "{out}");
    }
}
