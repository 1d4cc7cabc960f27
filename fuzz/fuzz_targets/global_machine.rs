//! The global coordinator driven by arbitrary inputs in any order (see
//! `snapc_oracles::oracles::global::global_machine` for what is checked).
#![no_main]

libfuzzer_sys::fuzz_target!(
    |s: snapc_oracles::generators::global::GlobalScenario| snapc_oracles::oracles::global::global_machine(&s)
);
