//! Where the repo's inputs are read from: the working tree, or `--rev REV`, a git revision's
//! `hosts/`, `templates/`, `files/` and `secrets/` (and the `-i` inventory, when git tracks
//! it) read with the `git` command (`ls-tree`, `cat-file --batch`) and written to a private temporary folder, laid out as the repository
//! is. The working tree and the index are never touched.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::Error;

/// The folders deploy reads from the repo.
const INPUT_DIRS: [&str; 4] = ["hosts", "templates", crate::files::FILES_DIR, "secrets"];

/// The inputs of a run.
#[derive(Debug)]
pub struct Source {
    /// The folder holding hosts/, templates/, files/ and secrets/.
    pub dir: PathBuf,
    /// The `-i` inventory files and folders (in the snapshot, with `--rev`).
    pub inventories: Vec<PathBuf>,
    /// The commit the inputs come from (`None`: the working tree).
    pub commit: Option<Commit>,
    /// Keeps the extracted revision alive for the run.
    _snapshot: Option<tempfile::TempDir>,
}

/// A resolved commit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Commit {
    /// Full hex id.
    pub id: String,
    /// What the operator asked for (`HEAD~1`, a tag...).
    pub rev: String,
}

impl Commit {
    pub fn short(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }
}

impl Source {
    /// The working tree at `repo`, and the `-i` paths as given.
    pub fn working_tree(repo: &Path, inventories: &[PathBuf]) -> Source {
        Source {
            dir: repo.to_path_buf(),
            inventories: inventories.to_vec(),
            commit: None,
            _snapshot: None,
        }
    }

    /// `repo`'s inputs as they were at `rev`, with each `-i` path (which must be inside the
    /// git repository) as it was then: a folder whole, a file with the `group_vars/`,
    /// `host_vars/` and `deploy.yml` beside it.
    pub fn at_revision(repo: &Path, rev: &str, inventories: &[PathBuf]) -> Result<Source, Error> {
        let fail = |msg: String| Error::usage(format!("--rev {rev}: {msg}"), None);
        let workdir = git_text(repo, &["rev-parse", "--show-toplevel"]).map_err(|e| {
            Error::usage(
                format!("--rev needs a git repository: {e}"),
                Some(format!("{} is not inside one", repo.display())),
            )
        })?;
        let workdir = PathBuf::from(workdir);
        let workdir = workdir.canonicalize().map_err(|e| Error::io(&workdir, e))?;
        let repo_abs = repo.canonicalize().map_err(|e| Error::io(repo, e))?;
        let prefix = repo_abs
            .strip_prefix(&workdir)
            .map_err(|_| fail(format!("{} is outside the repository", repo.display())))?
            .to_path_buf();
        let commit_id = git_text(
            &workdir,
            &[
                "rev-parse",
                "--verify",
                "--end-of-options",
                &format!("{rev}^{{commit}}"),
            ],
        )
        .map_err(|e| fail(format!("no such revision or not a commit ({e})")))?;
        let snapshot = tempfile::Builder::new()
            .prefix("deploy-rev-")
            .tempdir()
            .map_err(|e| Error::io(&std::env::temp_dir(), e))?;

        // Everything wanted, in one listing: the input folders, and each -i path with what
        // sits beside an inventory file.
        let mut wanted: Vec<PathBuf> = INPUT_DIRS.iter().map(|d| prefix.join(d)).collect();
        let mut given_rel = Vec::new();
        for given in inventories {
            let rel = inside(&workdir, given).ok_or_else(|| {
                Error::usage(
                    format!(
                        "--rev {rev}: the inventory {} is outside the git repository {}",
                        given.display(),
                        workdir.display()
                    ),
                    Some(
                        "--rev reads only what git tracks: pass an -i inside the repository, \
                         or leave out --rev"
                            .into(),
                    ),
                )
            })?;
            wanted.push(rel.clone());
            if let Some(dir) = rel.parent() {
                for beside in [
                    "group_vars",
                    "host_vars",
                    crate::inventory::sources::MANIFEST_FILE,
                ] {
                    wanted.push(dir.join(beside));
                }
            }
            given_rel.push(rel);
        }
        let entries = list_tree(&workdir, &commit_id, &wanted).map_err(fail)?;
        // A folder -i takes only itself; the neighbours of a file -i were listed above too,
        // which is harmless (they are what the working tree would show beside it as well).
        write_blobs(&workdir, &entries, snapshot.path()).map_err(fail)?;

        let mut mapped = Vec::new();
        for (given, rel) in inventories.iter().zip(&given_rel) {
            let tracked = rel.as_os_str().is_empty()
                || entries
                    .iter()
                    .any(|e| e.path == *rel || e.path.starts_with(rel));
            if !tracked {
                return Err(Error::usage(
                    format!(
                        "--rev {rev}: the inventory {} is not in that commit",
                        given.display()
                    ),
                    Some(format!("git tracks no {} there", rel.display())),
                ));
            }
            mapped.push(snapshot.path().join(rel));
        }
        Ok(Source {
            dir: snapshot.path().join(&prefix),
            inventories: mapped,
            commit: Some(Commit {
                id: commit_id,
                rev: rev.to_string(),
            }),
            _snapshot: Some(snapshot),
        })
    }
}

