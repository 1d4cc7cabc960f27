//! Any bytes as each FIFO frame and as a FIFO name: no panic; accepted frames
//! and names re-encode to an equal value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use snapc_core::wire::{FifoName, OptionsFrame, fifo};

fuzz_target!(|data: &[u8]| {
    for debug in [false, true] {
        if let Ok(frame) = OptionsFrame::parse(data, debug) {
            assert_eq!(OptionsFrame::parse(&frame.to_bytes(), debug), Ok(frame));
        }
    }
    if let Ok(r) = fifo::parse_response(data) {
        assert_eq!(fifo::response_frame(r), data);
    }
    if let Ok(s) = fifo::parse_cr_state(data) {
        assert_eq!(fifo::cr_state_frame(s), data);
    }
    let _ = fifo::parse_go_ahead(data);
    let _ = fifo::parse_release(data);
    if let Ok(text) = core::str::from_utf8(data) {
        if let Ok(name) = FifoName::parse(text) {
            let base = text.rsplit('/').next().unwrap_or(text);
            assert_eq!(name.file_name().as_str(), base);
        }
    }
});
