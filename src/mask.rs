//! Secret values -> text that never shows them. Every value that came from a secret file is
//! replaced by `<secret:KEY>` wherever deploy prints (diffs, JSON, errors, handler commands
//! and output), in the forms deploy can know: as is, base64, JSON-escaped, shell-quoted and
//! YAML-quoted. Rendered files are also rendered a second time with each secret replaced by a
//! unique token (a canary): a line that differs between the two renderings came from a secret,
//! and is shown with its secrets masked when the token survived intact, or as
//! `<line with secret changed>` when a filter transformed it beyond recognition.

use base64::Engine as _;

/// Values shorter than this are not searched for in free text (a secret `1` would mask every
/// `1`); the canary rendering still covers them in rendered files.
const MIN_MASKED_LEN: usize = 4;

/// Shown instead of a line that came from a secret in a way deploy cannot mask precisely.
pub const OPAQUE_LINE: &str = "<line with secret changed>";

/// One secret: its variable name (dotted for nested values) and its plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    pub key: String,
    pub value: String,
}

/// Replaces the known forms of every secret value in text.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    /// (form as it may appear, what to show instead), longest form first.
    forms: Vec<(String, String)>,
}

impl Masker {
    pub fn new(secrets: &[Secret]) -> Masker {
        let mut forms = Vec::new();
        for s in secrets {
            if s.value.chars().count() < MIN_MASKED_LEN {
                continue;
            }
            let mask = format!("<secret:{}>", s.key);
            for form in known_forms(&s.value) {
                forms.push((form, mask.clone()));
            }
        }
        forms.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        forms.dedup_by(|a, b| a.0 == b.0);
        Masker { forms }
    }

    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    /// The same masker, also masking `extra` (values that are secret wherever they came
    /// from, such as a become password typed at `-K` or kept in plain group_vars).
    pub fn with(&self, extra: &[Secret]) -> Masker {
        let mut more = Masker::new(extra);
        more.forms.extend(self.forms.iter().cloned());
        more.forms
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        more.forms.dedup_by(|a, b| a.0 == b.0);
        more
    }

    /// `text` with every known form of every secret replaced by its mask.
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (form, mask) in &self.forms {
            if out.contains(form.as_str()) {
                out = out.replace(form.as_str(), mask);
            }
        }
        out
    }
}

/// The forms a value takes through the filters templates use on secrets.
fn known_forms(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_string()];
    let b64 = base64::engine::general_purpose::STANDARD.encode(value.as_bytes());
    forms.push(b64.trim_end_matches('=').to_string());
    forms.push(b64);
    if let Ok(json) = serde_json::to_string(value) {
        forms.push(json[1..json.len() - 1].to_string());
    }
    let ascii_json: String = value
        .chars()
        .flat_map(|c| {
            if c.is_ascii() {
                vec![c.to_string()]
            } else {
                let mut buf = [0u16; 2];
                c.encode_utf16(&mut buf)
                    .iter()
                    .map(|u| format!("\\u{u:04x}"))
                    .collect()
            }
        })
        .collect();
    forms.push(ascii_json);
    forms.push(value.replace('\'', "'\"'\"'"));
    forms.push(value.replace('\'', "''"));
    forms.retain(|f| f.chars().count() >= MIN_MASKED_LEN);
    forms
}

/// A rendered file's lines as they may be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShownLine {
    /// Shown as is (already masked).
    Text(String),
    /// Came from a secret in a way that cannot be masked precisely.
    Opaque,
}

impl ShownLine {
    pub fn text(&self) -> &str {
        match self {
            ShownLine::Text(t) => t,
            ShownLine::Opaque => OPAQUE_LINE,
        }
    }
}

