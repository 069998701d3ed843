//! (desired file, what the host has) -> [`FileChange`]: the action, the metadata changes and
//! a unified diff of the content. Pure: no I/O.

use serde::Serialize;
use similar::udiff::UnifiedHunkHeader;
use similar::{ChangeTag, TextDiff};

use crate::desired::DesiredFile;
use crate::mask::{MaskedView, Masker};
use crate::transport::RemoteFile;

/// Mode a new file gets when the inventory sets none.
pub const DEFAULT_MODE: u32 = 0o644;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Change,
    Unchanged,
    /// A file (or link) `state: absent` or `delete: true` removes.
    Remove,
}

/// A metadata value before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change<T> {
    pub from: Option<T>,
    pub to: T,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileChange {
    pub action: Action,
    pub content_changed: bool,
    /// Octal mode text, e.g. "0640", when it changes (or for a new file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Change<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<Change<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<Change<String>>,
    /// Unified diff of the content (`---`/`+++` headers included), when it changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// The mode the file ends up with.
    #[serde(skip)]
    pub final_mode: u32,
    /// What the operator must know about where the write lands: the destination is a
    /// symbolic link (which the write replaces), or a folder on its way is one (which the
    /// write goes through). Host-written text: masked like the rest when printed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl FileChange {
    /// A file (or link) to remove.
    pub fn removal() -> FileChange {
        FileChange {
            action: Action::Remove,
            content_changed: true,
            mode: None,
            owner: None,
            group: None,
            diff: None,
            final_mode: 0,
            notes: Vec::new(),
        }
    }

    /// Nothing to do (a `state: absent` path with nothing there).
    pub fn unchanged() -> FileChange {
        FileChange {
            action: Action::Unchanged,
            content_changed: false,
            ..FileChange::removal()
        }
    }
}

/// Why a path cannot be planned (e.g. a directory stands where the file should go).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked(pub String);

/// Compares what a file should be with what the host has. Diff text goes through `masker`
/// (and the file's masked view, when its rendering used secrets).
pub fn compare(
    desired: &DesiredFile,
    current: &RemoteFile,
    masker: &Masker,
) -> Result<FileChange, Blocked> {
    let diff = |old: Option<&[u8]>| {
        unified(
            &desired.dest,
            old,
            &desired.content,
            desired.view.as_ref(),
            masker,
        )
    };
    match current {
        RemoteFile::Unusable(why) => Err(Blocked(format!("{}: {why}", desired.dest))),
        // A link is not read through: it may point anywhere on the host (another user's
        // secret), and what it points at is not what deploy manages. The write replaces the
        // link, as Ansible's template does by default; the diff is against nothing, as for a
        // missing file.
        RemoteFile::Missing | RemoteFile::Symlink(_) => {
            let mode = desired.mode.unwrap_or(DEFAULT_MODE);
            let (action, notes) = match current {
                RemoteFile::Symlink(target) => (
                    Action::Change,
                    vec![format!(
                        "a symbolic link to {target}: will be replaced by a file, its target left as it is"
                    )],
                ),
                _ => (Action::Create, Vec::new()),
            };
            Ok(FileChange {
                action,
                content_changed: true,
                mode: Some(Change {
                    from: None,
                    to: octal(mode),
                }),
                owner: desired.owner.clone().map(|to| Change { from: None, to }),
                group: desired.group.clone().map(|to| Change { from: None, to }),
                diff: Some(diff(None)),
                final_mode: mode,
                notes,
            })
        }
        RemoteFile::Present(state) => {
            let final_mode = desired.mode.unwrap_or(state.mode);
            let content_changed = state.content[..] != desired.content[..];
            let mode = (final_mode != state.mode).then(|| Change {
                from: Some(octal(state.mode)),
                to: octal(final_mode),
            });
            let owner = desired
                .owner
                .as_ref()
                .filter(|want| !same_id(want, state.owner.as_deref(), state.uid))
                .map(|want| Change {
                    from: Some(state.owner.clone().unwrap_or_else(|| state.uid.to_string())),
                    to: want.clone(),
                });
            let group = desired
                .group
                .as_ref()
                .filter(|want| !same_id(want, state.group.as_deref(), state.gid))
                .map(|want| Change {
                    from: Some(state.group.clone().unwrap_or_else(|| state.gid.to_string())),
                    to: want.clone(),
                });
            let changed = content_changed || mode.is_some() || owner.is_some() || group.is_some();
            Ok(FileChange {
                action: if changed {
                    Action::Change
                } else {
                    Action::Unchanged
                },
                content_changed,
                mode,
                owner,
                group,
                diff: content_changed.then(|| diff(Some(&state.content))),
                final_mode,
                notes: Vec::new(),
            })
        }
    }
}

/// Whether `want` (a name or numeric id) names the current owner.
fn same_id(want: &str, name: Option<&str>, id: u32) -> bool {
    name == Some(want) || want.parse::<u32>().ok() == Some(id)
}

pub fn octal(mode: u32) -> String {
    format!("{mode:04o}")
}

