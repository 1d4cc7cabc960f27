//! Properties of the wire layer, on the messages the fuzz targets build
//! (the owned form in `snapc_oracles::generators::wire`, from random
//! bytes): emit then parse is the identity; parsing any bytes never panics;
//! whatever parses re-encodes to exactly the same bytes (the decoders are
//! strict enough to be exact); truncated and extended encodings are
//! rejected.

use arbitrary::{Arbitrary, Unstructured};
use proptest::prelude::*;
use snapc_core::wire::{CrState, FifoName, LocalFinish, Message, OptionsFrame, ToDaemon};
use snapc_oracles::generators::wire::{Described, DescribedFrames};
use snapc_oracles::oracles::wire::{Channel, round_trip, round_trip_frames};

/// Bytes for `Arbitrary`: enough for a few migration entries with hosts.
fn seed() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..600)
}

/// The message the bytes describe, encoded and checked by the fuzz
/// target's oracle: its channel and bytes.
fn message(bytes: &[u8]) -> (Channel, Vec<u8>) {
    let d = Described::arbitrary(&mut Unstructured::new(bytes)).unwrap_or(Described::FinAck);
    round_trip(&d)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn emit_then_parse_is_identity(bytes in seed()) {
        message(&bytes);
    }

    #[test]
    fn truncated_or_extended_encodings_are_rejected(bytes in seed(), extra in 0u8..=255) {
        let d = Described::arbitrary(&mut Unstructured::new(&bytes)).unwrap_or(Described::FinAck);
        let (channel, encoded) = round_trip(&d);
        // LOCAL_UPDATE's debug flag is optional: without it the message is whole.
        let optional_tail = match d {
            Described::Update(u) if u.debug.is_some() => Some(encoded.len() - 6),
            _ => None,
        };
        for cut in 0..encoded.len() {
            let accepted = channel.parse_is_exact(&encoded[..cut]);
            prop_assert!(!accepted || Some(cut) == optional_tail, "prefix of {} bytes accepted", cut);
        }
        let mut longer = encoded.clone();
        longer.push(extra);
        prop_assert!(!channel.parse_is_exact(&longer));
    }

    #[test]
    fn mutated_encodings_never_panic_and_stay_exact(bytes in seed(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
        let (_, mut encoded) = message(&bytes);
        for (at, value) in flips {
            let n = encoded.len();
            encoded[at % n] = value;
        }
        for channel in Channel::ALL {
            channel.parse_is_exact(&encoded);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        for channel in Channel::ALL {
            channel.parse_is_exact(&bytes);
        }
        let _ = OptionsFrame::parse(&bytes, false);
        let _ = OptionsFrame::parse(&bytes, true);
        let _ = snapc_core::wire::fifo::parse_response(&bytes);
        let _ = snapc_core::wire::fifo::parse_cr_state(&bytes);
        let _ = snapc_core::wire::fifo::parse_go_ahead(&bytes);
        let _ = snapc_core::wire::fifo::parse_release(&bytes);
        let _ = FifoName::parse(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn options_frames_round_trip(bytes in proptest::collection::vec(any::<u8>(), 17..=17)) {
        let d = DescribedFrames::arbitrary(&mut Unstructured::new(&bytes)).unwrap();
        round_trip_frames(&d);
    }

    #[test]
    fn fifo_names_round_trip(pid in 1u32..=i32::MAX as u32, n in 0u32..=i32::MAX as u32, read in any::<bool>()) {
        use snapc_core::wire::ChannelNames;
        let names = ChannelNames { pid, n };
        let name = if read { names.prog_read() } else { names.prog_write() };
        prop_assert_eq!(FifoName::parse(&name.file_name()), Ok(name));
    }
}

#[test]
fn emit_reports_too_small_without_writing_past_the_buffer() {
    let m = ToDaemon::LocalFinish(LocalFinish {
        cr_state: CrState::Continue,
    });
    let mut small = [0u8; 13];
    assert_eq!(
        m.emit(&mut small),
        Err(snapc_core::wire::EmitError::TooSmall {
            needed: 14,
            available: 13
        })
    );
    let mut v: heapless::Vec<u8, 13> = heapless::Vec::new();
    assert!(m.emit_vec(&mut v).is_err());
    assert!(v.is_empty());
}
