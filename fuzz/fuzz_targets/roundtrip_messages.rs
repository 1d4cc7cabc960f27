//! Structure-aware: messages built by the fuzzer encode, decode back equal,
//! and reject every strict prefix.
#![no_main]

libfuzzer_sys::fuzz_target!(|d: snapc_oracles::generators::wire::Described| {
    snapc_oracles::oracles::wire::round_trip(&d);
});
