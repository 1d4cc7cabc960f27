//! Structure-aware: FIFO option frames and names encode and decode back equal.
#![no_main]

libfuzzer_sys::fuzz_target!(|d: snapc_oracles::generators::wire::DescribedFrames| {
    snapc_oracles::oracles::wire::round_trip_frames(&d)
});