/// How to show a file whose rendering used secrets: each new line, and for lines of the
/// file's current content on the host, how to recognise lines that held a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedView {
    pub new_lines: Vec<ShownLine>,
    /// For each secret-derived line: its literal pieces around the secret tokens, and how it
    /// is shown. A current line made of the same pieces is the same line with some secret.
    secret_lines: Vec<(Vec<String>, ShownLine)>,
    /// The literal start of each secret-derived line (what the real and canary renderings
    /// share before the secret); a current line starting the same way is treated as one that
    /// held a secret.
    secret_heads: Vec<String>,
    /// Nothing of the file may be shown.
    all_opaque: bool,
}

/// A canary token standing for one secret value in the second rendering.
#[derive(Debug, Clone)]
pub struct Canary {
    pub token: String,
    pub secret: Secret,
}

impl MaskedView {
    /// Compares the real rendering with the canary rendering. `None` when they are equal
    /// (the file used no secret).
    pub fn build(
        real: &str,
        canary: &str,
        canaries: &[Canary],
        masker: &Masker,
        canary_masker: &Masker,
    ) -> Option<MaskedView> {
        if real == canary {
            return None;
        }
        let real_lines: Vec<&str> = real.split_inclusive('\n').collect();
        let canary_lines: Vec<&str> = canary.split_inclusive('\n').collect();
        let mut new_lines = Vec::with_capacity(real_lines.len());
        let mut secret_lines = Vec::new();
        let mut secret_heads = Vec::new();
        if real_lines.len() == canary_lines.len() {
            for (r, c) in real_lines.iter().zip(&canary_lines) {
                if r == c {
                    new_lines.push(ShownLine::Text(masker.mask(r)));
                    continue;
                }
                let shown = shown_secret_line(r, c, canaries, masker, canary_masker);
                let pieces = split_on_tokens(c, canaries);
                secret_lines.push((pieces, shown.clone()));
                let head = common_prefix(r, c).trim();
                if head.len() >= 2 {
                    secret_heads.push(head.to_string());
                }
                new_lines.push(shown);
            }
        } else {
            // The secret changed the file's shape (e.g. it drives an `if`): only lines the
            // canary rendering has too are known to be free of it.
            for r in &real_lines {
                if canary_lines.contains(r) {
                    new_lines.push(ShownLine::Text(masker.mask(r)));
                } else {
                    new_lines.push(ShownLine::Opaque);
                }
            }
        }
        Some(MaskedView {
            new_lines,
            secret_lines,
            secret_heads,
            all_opaque: false,
        })
    }

    /// A view that shows no line of the file: for a file whose secret use deploy could not
    /// follow.
    pub fn opaque(real: &str) -> MaskedView {
        MaskedView {
            new_lines: real
                .split_inclusive('\n')
                .map(|_| ShownLine::Opaque)
                .collect(),
            secret_lines: Vec::new(),
            secret_heads: Vec::new(),
            all_opaque: true,
        }
    }

    /// How to show a line of the file's current content on the host.
    pub fn old_line(&self, line: &str, masker: &Masker) -> ShownLine {
        if self.all_opaque {
            return ShownLine::Opaque;
        }
        for (pieces, shown) in &self.secret_lines {
            if matches_pieces(line, pieces) {
                return shown.clone();
            }
        }
        if self
            .secret_heads
            .iter()
            .any(|h| line.trim_start().starts_with(h.as_str()))
        {
            return ShownLine::Opaque;
        }
        ShownLine::Text(masker.mask(line))
    }
}

/// How to show a line that came from a secret: with each token back as `<secret:KEY>` when the
/// secret went in as is; else masked by known forms when that explains every difference
/// between the two renderings (e.g. `b64encode`); else not at all.
pub fn shown_secret_line(
    real: &str,
    canary: &str,
    canaries: &[Canary],
    masker: &Masker,
    canary_masker: &Masker,
) -> ShownLine {
    let mut rebuilt = canary.to_string();
    let mut shown = canary.to_string();
    for c in canaries {
        if canary.contains(&c.token) {
            rebuilt = rebuilt.replace(&c.token, &c.secret.value);
            shown = shown.replace(&c.token, &format!("<secret:{}>", c.secret.key));
        }
    }
    if rebuilt == real {
        return ShownLine::Text(masker.mask(&shown));
    }
    let masked = masker.mask(real);
    if masked == canary_masker.mask(canary) {
        ShownLine::Text(masked)
    } else {
        ShownLine::Opaque
    }
}

