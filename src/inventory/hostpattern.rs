//! Host names as inventory files write them: `web[01:10]`, `db-[a:c]`, `host:2222`, expanded
//! as ansible-core expands them (`plugins/inventory/__init__.py`: `_expand_hostpattern`,
//! `expand_hostname_range`; `parsing/utils/addresses.py`: `parse_address`).

use std::sync::LazyLock;

use regex::Regex;

const NUMERIC_RANGE: &str = r"\[(?:[0-9]+:[0-9]+)(?::[0-9]+)?\]";
const HEX_RANGE: &str = r"\[(?:[0-9a-f]+:[0-9a-f]+)(?::[0-9]+)?\]";
const ALNUM_RANGE: &str = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]";

static BRACKETED_HOSTPORT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\[(.+)\]:([0-9]+)$").expect("regex"));
static HOSTPORT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$").expect("regex"));
static IPV4: LazyLock<Regex> = LazyLock::new(|| {
    let c = format!(r"(?:[01]?[0-9]{{1,2}}|2[0-4][0-9]|25[0-5]|{NUMERIC_RANGE})");
    Regex::new(&format!(r"(?i)^(?:{c}\.){{3}}{c}$")).expect("regex")
});
static IPV6: LazyLock<Regex> = LazyLock::new(|| {
    let c = format!(r"(?:[0-9a-f]{{1,4}}|{HEX_RANGE})");
    let alternatives = [
        format!(r"(?:{c}:){{7}}{c}"),
        format!(r"(?:{c}:){{1,6}}:"),
        format!(r"(?:{c}:)(?::{c}){{1,6}}"),
        format!(r"(?:{c}:){{2}}(?::{c}){{1,5}}"),
        format!(r"(?:{c}:){{3}}(?::{c}){{1,4}}"),
        format!(r"(?:{c}:){{4}}(?::{c}){{1,3}}"),
        format!(r"(?:{c}:){{5}}(?::{c}){{1,2}}"),
        format!(r"(?:{c}:){{6}}(?::{c})"),
        format!(r":(?::{c}){{1,6}}"),
        format!(r"{c}?::"),
        format!(r"(?:0:){{6}}(?:{c}\.){{3}}{c}"),
        format!(r"::(?:ffff:)?(?:{c}\.){{3}}{c}"),
        format!(r"(?:0:){{5}}ffff:(?:{c}\.){{3}}{c}"),
    ];
    Regex::new(&format!(r"(?i)^(?:{})$", alternatives.join("|"))).expect("regex")
});
/// A label: starts with a word character or a range, goes on with those, `_` and `-`, and
/// does not end with `_` or `-` (Python's lookbehind `(?<![_-])`, checked by hand).
static LABEL: LazyLock<String> =
    LazyLock::new(|| format!(r"(?:\w|{ALNUM_RANGE})(?:[\w_-]|{ALNUM_RANGE})*"));
static HOSTNAME: LazyLock<Regex> = LazyLock::new(|| {
    let label = &*LABEL;
    Regex::new(&format!(r"(?i)^{label}(?:\.{label})*$")).expect("regex")
});

/// Ansible's `parse_address(address, allow_ranges=True)`: the host and its `:port`, or `None`
/// when `address` is no host name, IPv4 or IPv6 address.
pub fn parse_address(address: &str) -> Option<(String, Option<u64>)> {
    let mut host = address.to_string();
    let mut port = None;
    for re in [&*BRACKETED_HOSTPORT, &*HOSTPORT] {
        if let Some(c) = re.captures(&host.clone()) {
            host = c[1].to_string();
            port = Some(c[2].parse().ok()?);
        }
    }
    let valid = IPV4.is_match(&host) || IPV6.is_match(&host) || is_hostname(&host);
    valid.then_some((host, port))
}

fn is_hostname(host: &str) -> bool {
    // Python's label ends `(?<![_-])`: no label may end with `_` or `-`. A label's end is a
    // `.` or the end of the name, except inside a range's brackets.
    if !HOSTNAME.is_match(host) {
        return false;
    }
    let mut depth = 0;
    let chars: Vec<char> = host.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            '_' | '-' if depth == 0 && chars.get(i + 1).is_none_or(|n| *n == '.') => {
                return false;
            }
            _ => {}
        }
    }
    true
}

