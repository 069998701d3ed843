//! All integration tests, compiled into one binary (`cargo test --test integration`).

mod checks;
mod errors;
mod examples;
mod fleet;
mod fuzz_props;
mod local_apply;
mod newline;
mod powershell;
mod render_fixtures;
mod revisions;
mod secrets_age;
mod secrets_commands;
mod secrets_run;
mod ssh_apply;
mod ssh_transport;
mod state;
mod sudo;
mod support;
mod unicode_reports;
mod verify;
mod winrm_e2e;
mod winrm_replay;