/// Unified diff text of `old` (None: the file does not exist) to `new`, every line shown
/// through `masker` (and `view` for a file whose rendering used secrets). The diff itself is
/// computed on the real text, so a changed secret still shows as a changed (masked) line.
pub fn unified(
    path: &str,
    old: Option<&[u8]>,
    new: &[u8],
    view: Option<&MaskedView>,
    masker: &Masker,
) -> String {
    // A current file in UTF-16 or with a UTF-8 BOM (Windows editors write those) is
    // compared as the text it holds, and the plan says what its encoding was: deploy
    // writes UTF-8 without a BOM.
    let decoded = old.and_then(other_encoding);
    let note = decoded.as_ref().map(|(name, _)| {
        format!("(the current file is {name}; it is written as UTF-8 without a BOM)\n")
    });
    let old_bytes = match &decoded {
        Some((_, text)) => text.as_bytes(),
        None => old.unwrap_or_default(),
    };
    let texts = (text_of(old_bytes), text_of(new));
    let (Some(old_text), Some(new_text)) = texts else {
        // No text diff of binary content: sizes and hashes say what changes.
        return match old {
            Some(old) => format!("{} -> {}\n", binary_summary(old), size_and_hash(new)),
            None => format!("{}\n", binary_summary(new)),
        };
    };
    let old_lines: Vec<&str> = old_text.split_inclusive('\n').collect();
    let new_lines: Vec<&str> = new_text.split_inclusive('\n').collect();
    let show_old = |i: usize| match view {
        Some(v) => v.old_line(old_lines[i], masker).text().to_string(),
        None => masker.mask(old_lines[i]),
    };
    let show_new = |j: usize| match view.and_then(|v| v.new_lines.get(j)) {
        Some(line) => line.text().to_string(),
        None => masker.mask(new_lines[j]),
    };
    // A path rendered from a secret is masked like the lines.
    let path = &masker.mask(path);
    let old_name = if old.is_some() {
        path.as_str()
    } else {
        "/dev/null"
    };
    let diff = TextDiff::from_lines(old_text, new_text);
    let mut out = String::new();
    for group in diff.grouped_ops(3) {
        if out.is_empty() {
            out.push_str(&format!("--- {old_name}\n+++ {path}\n"));
        }
        out.push_str(&format!("{}\n", UnifiedHunkHeader::new(&group)));
        for op in &group {
            for change in diff.iter_changes(op) {
                let (sign, text) = match change.tag() {
                    ChangeTag::Equal => (' ', change.new_index().map(show_new)),
                    ChangeTag::Delete => ('-', change.old_index().map(show_old)),
                    ChangeTag::Insert => ('+', change.new_index().map(show_new)),
                };
                let mut text = text.unwrap_or_default();
                // A masked line's text may have lost its newline; the real line decides.
                let real_has_newline = change.value().ends_with('\n');
                if real_has_newline && !text.ends_with('\n') {
                    text.push('\n');
                }
                out.push(sign);
                out.push_str(text.trim_end_matches('\n'));
                out.push('\n');
                if !real_has_newline {
                    out.push_str("\\ No newline at end of file\n");
                }
            }
        }
    }
    if out.is_empty() && old_text != new_text {
        out = "(line endings or trailing whitespace differ)\n".to_string();
    }
    match note {
        Some(note) => note + &out,
        None => out,
    }
}

/// Whether `bytes` are binary rather than text: not UTF-8, or holding a NUL.
pub fn is_binary(bytes: &[u8]) -> bool {
    text_of(bytes).is_none()
}

fn text_of(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|t| !t.contains('\0'))
}

/// `binary, 1.2 MiB (sha256 1a2b3c4d…)`.
fn binary_summary(bytes: &[u8]) -> String {
    format!("binary, {}", size_and_hash(bytes))
}

/// `1.2 MiB (sha256 1a2b3c4d…)`.
fn size_and_hash(bytes: &[u8]) -> String {
    let sha = crate::state::sha256_hex(bytes);
    format!("{} (sha256 {}…)", human_size(bytes.len() as u64), &sha[..8])
}

/// `512 B`, `1.5 KiB`, `1.2 MiB`, `3.0 GiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // Rounded to one decimal, 1023.96 KiB would print as 1024.0 KiB: go up a unit first.
    while value >= 1023.95 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// For bytes that start with a UTF-8 BOM or a UTF-16 byte-order mark: the encoding's name
