//! Any bytes on the from-gc channel: no panic, and an accepted buffer re-encodes exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use snapc_core::wire::FromGc;

fuzz_target!(|data: &[u8]| snapc_fuzz::parse_is_exact::<FromGc<'_>>(data));
