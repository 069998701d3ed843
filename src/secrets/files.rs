//! The operations behind `deploy secrets ...`: create an identity, and edit, view, set and
//! re-encrypt secret files. In: the repo's `secrets/` folder, the operator's identities,
//! `$VISUAL`/`$EDITOR`. Out: armored age files, each replaced atomically; plaintext only ever
//! in memory or, while an editor has it, in a 0600 file in a private folder that is removed
//! afterwards whatever happens.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Identities, Recipients, SECRET_SUFFIX, decrypt_plaintext, encrypt, open_identities};
use crate::error::Error;
use crate::inventory::Vars;

pub const RECIPIENTS_FILE: &str = "recipients.txt";

/// `secrets/<name>.yml.age` for NAME given as `motoko`, `motoko.yml.age` or a path.
pub fn secret_path(secrets_dir: &Path, name: &str) -> Result<PathBuf, Error> {
    let base = Path::new(name)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(name);
    let stem = base.strip_suffix(SECRET_SUFFIX).unwrap_or(base);
    let stem = stem.strip_suffix(".yml").unwrap_or(stem);
    if stem.is_empty() || stem.starts_with('.') {
        return Err(Error::usage(
            format!("`{name}` is not a secret file name"),
            Some("name a group or host, e.g. `deploy secrets edit motoko`".into()),
        ));
    }
    Ok(secrets_dir.join(format!("{stem}{SECRET_SUFFIX}")))
}

/// What `init` did.
pub struct Init {
    /// The identity file (created now or found).
    pub identity: PathBuf,
    pub created: bool,
    pub public_key: String,
    /// Whether the public key was added to recipients.txt (false: it was there).
    pub added: bool,
}

/// Creates an age identity at `identity` (0600, folders 0700) unless one exists, and adds its
/// public key to `secrets/recipients.txt`.
pub fn init(secrets_dir: &Path, identity: &Path) -> Result<Init, Error> {
    let (public_key, created) = if identity.exists() {
        let text = fs::read_to_string(identity).map_err(|e| Error::io(identity, e))?;
        let key = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("AGE-SECRET-KEY-"))
            .ok_or_else(|| {
                Error::config(
                    identity.display(),
                    "exists but holds no AGE-SECRET-KEY line",
                )
            })?;
        let id = super::age::X25519Identity::parse(key)
            .map_err(|e| Error::config(identity.display(), format!("not an age identity: {e}")))?;
        (id.to_public().to_string(), false)
    } else {
        let id = super::age::X25519Identity::generate();
        let public = id.to_public().to_string();
        if let Some(dir) = identity.parent() {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io(dir, e))?;
        }
        let text = format!(
            "# created by deploy secrets init\n# public key: {public}\n{}\n",
            &*id.secret_string()
        );
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(identity)
            .map_err(|e| Error::io(identity, e))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io(identity, e))?;
        (public, true)
    };
    fs::create_dir_all(secrets_dir).map_err(|e| Error::io(secrets_dir, e))?;
    let recipients = secrets_dir.join(RECIPIENTS_FILE);
    let existing = fs::read_to_string(&recipients).unwrap_or_default();
    let added = !existing.lines().any(|l| l.trim() == public_key);
    if added {
        let mut text = existing;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&public_key);
        text.push('\n');
        write_atomic(&recipients, text.as_bytes(), 0o644)?;
    }
    Ok(Init {
        identity: identity.to_path_buf(),
        created,
        public_key,
        added,
    })
}

/// The plaintext of a secret file.
pub fn view(path: &Path, identity_args: &[PathBuf]) -> Result<Vec<u8>, Error> {
    let identities = open_identities(identity_args)?;
    decrypt_plaintext(path, &identities)
}

/// Sets `key` to `value` (a string) in the secret file at `path`, creating the file when it
/// does not exist. The file is rewritten from its variables (comments are not kept).
pub fn set(path: &Path, key: &str, value: &str, identity_args: &[PathBuf]) -> Result<(), Error> {
    let secrets_dir = path.parent().unwrap_or(Path::new("."));
    let recipients = Recipients::load(&secrets_dir.join(RECIPIENTS_FILE))?;
    let mut vars = if path.exists() {
        let identities = open_identities(identity_args)?;
        super::decrypt_file(path, &identities)?
    } else {
        Vars::new()
    };
    vars.insert(
        key.to_string(),
        serde_json::Value::String(value.to_string()),
    );
    let text = serde_saphyr::to_string(&vars)
        .map_err(|e| Error::usage(format!("cannot write the secret file: {e}"), None))?;
    write_atomic(path, &encrypt(text.as_bytes(), &recipients)?, 0o644)
}

/// What `import_vault` did with one vault file.
#[derive(Debug)]
pub struct Imported {
    pub from: PathBuf,
    pub into: PathBuf,
    /// The variables moved (names only; values are never printed).
    pub keys: Vec<String>,
}

