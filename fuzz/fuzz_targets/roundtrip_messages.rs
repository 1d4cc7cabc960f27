//! Structure-aware: messages built by the fuzzer encode, decode back equal,
//! and reject every strict prefix.
#![no_main]

libfuzzer_sys::fuzz_target!(|d: snapc_fuzz::checks::Described| snapc_fuzz::checks::round_trip(&d));
