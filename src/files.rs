//! The repo's `files/` -> the bytes of each `src:` of deploy.yml: one file, or every file
//! of a folder with its path relative to that folder. Each `src:` is read once per run and
//! shared by every host that gets it (`Arc`), because a folder of binaries times a fleet
//! would not fit in memory otherwise. Nothing here is templated: a file under `files/` is
//! plain data and never holds a rendered secret.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::transport::MAX_TREE_ENTRIES;

/// The folder `src:` paths are relative to.
pub const FILES_DIR: &str = "files";

/// What a `src:` names.
#[derive(Debug)]
pub enum Loaded {
    File(Arc<[u8]>),
    /// Every regular file under the folder, sorted by path (`/`-separated, relative to it).
    Tree(Vec<(String, Arc<[u8]>)>),
}

/// `files/` of one run, read on demand and kept.
#[derive(Debug)]
pub struct Files {
    root: PathBuf,
    loaded: Mutex<HashMap<String, Result<Arc<Loaded>, String>>>,
}

impl Files {
    pub fn new(root: &Path) -> Files {
        Files {
            root: root.to_path_buf(),
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// The file or folder `src` names (checked by [`normalize_src`]); read the first time
    /// it is asked for. The error says what is wrong with `files/<src>`.
    pub fn load(&self, src: &str) -> Result<Arc<Loaded>, String> {
        let rel = normalize_src(src)?;
        // Held while reading: hosts rendered at once wait for the one read of a `src`.
        let mut loaded = self
            .loaded
            .lock()
            .map_err(|_| "files/ could not be read (an earlier read panicked)".to_string())?;
        if let Some(done) = loaded.get(&rel) {
            return done.clone();
        }
        let result = read(&self.root, &rel).map(Arc::new);
        loaded.insert(rel, result.clone());
        result
    }
}

/// A `src:` as written -> its path relative to `files/`, `/`-separated, without `.` parts
/// (empty: `files/` itself). Refuses what would leave `files/`: an absolute path, a drive
/// letter, a `..` part.
pub fn normalize_src(src: &str) -> Result<String, String> {
    let escapes = || format!("src `{src}` is not inside {FILES_DIR}/");
    let bytes = src.as_bytes();
    if src.starts_with(['/', '\\']) || (bytes.len() > 1 && bytes[1] == b':') {
        return Err(format!("{}; write it relative to {FILES_DIR}/", escapes()));
    }
    if src.contains('\0') {
        return Err(format!("src {src:?} contains a NUL"));
    }
    let mut parts = Vec::new();
    for part in src.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => return Err(escapes()),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

fn shown(rel: &str) -> String {
    if rel.is_empty() {
        format!("{FILES_DIR}/")
    } else {
        format!("{FILES_DIR}/{rel}")
    }
}

fn read(root: &Path, rel: &str) -> Result<Loaded, String> {
    let path = root.join(rel);
    let meta = std::fs::symlink_metadata(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{} does not exist", shown(rel)),
        _ => format!("{}: {e}", shown(rel)),
    })?;
    if meta.is_file() {
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", shown(rel)))?;
        return Ok(Loaded::File(bytes.into()));
    }
    if !meta.is_dir() {
        return Err(not_plain(rel, &meta));
    }
    let mut files = Vec::new();
    let mut stack = vec![(path, String::new())];
    while let Some((dir, under)) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
            let name = entry.file_name().into_string().map_err(|n| {
                format!(
                    "{}: the name {:?} is not UTF-8",
                    shown(rel),
                    n.to_string_lossy()
                )
            })?;
            let child_rel = if under.is_empty() {
                name
            } else {
                format!("{under}/{name}")
            };
            let full_rel = if rel.is_empty() {
                child_rel.clone()
            } else {
                format!("{rel}/{child_rel}")
            };
            let meta = std::fs::symlink_metadata(entry.path())
                .map_err(|e| format!("{}: {e}", shown(&full_rel)))?;
            if meta.is_dir() {
                stack.push((entry.path(), child_rel));
            } else if meta.is_file() {
                let bytes = std::fs::read(entry.path())
                    .map_err(|e| format!("{}: {e}", shown(&full_rel)))?;
                files.push((child_rel, Arc::from(bytes)));
                if files.len() > MAX_TREE_ENTRIES {
                    return Err(format!(
                        "{} holds more than {MAX_TREE_ENTRIES} files; deploy manages at most \
                         that many under one dest",
                        shown(rel)
                    ));
                }
            } else {
                return Err(not_plain(&full_rel, &meta));
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Loaded::Tree(files))
}

fn not_plain(rel: &str, meta: &std::fs::Metadata) -> String {
    let what = if meta.file_type().is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file or folder"
    };
    format!(
        "{} is {what}; deploy copies regular files and folders only",
        shown(rel)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn src_stays_inside_files() {
        assert_eq!(normalize_src("a/./b/").as_deref(), Ok("a/b"));
        assert_eq!(normalize_src("models").as_deref(), Ok("models"));
        assert_eq!(normalize_src(".").as_deref(), Ok(""));
        for bad in [
            "../x",
            "a/../../x",
            "a/..",
            "/etc/passwd",
            "\\\\srv\\x",
            "C:\\x",
        ] {
            let err = normalize_src(bad).expect_err(bad);
            assert!(err.contains("is not inside files/"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_folder_is_read_whole_and_links_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("site/img")).expect("mkdir");
        std::fs::write(root.join("site/index.html"), b"<h1>hi</h1>\n").expect("write");
        std::fs::write(root.join("site/img/logo.png"), b"\x89PNG\r\n\x1a\n\0").expect("write");
        std::fs::write(root.join("one.txt"), b"one\n").expect("write");
        let files = Files::new(root);
        let Ok(tree) = files.load("site/") else {
            panic!("site")
        };
        let Loaded::Tree(tree) = &*tree else {
            panic!("a folder")
        };
        let names: Vec<&str> = tree.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["img/logo.png", "index.html"]);
        assert_eq!(&*tree[0].1, b"\x89PNG\r\n\x1a\n\0");
        assert!(
            matches!(&*files.load("one.txt").expect("one"), Loaded::File(b) if &**b == b"one\n")
        );
        let missing = files.load("nope").expect_err("missing");
        assert_eq!(missing, "files/nope does not exist");

        std::os::unix::fs::symlink("/etc/passwd", root.join("site/passwd")).expect("symlink");
        let again = Files::new(root).load("site").expect_err("a link inside");
        assert!(
            again.contains("files/site/passwd is a symbolic link"),
            "{again}"
        );
    }
}