/// The group or host a vars file belongs to, from where it sits: `group_vars/NAME.yml`,
/// `group_vars/NAME/any.yml`, `host_vars/...` likewise.
pub fn vault_scope(path: &Path) -> Option<String> {
    let parent = path.parent()?;
    let parent_name = parent.file_name()?.to_str()?;
    if matches!(parent_name, "group_vars" | "host_vars") {
        let name = path.file_name()?.to_str()?;
        let stem = ["yml", "yaml", "json"]
            .iter()
            .find_map(|ext| name.strip_suffix(&format!(".{ext}")))
            .unwrap_or(name);
        return Some(stem.to_string());
    }
    let grand = parent.parent()?.file_name()?.to_str()?;
    matches!(grand, "group_vars" | "host_vars").then(|| parent_name.to_string())
}

/// Moves Ansible Vault contents into `secrets/<name>.yml.age`: a whole vault file's
/// variables, or a vars file's inline `!vault` values (its plain values stay where they are).
/// Every file is decrypted and checked first, and a variable already in the secret file is
/// a conflict that stops the import before anything is written. No plaintext touches the disk.
pub fn import_vault(
    secrets_dir: &Path,
    paths: &[PathBuf],
    name: Option<&str>,
    password: &super::vault::VaultPassword,
    identity_args: &[PathBuf],
) -> Result<Vec<Imported>, Error> {
    use super::vault;
    let recipients = Recipients::load(&secrets_dir.join(RECIPIENTS_FILE))?;
    // target secret file -> (its vars now, what is added, the imports into it)
    let mut targets: Vec<(PathBuf, Vars, Vec<Imported>)> = Vec::new();
    let mut identities: Option<Identities> = None;
    for from in paths {
        let scope = match name {
            Some(n) => n.to_string(),
            None => vault_scope(from).ok_or_else(|| {
                Error::usage(
                    format!(
                        "cannot tell which group or host {} belongs to",
                        from.display()
                    ),
                    Some("pass --name GROUP_OR_HOST (secrets/NAME.yml.age)".into()),
                )
            })?,
        };
        let text = std::fs::read_to_string(from).map_err(|e| Error::io(from, e))?;
        let fail =
            |e: vault::VaultError| Error::config(from.display(), format!("cannot decrypt: {e}"));
        let found: Vars = if vault::is_vaulted(&text) {
            let plain = vault::decrypt(&text, password.bytes()).map_err(fail)?;
            let plain = String::from_utf8(plain)
                .map_err(|_| Error::config(from.display(), "the decrypted file is not UTF-8"))?;
            crate::inventory::parse_vars(from, &plain).map_err(|_| {
                Error::config(from.display(), "the decrypted file is not a YAML mapping")
            })?
        } else {
            let mut vaulted = Vec::new();
            let file = crate::inventory::parse_vars(from, &text)?;
            for (k, v) in &file {
                if let serde_json::Value::String(s) = v
                    && vault::is_vaulted(s)
                {
                    let plain = vault::decrypt(s, password.bytes()).map_err(|e| {
                        Error::config(from.display(), format!("cannot decrypt `{k}`: {e}"))
                    })?;
                    let plain = String::from_utf8(plain).map_err(|_| {
                        Error::config(from.display(), format!("`{k}` is not UTF-8 text"))
                    })?;
                    vaulted.push((k.clone(), serde_json::Value::String(plain)));
                }
            }
            if vaulted.is_empty() {
                return Err(Error::config(
                    from.display(),
                    "neither a vault file nor a vars file with !vault values",
                ));
            }
            vaulted.into_iter().collect()
        };
        let into = secret_path(secrets_dir, &scope)?;
        let index = match targets.iter().position(|(p, _, _)| *p == into) {
            Some(i) => i,
            None => {
                let existing = if into.exists() {
                    if identities.is_none() {
                        identities = Some(open_identities(identity_args)?);
                    }
                    match &identities {
                        Some(ids) => super::decrypt_file(&into, ids)?,
                        None => Vars::new(),
                    }
                } else {
                    Vars::new()
                };
                targets.push((into.clone(), existing, Vec::new()));
                targets.len() - 1
            }
        };
        let (_, vars, imports) = &mut targets[index];
        let clash: Vec<&String> = found.keys().filter(|k| vars.contains_key(*k)).collect();
        if !clash.is_empty() {
            return Err(Error::config(
                from.display(),
                format!(
                    "{} already in {}: {}; nothing was imported",
                    if clash.len() == 1 {
                        "this variable is"
                    } else {
                        "these variables are"
                    },
                    into.display(),
                    clash
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .with_hint("remove one of the two (deploy secrets edit NAME), then import again"));
        }
        let keys: Vec<String> = found.keys().cloned().collect();
        vars.extend(found);
        imports.push(Imported {
            from: from.clone(),
            into,
            keys,
        });
    }
    let mut done = Vec::new();
    for (into, vars, imports) in targets {
        let text = serde_saphyr::to_string(&vars)
            .map_err(|e| Error::usage(format!("cannot write the secret file: {e}"), None))?;
        write_atomic(&into, &encrypt(text.as_bytes(), &recipients)?, 0o644)?;
        done.extend(imports);
    }
    Ok(done)
}

/// Re-encrypts every secret file to the current `recipients.txt`; returns the files done.
pub fn rekey(secrets_dir: &Path, identity_args: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let recipients = Recipients::load(&secrets_dir.join(RECIPIENTS_FILE))?;
    let files = super::SecretFiles::discover(secrets_dir)?;
    let paths: Vec<PathBuf> = files.names().map(|n| files.path_of(n)).collect();
    if paths.is_empty() {
        return Ok(paths);
    }
    let identities = open_identities(identity_args)?;
    // Decrypt everything first: a file this identity cannot open stops the run before any
    // file is rewritten.
    let plaintexts: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| decrypt_plaintext(p, &identities))
        .collect::<Result<_, _>>()?;
    for (path, plaintext) in paths.iter().zip(plaintexts) {
        write_atomic(path, &encrypt(&plaintext, &recipients)?, 0o644)?;
    }
    Ok(paths)
}

/// How an edit ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Edited {
    Unchanged,
    Written,
}

