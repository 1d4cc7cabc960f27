//! libsnapc's runtime entry points called in any order with arbitrary
//! arguments and bytes; the oracle is adapters/c/src/runtime/fuzz.rs
//! (compiled here from source with the rest of the C ABI's runtime module,
//! which depends on snapc-core alone; its unit test replays the stored
//! inputs on stable Rust).
#![no_main]

#[allow(dead_code, non_camel_case_types, unexpected_cfgs, clippy::all)]
#[path = "../../adapters/c/src/runtime/mod.rs"]
mod runtime;

libfuzzer_sys::fuzz_target!(|s: runtime::fuzz::Scenario| {
    runtime::fuzz::run(&s);
});
