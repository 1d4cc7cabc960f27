//! Checks shared by the fuzz targets.

use snapc_core::wire::Message;

/// Whatever `M` accepts must re-encode to exactly the input: the decoders are
/// strict, so a lossy or lenient parse shows up here as a crash.
pub fn parse_is_exact<'a, M: Message<'a>>(data: &'a [u8]) {
    if let Ok(m) = M::parse(data) {
        let mut out = [0u8; 1 << 16];
        let n = m.emit(&mut out).expect("an accepted message encodes");
        assert_eq!(n, m.buffer_len());
        assert_eq!(&out[..n], data, "re-encoding differs from the input");
    }
}