/// `path` relative to `workdir` when it is inside it (`path` itself need not exist: a
/// rollback may name an inventory the working tree no longer has).
fn inside(workdir: &Path, path: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(path).ok()?;
    // Resolve symlinks and `..` through the deepest part that exists.
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        rest.push(existing.file_name()?.to_os_string());
        existing = existing.parent()?;
    }
    let mut real = existing.canonicalize().ok()?;
    for part in rest.iter().rev() {
        real.push(part);
    }
    real.strip_prefix(workdir).ok().map(Path::to_path_buf)
}

/// One file of the commit: where it goes (relative to the repository's root), its blob,
/// whether it is a symbolic link.
struct Entry {
    path: PathBuf,
    blob: String,
    link: bool,
}

/// A git command run in `dir` with a clean environment for the repository's location
/// (a `GIT_DIR` of an outer hook must not redirect it); its stdout, or its stderr's first
/// line as the error.
fn git_output(dir: &Path, args: &[&str], input: Option<&[u8]>) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let mut command = Command::new("git");
    command
        .arg("-C")
        .arg(dir)
        .arg("--literal-pathspecs")
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run git: {e}"))?;
    let writer = match (input, child.stdin.take()) {
        (Some(bytes), Some(mut stdin)) => {
            let bytes = bytes.to_vec();
            Some(std::thread::spawn(move || stdin.write_all(&bytes)))
        }
        _ => None,
    };
    let out = child.wait_with_output().map_err(|e| format!("git: {e}"))?;
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(first.trim().to_string());
    }
    Ok(out.stdout)
}

fn git_text(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = git_output(dir, args, None)?;
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

/// The blobs and links of `commit` under `paths` (each a file or a folder, relative to the
/// repository's root), in one `git ls-tree`. Submodules are not inputs.
fn list_tree(workdir: &Path, commit: &str, paths: &[PathBuf]) -> Result<Vec<Entry>, String> {
    let mut args = vec!["ls-tree", "-r", "-z", "--full-tree", commit, "--"];
    let texts: Vec<String> = paths
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if texts.iter().any(|t| t.is_empty()) {
        args.truncate(args.len() - 1);
    } else {
        args.extend(texts.iter().map(String::as_str));
    }
    let out = git_output(workdir, &args, None)?;
    let mut entries = Vec::new();
    for record in out.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        // "<mode> <type> <object>\t<path>"
        let record = String::from_utf8_lossy(record);
        let Some((head, path)) = record.split_once('\t') else {
            return Err(format!("unexpected git ls-tree line {record:?}"));
        };
        let mut fields = head.split(' ');
        let (Some(mode), Some(kind), Some(blob)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(format!("unexpected git ls-tree line {record:?}"));
        };
        if kind != "blob" {
            continue;
        }
        let path = PathBuf::from(path);
        // A tree never holds these, but the snapshot must not be written outside itself.
        if path
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            continue;
        }
        entries.push(Entry {
            path,
            blob: blob.to_string(),
            link: mode == "120000",
        });
    }
    Ok(entries)
}

/// Writes every entry's blob under `to` (folders as needed; links kept as links, so that a
/// revision is read as its working tree would be: files/ refuses links either way), read
/// in one `git cat-file --batch`.
fn write_blobs(workdir: &Path, entries: &[Entry], to: &Path) -> Result<(), String> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut input = String::new();
    for entry in entries {
        input.push_str(&entry.blob);
        input.push('\n');
    }
    let out = git_output(workdir, &["cat-file", "--batch"], Some(input.as_bytes()))?;
    let mut rest: &[u8] = &out;
    for entry in entries {
        // "<object> <type> <size>\n<contents>\n"
        let newline = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or("git cat-file ended early")?;
        let head = String::from_utf8_lossy(&rest[..newline]).into_owned();
        let size: usize = head
            .rsplit(' ')
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("unexpected git cat-file answer {head:?}"))?;
        let body_end = newline
            .checked_add(1)
            .and_then(|start| start.checked_add(size))
            .filter(|end| *end < rest.len())
            .ok_or("git cat-file ended early")?;
        let contents = &rest[newline + 1..body_end];
        rest = &rest[body_end + 1..];
        let at = to.join(&entry.path);
        if let Some(dir) = at.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        if entry.link {
            let target = String::from_utf8_lossy(contents).into_owned();
            std::os::unix::fs::symlink(&target, &at)
                .map_err(|e| format!("{}: {e}", at.display()))?;
        } else {
            std::fs::write(&at, contents).map_err(|e| format!("{}: {e}", at.display()))?;
        }
    }
    Ok(())
}