/// Ansible's `_expand_hostpattern`: the host names a pattern like `web[01:03]:2222` stands
/// for, and its port. A pattern that is no address is taken whole, without a port.
pub fn expand(pattern: &str) -> Result<(Vec<String>, Option<u64>), String> {
    let (name, port) = parse_address(pattern).unwrap_or_else(|| (pattern.to_string(), None));
    let names = if name.contains('[') {
        expand_range(&name)?
    } else {
        vec![name]
    };
    Ok((names, port))
}

/// Ansible's `expand_hostname_range`: the first `[begin:end(:step)]` expanded, then the
/// rest, recursively. Numeric (`[01:10]` keeps the zero padding) or alphabetic (`[a:c]`).
pub fn expand_range(line: &str) -> Result<Vec<String>, String> {
    let Some(open) = line.find('[') else {
        return Ok(vec![line.to_string()]);
    };
    let (head, rest) = line.split_at(open);
    let rest = &rest[1..];
    let Some(close) = rest.find(']') else {
        return Err(format!("`{line}`: a host range needs its closing `]`"));
    };
    let (range, tail) = (&rest[..close], &rest[close + 1..]);
    let bounds: Vec<&str> = range.split(':').collect();
    if bounds.len() != 2 && bounds.len() != 3 {
        return Err(format!(
            "`{line}`: host range must be begin:end or begin:end:step"
        ));
    }
    let beg = if bounds[0].is_empty() { "0" } else { bounds[0] };
    let end = bounds[1];
    let step = match bounds.get(2) {
        Some(s) => py_int(s).ok_or_else(|| format!("`{line}`: the step `{s}` is not a number"))?,
        None => 1,
    };
    if end.is_empty() {
        return Err(format!("`{line}`: host range must specify end value"));
    }
    let width = if beg.starts_with('0') && beg.len() > 1 {
        if beg.len() != end.len() {
            return Err(format!(
                "`{line}`: host range must specify equal-length begin and end formats"
            ));
        }
        Some(beg.len())
    } else {
        None
    };
    const LETTERS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    // Python's `string.ascii_letters.index(beg)`: a substring search, so `[ab:cd]` is a..c.
    let items: Vec<String> = match (LETTERS.find(beg), LETTERS.find(end)) {
        (Some(b), Some(e)) if step != 0 => {
            if b > e {
                return Err(format!("`{line}`: host range must have begin <= end"));
            }
            let letters: Vec<char> = LETTERS.chars().collect();
            py_range(b as i128, e as i128 + 1, step)
                .map_err(|e| format!("`{line}`: {e}"))?
                .into_iter()
                .map(|i| letters[i as usize].to_string())
                .collect()
        }
        _ => {
            let (Some(b), Some(e)) = (py_int(beg), py_int(end)) else {
                return Err(format!(
                    "`{line}`: `[{range}]` is neither a numeric nor an alphabetic range"
                ));
            };
            if step == 0 {
                return Err(format!("`{line}`: a host range's step must not be zero"));
            }
            py_range(b, e.saturating_add(1), step)
                .map_err(|e| format!("`{line}`: {e}"))?
                .into_iter()
                .map(|i| match width {
                    Some(w) => zfill(&i.to_string(), w),
                    None => i.to_string(),
                })
                .collect()
        }
    };
    let mut names = Vec::new();
    for item in items {
        let name = format!("{head}{item}{tail}");
        if name.contains('[') {
            names.extend(expand_range(&name)?);
        } else {
            names.push(name);
        }
        if names.len() > MAX_EXPANDED {
            return Err(format!(
                "`{}`: more than {MAX_EXPANDED} host names from one pattern",
                crate::text::shorten(line, 80)
            ));
        }
    }
    Ok(names)
}

/// Python's `int(text)`: surrounding whitespace, a sign, digits with single underscores.
fn py_int(text: &str) -> Option<i128> {
    let t = text.trim();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.chars().all(|c| c.is_ascii_digit() || c == '_')
    {
        return None;
    }
    let v: i128 = digits.replace('_', "").parse().ok()?;
    Some(if neg { -v } else { v })
}