/// and the text without the mark. `None` for anything else (plain UTF-8 or binary).
pub fn other_encoding(bytes: &[u8]) -> Option<(&'static str, String)> {
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return std::str::from_utf8(rest)
            .ok()
            .map(|t| ("UTF-8 with a BOM", t.to_string()));
    }
    let (name, little, rest) = if let Some(r) = bytes.strip_prefix(b"\xFF\xFE") {
        ("UTF-16LE", true, r)
    } else if let Some(r) = bytes.strip_prefix(b"\xFE\xFF") {
        ("UTF-16BE", false, r)
    } else {
        return None;
    };
    if rest.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = rest
        .chunks_exact(2)
        .map(|c| {
            if little {
                u16::from_le_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], c[1]])
            }
        })
        .collect();
    String::from_utf16(&units).ok().map(|t| (name, t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::FileState;

    #[test]
    fn bom_and_utf16_are_named_and_compared_as_text() {
        let masker = Masker::default();
        let new = b"a\r\nb\r\n";
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(new);
        let d = unified("C:\\x", Some(&bom), new, None, &masker);
        assert_eq!(
            d,
            "(the current file is UTF-8 with a BOM; it is written as UTF-8 without a BOM)\n"
        );
        let mut utf16 = b"\xFF\xFE".to_vec();
        for u in "a\r\nc\r\n".encode_utf16() {
            utf16.extend_from_slice(&u.to_le_bytes());
        }
        let d = unified("C:\\x", Some(&utf16), new, None, &masker);
        assert!(d.starts_with("(the current file is UTF-16LE;"), "{d}");
        assert!(d.contains("\n-c\r\n+b\r\n"), "{d:?}");
    }

    fn desired(content: &str, mode: Option<u32>) -> DesiredFile {
        DesiredFile {
            dest: "/etc/x.conf".into(),
            content: content.as_bytes().into(),
            mode,
            owner: None,
            group: None,
            notify: vec![],
            source: crate::desired::FileSource::Template("x.j2".into()),
            from_group: "all".into(),
            view: None,
            validate: None,
        }
    }

    fn present(content: &str, mode: u32) -> RemoteFile {
        RemoteFile::Present(FileState {
            content: content.as_bytes().to_vec(),
            mode,
            uid: 0,
            gid: 0,
            owner: Some("root".into()),
            group: Some("root".into()),
        })
    }

    #[test]
    fn missing_file_is_created_with_default_mode() {
        let c = compare(
            &desired("a\n", None),
            &RemoteFile::Missing,
            &Masker::default(),
        )
        .unwrap();
        assert_eq!(c.action, Action::Create);
        assert_eq!(c.final_mode, 0o644);
        assert!(c.diff.unwrap().contains("+a"));
    }

    #[test]
    fn same_content_and_no_mode_given_is_unchanged_and_keeps_mode() {
        let c = compare(
            &desired("a\n", None),
            &present("a\n", 0o600),
            &Masker::default(),
        )
        .unwrap();
        assert_eq!(c.action, Action::Unchanged);
        assert_eq!(c.final_mode, 0o600);
    }

    #[test]
    fn mode_only_change() {
        let c = compare(
            &desired("a\n", Some(0o640)),
            &present("a\n", 0o644),
            &Masker::default(),
        )
        .unwrap();
        assert_eq!(c.action, Action::Change);
        assert!(!c.content_changed);
        assert_eq!(c.mode.unwrap().to, "0640");
    }

    #[test]
    fn content_change_has_a_unified_diff() {
        let c = compare(
            &desired("a\nb\n", None),
            &present("a\nc\n", 0o644),
            &Masker::default(),
        )
        .unwrap();
        let diff = c.diff.unwrap();
        assert!(diff.contains("-c\n+b\n"), "{diff}");
        assert!(
            diff.starts_with("--- /etc/x.conf\n+++ /etc/x.conf\n"),
            "{diff}"
        );
    }

    #[test]
    fn binary_content_gets_sizes_and_hashes_not_a_diff() {
        let masker = Masker::default();
        let old: Vec<u8> = (0..=255u8).cycle().take(1_258_291).collect();
        let new: Vec<u8> = (0..=255u8).rev().cycle().take(1_363_149).collect();
        let d = unified("/srv/model.bin", Some(&old), &new, None, &masker);
        let (a, b) = (
            &crate::state::sha256_hex(&old)[..8],
            &crate::state::sha256_hex(&new)[..8],
        );
        assert_eq!(
            d,
            format!("binary, 1.2 MiB (sha256 {a}…) -> 1.3 MiB (sha256 {b}…)\n")
        );
        // A NUL makes valid UTF-8 binary too; a new file shows its own size only.
        let d = unified("/srv/x", None, b"a\0b", None, &masker);
        assert!(d.starts_with("binary, 3 B (sha256 "), "{d}");
        // Text that becomes binary is not diffed either.
        let d = unified("/srv/x", Some(b"text\n"), b"\xff\xfe\x00", None, &masker);
        assert!(
            d.starts_with("binary, 5 B (sha256 ") && d.contains(" -> 3 B "),
            "{d}"
        );
        assert!(!is_binary(b"plain text\n") && is_binary(b"\xff") && is_binary(b"a\0"));
    }

    #[test]
    fn sizes_are_human_readable() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(human_size(1_258_291), "1.2 MiB");
        assert_eq!(human_size(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }

    #[test]
    fn a_directory_blocks() {
        let r = compare(
            &desired("a", None),
            &RemoteFile::Unusable("a directory".into()),
            &Masker::default(),
        );
        assert_eq!(r, Err(Blocked("/etc/x.conf: a directory".into())));
    }
}