fn common_prefix<'a>(a: &'a str, b: &str) -> &'a str {
    let n = a
        .char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or(a.len().min(b.len()), |((i, _), _)| i);
    &a[..n]
}

fn split_on_tokens(line: &str, canaries: &[Canary]) -> Vec<String> {
    let mut pieces = vec![line.to_string()];
    for c in canaries {
        pieces = pieces
            .iter()
            .flat_map(|p| {
                p.split(c.token.as_str())
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect();
    }
    pieces
}

/// Whether `line` is `pieces` joined by some non-empty text.
fn matches_pieces(line: &str, pieces: &[String]) -> bool {
    if pieces.len() < 2 {
        return false;
    }
    let (first, last) = (&pieces[0], &pieces[pieces.len() - 1]);
    let Some(mut rest) = line.strip_prefix(first.as_str()) else {
        return false;
    };
    let Some(body) = rest.strip_suffix(last.as_str()) else {
        return false;
    };
    rest = body;
    for middle in &pieces[1..pieces.len() - 1] {
        match rest.find(middle.as_str()) {
            Some(i) if i > 0 => rest = &rest[i + middle.len()..],
            _ => return false,
        }
    }
    !rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(key: &str, value: &str) -> Secret {
        Secret {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn masks_known_forms() {
        let m = Masker::new(&[secret("api_key", "sk-abc'123"), secret("pin", "12")]);
        assert_eq!(m.mask("key=sk-abc'123"), "key=<secret:api_key>");
        assert_eq!(m.mask("q='sk-abc'\"'\"'123'"), "q='<secret:api_key>'");
        let b64 = base64::engine::general_purpose::STANDARD.encode("sk-abc'123");
        assert_eq!(m.mask(&format!("x: {b64}")), "x: <secret:api_key>");
        // Too short to search for.
        assert_eq!(m.mask("port 12"), "port 12");
    }

    #[test]
    fn canary_lines() {
        let canaries = vec![Canary {
            token: "TOKEN0X".into(),
            secret: secret("master_key", "mkt-real"),
        }];
        let m = Masker::new(&[secret("master_key", "mkt-real")]);
        let real = "a: 1\nkey: mkt-real\nenc: bWt0LXJlYWw=\n";
        let canary = "a: 1\nkey: TOKEN0X\nenc: VE9LRU4wWA==\n";
        let cm = Masker::new(&[secret("master_key", "TOKEN0X")]);
        let v = MaskedView::build(real, canary, &canaries, &m, &cm).unwrap();
        assert_eq!(v.new_lines[0], ShownLine::Text("a: 1\n".into()));
        assert_eq!(
            v.new_lines[1],
            ShownLine::Text("key: <secret:master_key>\n".into())
        );
        // base64 of the secret: explained by the known forms on both sides.
        assert_eq!(
            v.new_lines[2],
            ShownLine::Text("enc: <secret:master_key>\n".into())
        );
        // An old value of the same line is recognised and masked the same way.
        assert_eq!(
            v.old_line("key: mkt-OLD\n", &m),
            ShownLine::Text("key: <secret:master_key>\n".into())
        );
        // The old value's base64 is of a value deploy no longer knows: hidden.
        assert_eq!(v.old_line("enc: b2xk\n", &m), ShownLine::Opaque);
        // Transformed in a way no known form explains: hidden.
        let v = MaskedView::build("h: 5f2a\n", "h: 99c1\n", &canaries, &m, &cm).unwrap();
        assert_eq!(v.new_lines[0], ShownLine::Opaque);
        assert_eq!(v.old_line("h: 0000\n", &m), ShownLine::Opaque);
        assert_eq!(v.old_line("a: 2\n", &m), ShownLine::Text("a: 2\n".into()));
        assert!(MaskedView::build("same\n", "same\n", &canaries, &m, &cm).is_none());
    }
}