/// Opens the secret file in `$VISUAL`/`$EDITOR` through a private temporary copy, checks the
/// result is a YAML mapping, and re-encrypts it to the current recipients. The temporary copy
/// is removed on every path out (the editor's Ctrl-C included: deploy ignores SIGINT while
/// the editor runs). An edit that changes nothing leaves the file byte-identical.
pub fn edit(path: &Path, identity_args: &[PathBuf]) -> Result<Edited, Error> {
    let secrets_dir = path.parent().unwrap_or(Path::new("."));
    let recipients = Recipients::load(&secrets_dir.join(RECIPIENTS_FILE))?;
    let before = if path.exists() {
        let identities: Identities = open_identities(identity_args)?;
        decrypt_plaintext(path, &identities)?
    } else {
        Vec::new()
    };
    let editor = std::env::var("VISUAL")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .or_else(|| {
            std::env::var("EDITOR")
                .ok()
                .filter(|e| !e.trim().is_empty())
        })
        .unwrap_or_else(|| "vi".to_string());

    let private = private_dir()?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".age"))
        .unwrap_or("secret.yml");
    let plain_path = private.path().join(name);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&plain_path)
        .map_err(|e| Error::io(&plain_path, e))?;
    f.write_all(&before)
        .map_err(|e| Error::io(&plain_path, e))?;
    drop(f);

    run_editor(&editor, &plain_path)?;
    let after = fs::read(&plain_path).map_err(|e| Error::io(&plain_path, e))?;
    drop(private); // removes the plaintext copy now, before anything else can fail
    if after == before {
        return Ok(Edited::Unchanged);
    }
    let text = String::from_utf8(after)
        .map_err(|_| Error::config(path.display(), "the edited text is not UTF-8"))?;
    // Validate without quoting the text back: an error names the line only.
    let parsed: Result<serde_json::Value, Error> = crate::yaml::parse(Path::new(name), &text);
    match parsed {
        Ok(serde_json::Value::Object(_) | serde_json::Value::Null) => {}
        Ok(_) => {
            return Err(Error::config(
                path.display(),
                "the edited text is not a mapping of variables; nothing was saved",
            ));
        }
        Err(Error::Yaml {
            line,
            column,
            message,
            ..
        }) => {
            return Err(Error::config(
                format!("{}:{line}:{column}", path.display()),
                format!("{message}; nothing was saved"),
            ));
        }
        Err(e) => return Err(e),
    }
    write_atomic(path, &encrypt(text.as_bytes(), &recipients)?, 0o644)?;
    Ok(Edited::Written)
}

/// A 0700 folder for the plaintext copy: under `$XDG_RUNTIME_DIR` (memory-backed and private
/// on most systems) when set, else the system temp folder.
fn private_dir() -> Result<tempfile::TempDir, Error> {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("deploy-secret-")
        .tempdir_in(&base)
        .map_err(|e| Error::io(&base, e))?;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(dir.path(), e))?;
    Ok(dir)
}

/// Runs the editor on `file` through the shell (so `EDITOR="code -w"` works) and waits.
fn run_editor(editor: &str, file: &Path) -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::usage(format!("cannot start the runtime: {e}"), None))?;
    rt.block_on(async {
        // Listening for SIGINT replaces its default action: a Ctrl-C meant for the editor
        // no longer kills deploy before it removes the plaintext copy.
        let _sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
        let status = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("{editor} \"$1\""))
            .arg("sh")
            .arg(file)
            .status()
            .await
            .map_err(|e| Error::usage(format!("cannot run the editor `{editor}`: {e}"), None))?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::usage(
                format!("the editor `{editor}` failed ({status}); nothing was saved"),
                None,
            ))
        }
    })
}

/// Writes `bytes` to a temporary file beside `path` and renames it over `path`.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".deploy-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::io(path, e))?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}
