//! The global coordinator driven by arbitrary inputs in any order (see
//! `snapc_fuzz::checks::global_machine` for what is checked).
#![no_main]

libfuzzer_sys::fuzz_target!(
    |s: snapc_fuzz::checks::GlobalScenario| snapc_fuzz::checks::global_machine(&s)
);
