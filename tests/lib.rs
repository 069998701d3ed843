//! All integration tests, compiled into one binary (`cargo test --test integration`).

mod errors;
mod examples;
mod local_apply;
mod render_fixtures;
mod secrets_age;
mod secrets_commands;
mod secrets_run;
mod ssh_apply;
mod ssh_transport;
mod support;
