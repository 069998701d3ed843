//! The `integration` test binary: every integration test module is declared here.

mod render_fixtures;