/// Python's `range(start, stop, step)` (step is not 0), at most a million items.
/// At most this many host names from one pattern (nested ranges multiply): more is an
/// error, never a truncated inventory nor unbounded memory.
pub const MAX_EXPANDED: usize = 100_000;

fn py_range(start: i128, stop: i128, step: i128) -> Result<Vec<i128>, String> {
    let span = |a: i128, b: i128, by: i128| {
        a.checked_sub(b)
            .and_then(|d| d.checked_add(by - 1))
            .map(|d| d / by)
    };
    let count = if step > 0 && start < stop {
        span(stop, start, step)
    } else if step < 0 && start > stop {
        step.checked_neg().and_then(|by| span(start, stop, by))
    } else {
        Some(0)
    }
    .unwrap_or(i128::MAX);
    if count > MAX_EXPANDED as i128 {
        return Err(format!(
            "a host range of more than {MAX_EXPANDED} names (at most {MAX_EXPANDED} per pattern)"
        ));
    }
    let mut out = Vec::with_capacity(count as usize);
    let mut i = start;
    while (step > 0 && i < stop) || (step < 0 && i > stop) {
        out.push(i);
        match i.checked_add(step) {
            Some(next) => i = next,
            None => break,
        }
    }
    Ok(out)
}

/// Python's `str.zfill(width)`: zeros after the sign.
fn zfill(s: &str, width: usize) -> String {
    let (sign, digits) = match s.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", s),
    };
    let pad = width.saturating_sub(s.len());
    format!("{sign}{}{digits}", "0".repeat(pad))
}

#[cfg(test)]
mod tests {
    #[test]
    fn huge_ranges_are_an_error_not_a_truncated_or_unbounded_list() {
        let err = super::expand_range("web[0:99999999999]").expect_err("too many");
        assert!(err.contains("at most 100000"), "{err}");
        let err = super::expand_range("a[0:999]b[0:999]").expect_err("nested");
        assert!(err.contains("more than 100000"), "{err}");
        let err = super::expand_range("x[0:170141183460469231731687303715884105727]")
            .expect_err("i128::MAX");
        assert!(err.contains("at most"), "{err}");
        assert_eq!(super::expand_range("a[1:3]").expect("small").len(), 3);
    }

    use super::*;

    fn names(p: &str) -> Vec<String> {
        expand(p).unwrap().0
    }

    #[test]
    fn ranges_expand_as_ansible_expands_them() {
        assert_eq!(names("web[01:03]"), ["web01", "web02", "web03"]);
        assert_eq!(names("db-[a:c]"), ["db-a", "db-b", "db-c"]);
        assert_eq!(names("n[1:10:4]"), ["n1", "n5", "n9"]);
        assert_eq!(names("n[:2]"), ["n0", "n1", "n2"]);
        assert_eq!(names("r[1:2]-[a:b]"), ["r1-a", "r1-b", "r2-a", "r2-b"]);
        assert_eq!(names("x[y:B]"), ["xy", "xz", "xA", "xB"]);
        assert_eq!(
            expand("web01:2222").unwrap(),
            (vec!["web01".into()], Some(2222))
        );
        assert_eq!(
            expand("web[1:2]:22").unwrap(),
            (vec!["web1".into(), "web2".into()], Some(22))
        );
        assert_eq!(expand("[::1]:22").unwrap(), (vec!["::1".into()], Some(22)));
        assert_eq!(expand("10.0.0.1").unwrap(), (vec!["10.0.0.1".into()], None));
        // Not an address (a label ends with `_`): taken whole, the port stays in the name.
        assert_eq!(expand("bad_:22").unwrap(), (vec!["bad_:22".into()], None));
    }

    #[test]
    fn bad_ranges_say_why() {
        for (p, why) in [
            ("w[01:1]", "equal-length"),
            ("w[1:]", "end value"),
            ("w[c:a]", "begin <= end"),
            ("w[1]", "begin:end"),
            ("w[1:x]", "neither"),
        ] {
            let err = expand(p).unwrap_err();
            assert!(err.contains(why), "{p}: {err}");
        }
    }
}
