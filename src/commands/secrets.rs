//! `deploy secrets init | edit | view | set | rekey`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::{Global, SecretsArgs, SecretsCommand};
use crate::error::Error;
use crate::secrets::files::{self, Edited};

pub fn run(global: &Global, args: SecretsArgs) -> Result<ExitCode, Error> {
    let dir = global.repo.join("secrets");
    let ids = &args.identities;
    match args.command {
        SecretsCommand::Init => {
            let home = std::env::var_os("HOME").map(PathBuf::from).ok_or_else(|| {
                Error::usage(
                    "HOME is not set",
                    Some("set HOME or DEPLOY_AGE_IDENTITY".into()),
                )
            })?;
            let identity = std::env::var_os("DEPLOY_AGE_IDENTITY")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".config/deploy/identity.txt"));
            let init = files::init(&dir, &identity)?;
            let verb = if init.created {
                "created"
            } else {
                "using existing"
            };
            println!("{verb} identity {}", init.identity.display());
            if init.added {
                println!(
                    "added {} to {}",
                    init.public_key,
                    dir.join(files::RECIPIENTS_FILE).display()
                );
            } else {
                println!("{} is already a recipient", init.public_key);
            }
        }
        SecretsCommand::Edit { name } => {
            let path = files::secret_path(&dir, &name)?;
            match files::edit(&path, ids)? {
                Edited::Unchanged => println!("{}: unchanged", path.display()),
                Edited::Written => println!("{}: saved", path.display()),
            }
        }
        SecretsCommand::View { name } => {
            let path = files::secret_path(&dir, &name)?;
            let plaintext = files::view(&path, ids)?;
            let mut out = std::io::stdout();
            let _ = out.write_all(&plaintext);
            let _ = out.flush();
        }
        SecretsCommand::Set { name, key } => {
            let path = files::secret_path(&dir, &name)?;
            let mut value = String::new();
            std::io::stdin()
                .read_to_string(&mut value)
                .map_err(|e| Error::usage(format!("reading the value from stdin: {e}"), None))?;
            // `echo value | deploy secrets set ...` should not store the newline.
            let value = value.strip_suffix('\n').unwrap_or(&value);
            let value = value.strip_suffix('\r').unwrap_or(value);
            files::set(&path, &key, value, ids)?;
            println!("{}: set {key}", path.display());
        }
        SecretsCommand::ImportVault { paths, name, vault } => {
            let password = crate::ops::vault_password(&vault)?.ok_or_else(|| {
                Error::usage(
                    "no vault password",
                    Some(
                        "pass --vault-password-file FILE (or set ANSIBLE_VAULT_PASSWORD_FILE), \
                         or --ask-vault-pass"
                            .into(),
                    ),
                )
            })?;
            for i in files::import_vault(&dir, &paths, name.as_deref(), &password, ids)? {
                println!(
                    "{}: imported {} into {}",
                    i.from.display(),
                    i.keys.join(", "),
                    i.into.display()
                );
            }
            println!(
                "the values are in secrets/ now: remove them from the vars files (or the vault \
                 files) they came from"
            );
        }
        SecretsCommand::Rekey => {
            for path in files::rekey(&dir, ids)? {
                println!("{}: re-encrypted", path.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
