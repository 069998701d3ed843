//! All integration tests, compiled into one binary (`cargo test --test integration`).

mod ssh_transport;
mod support;
