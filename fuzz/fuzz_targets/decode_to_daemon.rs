//! Any bytes: no panic, and what is accepted re-encodes exactly (see `snapc_oracles::oracles::wire::decode_to_daemon`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| snapc_oracles::oracles::wire::decode_to_daemon(data));
