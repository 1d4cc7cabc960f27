//! Structure-aware: FIFO option frames and names encode and decode back equal.
#![no_main]

libfuzzer_sys::fuzz_target!(|d: snapc_fuzz::checks::DescribedFrames| {
    snapc_fuzz::checks::round_trip_frames(&d)
});
