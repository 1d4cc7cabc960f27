//! The local coordinator driven by arbitrary inputs in any order (see
//! `snapc_fuzz::checks::local_machine` for what is checked).
#![no_main]

libfuzzer_sys::fuzz_target!(
    |s: snapc_fuzz::checks::LocalScenario| snapc_fuzz::checks::local_machine(&s)
);
