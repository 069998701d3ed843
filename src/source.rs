//! Where the repo's inputs are read from: the working tree, or `--rev REV`, a git revision's
//! `hosts/`, `templates/`, `files/` and `secrets/` (and the `-i` inventory, when git tracks
//! it) read with gix and written to a private temporary folder, laid out as the repository
//! is. The working tree and the index are never touched.

use std::path::{Path, PathBuf};

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
        let git = gix::discover(repo).map_err(|e| {
            Error::usage(
                format!("--rev needs a git repository: {e}"),
                Some(format!("{} is not inside one", repo.display())),
            )
        })?;
        let workdir = git
            .workdir()
            .ok_or_else(|| fail("the repository has no working tree".into()))?;
        let workdir = workdir.canonicalize().map_err(|e| Error::io(workdir, e))?;
        let repo_abs = repo.canonicalize().map_err(|e| Error::io(repo, e))?;
        let prefix = repo_abs
            .strip_prefix(&workdir)
            .map_err(|_| fail(format!("{} is outside the repository", repo.display())))?
            .to_path_buf();
        let id = git
            .rev_parse_single(rev)
            .map_err(|e| fail(format!("no such revision ({e})")))?;
        let commit = id
            .object()
            .map_err(|e| fail(e.to_string()))?
            .peel_to_commit()
            .map_err(|e| fail(format!("not a commit ({e})")))?;
        let tree = commit.tree().map_err(|e| fail(e.to_string()))?;
        let snapshot = tempfile::Builder::new()
            .prefix("deploy-rev-")
            .tempdir()
            .map_err(|e| Error::io(&std::env::temp_dir(), e))?;
        // Extracts `path` (relative to the repository's root) if that commit has it; whether
        // it is a folder.
        let copy = |path: &Path| -> Result<Option<bool>, Error> {
            if path.as_os_str().is_empty() {
                extract(&git, tree.id, snapshot.path()).map_err(fail)?;
                return Ok(Some(true));
            }
            let entry = tree
                .lookup_entry_by_path(path)
                .map_err(|e| fail(e.to_string()))?;
            let Some(entry) = entry else {
                return Ok(None);
            };
            extract(&git, entry.object_id(), &snapshot.path().join(path)).map_err(fail)?;
            Ok(Some(entry.mode().is_tree()))
        };
        for dir in INPUT_DIRS {
            copy(&prefix.join(dir))?;
        }
        let mut mapped = Vec::new();
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
            let Some(is_folder) = copy(&rel)? else {
                return Err(Error::usage(
                    format!(
                        "--rev {rev}: the inventory {} is not in that commit",
                        given.display()
                    ),
                    Some(format!("git tracks no {} there", rel.display())),
                ));
            };
            if let Some(dir) = rel.parent().filter(|_| !is_folder) {
                for beside in [
                    "group_vars",
                    "host_vars",
                    crate::inventory::sources::MANIFEST_FILE,
                ] {
                    copy(&dir.join(beside))?;
                }
            }
            mapped.push(snapshot.path().join(&rel));
        }
        Ok(Source {
            dir: snapshot.path().join(&prefix),
            inventories: mapped,
            commit: Some(Commit {
                id: commit.id().to_string(),
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

/// Writes the tree (or blob) `id` to `to`, recursively.
fn extract(git: &gix::Repository, id: gix::ObjectId, to: &Path) -> Result<(), String> {
    let object = git.find_object(id).map_err(|e| e.to_string())?;
    match object.kind {
        gix::object::Kind::Blob => {
            if let Some(dir) = to.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            std::fs::write(to, &object.data).map_err(|e| format!("{}: {e}", to.display()))
        }
        gix::object::Kind::Tree => {
            std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
            let tree = object.into_tree();
            let entries: Vec<(String, gix::ObjectId, gix::object::tree::EntryMode)> = tree
                .iter()
                .filter_map(Result::ok)
                .map(|e| (e.filename().to_string(), e.oid().to_owned(), e.mode()))
                .collect();
            for (name, oid, mode) in entries {
                if name.contains('/') || name == ".." || name == "." {
                    continue;
                }
                if mode.is_tree() || mode.is_blob() {
                    extract(git, oid, &to.join(&name))?;
                } else if mode.is_link() {
                    // Kept as a link, so that a revision is read as its working tree would
                    // be (files/ refuses links either way). Submodules are not inputs.
                    let target = git.find_object(oid).map_err(|e| e.to_string())?;
                    let target = String::from_utf8_lossy(&target.data).into_owned();
                    let at = to.join(&name);
                    std::os::unix::fs::symlink(&target, &at)
                        .map_err(|e| format!("{}: {e}", at.display()))?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
