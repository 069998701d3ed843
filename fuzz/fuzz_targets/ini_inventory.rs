#![no_main]
//! `deploy::fuzz::Target::IniInventory`: see `deploy::fuzz` for what counts as a finding.

use deploy::fuzz::{Target, run};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(problem) = run(Target::IniInventory, data).problem() {
        panic!("{problem}");
    }
});
