//! # snapc-oracles
//!
//! What the fuzz targets check, as a normal library: the corpus replay test
//! (`tests/fuzz_corpus.rs`) and the wire property tests run the same checks
//! on stable Rust, and the fuzz targets (`fuzz/`, nightly) are one line
//! each.
//!
//! - [`generators`]: the inputs, built from unstructured bytes
//!   (`arbitrary`): the owned form of every message, and per machine a
//!   scenario of inputs in any order.
//! - [`oracles`]: per machine, what must hold for any input: the wire's
//!   strict decoders and round trips; for each coordinator, a model of what
//!   it may do, checked after every input.
//!
//! Each oracle panics (the fuzzer's crash) when a property fails.

pub mod generators;
pub mod oracles;

use arbitrary::{Arbitrary, Unstructured};
use generators::wire::Described;
use oracles::{app, global, local, wire};

/// Runs the named target's check on one input, as libFuzzer would.
/// Returns false for an unknown target name.
pub fn run(target: &str, data: &[u8]) -> bool {
    match target {
        "decode_to_gc" => wire::decode_to_gc(data),
        "decode_from_gc" => wire::decode_from_gc(data),
        "decode_to_daemon" => wire::decode_to_daemon(data),
        "fifo_frames" => wire::fifo_frames(data),
        "fifo_name" => wire::fifo_name(data),
        "roundtrip_messages" => structured(data, |d: &Described<'_>| {
            wire::round_trip(d);
        }),
        "roundtrip_frames" => structured(data, wire::round_trip_frames),
        "app_machine" => structured(data, app::app_machine),
        "local_machine" => structured(data, local::local_machine),
        "global_machine" => structured(data, global::global_machine),
        _ => return false,
    }
    true
}

/// A structure-aware target: the input as libFuzzer's `fuzz_target!` makes
/// it (`arbitrary_take_rest`), checked if it is one.
fn structured<'a, T: Arbitrary<'a>>(data: &'a [u8], check: impl FnOnce(&T)) {
    if let Ok(t) = T::arbitrary_take_rest(Unstructured::new(data)) {
        check(&t);
    }
}

/// Every target `run` knows.
pub const TARGETS: &[&str] = &[
    "decode_to_gc",
    "decode_from_gc",
    "decode_to_daemon",
    "fifo_frames",
    "fifo_name",
    "roundtrip_messages",
    "roundtrip_frames",
    "app_machine",
    "local_machine",
    "global_machine",
];
