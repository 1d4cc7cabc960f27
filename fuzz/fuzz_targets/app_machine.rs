//! The app coordinator driven by arbitrary inputs in any order (see
//! `snapc_oracles::oracles::app::app_machine` for what is checked).
#![no_main]

libfuzzer_sys::fuzz_target!(
    |s: snapc_oracles::generators::app::AppScenario| snapc_oracles::oracles::app::app_machine(&s)
);
