//! The fuzzers' inputs: the owned form of every message ([`wire`]) and,
//! per coordinator, its configuration and a sequence of inputs.

pub mod app;
pub mod global;
pub mod local;
pub mod wire;

/// One of `all`, by a byte modulo its length (the layout snapc-core's
/// `arbitrary` feature uses for its enums).
pub fn pick<T: Copy>(all: &[T], i: u8) -> T {
    all[usize::from(i) % all.len()]
}

/// Strings the protocol can carry: no NUL, within the field's limit.
pub fn carryable(s: &Option<String>, max: usize) -> Option<&str> {
    s.as_deref().map(|s| {
        let s = s.split('\0').next().unwrap_or("");
        let mut end = s.len().min(max - 1);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        &s[..end]
    })
}
