//! The local coordinator driven by arbitrary inputs in any order (see
//! `snapc_oracles::oracles::local::local_machine` for what is checked).
#![no_main]

libfuzzer_sys::fuzz_target!(
    |s: snapc_oracles::generators::local::LocalScenario| snapc_oracles::oracles::local::local_machine(&s)
);
