//! All integration tests, compiled into one binary (`cargo test --test integration`).

mod checks;
mod debris;
mod errors;
mod examples;
mod fleet;
mod litellm_checks;
mod local_apply;
mod newline;
mod plain_files;
mod powershell;
mod render_fixtures;
mod revisions;
mod rollout;
mod secrets_age;
mod secrets_commands;
mod secrets_run;
mod ssh_apply;
mod ssh_transport;
mod state;
mod sudo;
mod support;
mod validate;
mod vault;
mod verify;
mod winrm_e2e;
mod winrm_replay;
