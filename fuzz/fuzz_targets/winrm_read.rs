#![no_main]
//! `deploy::fuzz::Target::WinRmRead`: see `deploy::fuzz` for what counts as a finding.

use deploy::fuzz::{Target, run};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(problem) = run(Target::WinRmRead, data).problem() {
        panic!("{problem}");
    }
});
