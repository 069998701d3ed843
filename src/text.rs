//! Cutting text an operator or a host wrote, for messages: every cut lands on a character
//! boundary, whatever the numbers.
//!
//! In: any `&str` and a byte position, byte range or length that may fall inside a
//! multi-byte character (a parser's span, a length limit). Out: the nearest boundary, a
//! range widened to whole characters and clamped to the text, or a prefix of at most so many
//! bytes or characters. Every excerpt and every shortened quote deploy prints goes through
//! here, so none can panic with `byte index N is not a char boundary`.

use std::ops::Range;

/// The largest character boundary of `s` at or before byte `i` (`s.len()` past the end).
pub fn floor_boundary(s: &str, i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    (0..=i).rev().find(|&b| s.is_char_boundary(b)).unwrap_or(0)
}

/// The smallest character boundary of `s` at or after byte `i` (`s.len()` past the end).
pub fn ceil_boundary(s: &str, i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    (i..s.len())
        .find(|&b| s.is_char_boundary(b))
        .unwrap_or(s.len())
}

/// `range` made safe to slice `s` with: clamped to the text, start not after end, and widened
/// to whole characters (a span that ends inside `€` covers all of `€`).
pub fn char_range(s: &str, range: Range<usize>) -> Range<usize> {
    let start = floor_boundary(s, range.start.min(s.len()));
    let end = ceil_boundary(s, range.end.clamp(start, s.len()));
    start..end
}

/// The longest prefix of `s` of at most `max_bytes` bytes that ends on a character boundary.
pub fn prefix(s: &str, max_bytes: usize) -> &str {
    &s[..floor_boundary(s, max_bytes)]
}

/// `s` cut to its first `max_chars` characters, with `...` when something was cut.
pub fn shorten(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// A window of at most `width` characters of `line` around the character at `column`
/// (0-based), for an excerpt of a very long line: (the window's text, how many characters
/// were cut before it). `...` marks each cut side; a line that fits is returned whole.
pub fn window(line: &str, column: usize, width: usize) -> (String, usize) {
    let count = line.chars().count();
    if count <= width {
        return (line.to_string(), 0);
    }
    let start = column.saturating_sub(width / 2).min(count - width);
    let text: String = line.chars().skip(start).take(width).collect();
    let before = if start > 0 { "..." } else { "" };
    let after = if start + width < count { "..." } else { "" };
    (format!("{before}{text}{after}"), start)
}

/// Python's `str.splitlines()` (without keepends): every line break Python knows, `\r\n`
/// as one. For the filters and the INI inventory, which Ansible reads this way.
pub fn python_splitlines(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let is_br = matches!(
            c,
            '\n' | '\r'
                | '\x0b'
                | '\x0c'
                | '\x1c'
                | '\x1d'
                | '\x1e'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        );
        if is_br {
            out.push(&s[start..i]);
            let mut end = i + c.len_utf8();
            if c == '\r'
                && let Some(&(j, '\n')) = chars.peek()
            {
                chars.next();
                end = j + 1;
            }
            start = end;
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn python_splitlines_knows_every_break() {
        assert_eq!(
            super::python_splitlines("a\r\nb\n\nc"),
            vec!["a", "b", "", "c"]
        );
        assert_eq!(super::python_splitlines("a\n"), vec!["a"]);
        assert_eq!(
            super::python_splitlines("a\r\nb\rc\nd"),
            ["a", "b", "c", "d"]
        );
        assert_eq!(super::python_splitlines("a\n\nb\n"), ["a", "", "b"]);
    }

    use super::{ceil_boundary, char_range, floor_boundary, prefix, shorten, window};

    #[test]
    fn cuts_land_on_character_boundaries() {
        let s = "a€b"; // € is bytes 1..4
        assert_eq!((floor_boundary(s, 2), ceil_boundary(s, 2)), (1, 4));
        assert_eq!((floor_boundary(s, 99), ceil_boundary(s, 99)), (5, 5));
        assert_eq!(char_range(s, 2..3), 1..4);
        let backwards = std::ops::Range { start: 4, end: 2 };
        assert_eq!(char_range(s, backwards), 4..4);
        assert_eq!(char_range(s, 7..9), 5..5);
        assert_eq!(prefix(s, 3), "a");
        assert_eq!(prefix(s, 4), "a€");
        assert_eq!(shorten("ééé", 2), "éé...");
        assert_eq!(shorten("éé", 2), "éé");
    }

    #[test]
    fn a_long_line_is_windowed_around_the_column() {
        let line = "é".repeat(50) + "X" + &"é".repeat(50);
        let (text, cut) = window(&line, 50, 11);
        assert_eq!(text, format!("...{}X{}...", "é".repeat(5), "é".repeat(5)));
        assert_eq!(cut, 45);
        assert_eq!(window("short", 3, 11), ("short".to_string(), 0));
    }
}
