//! The app coordinator driven by arbitrary inputs in any order (see
//! `snapc_fuzz::checks::app_machine` for what is checked).
#![no_main]

libfuzzer_sys::fuzz_target!(
    |s: snapc_fuzz::checks::AppScenario| snapc_fuzz::checks::app_machine(&s)
);
