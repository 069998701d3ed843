//! All integration tests, compiled into one binary (`cargo test --test integration`).

mod local_apply;
mod support;
