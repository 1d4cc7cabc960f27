//! Logging shim: the same macros go to `defmt`, to `log`, or nowhere,
//! depending on the crate's features. Call sites use a literal format string
//! with `{}` placeholders, valid for both backends.
//!
//! The arguments are only ever borrowed: the backends' own macros borrow
//! them, and without a backend they are borrowed and dropped (so a call site
//! that compiles with one backend compiles without, non-`Copy` arguments
//! included, and nothing is evaluated twice or moved).
#![allow(unused_macros)] // the state machines are the callers; not every level is used

macro_rules! snapc_log {
    ($level:ident, $fmt:literal $(, $arg:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        ::defmt::$level!($fmt $(, $arg)*);
        #[cfg(feature = "log")]
        ::log::$level!($fmt $(, $arg)*);
        #[cfg(not(any(feature = "defmt", feature = "log")))]
        {
            let _ = ($(&$arg,)*);
        }
    }};
}

macro_rules! trace {
    ($($t:tt)*) => { snapc_log!(trace, $($t)*) };
}

macro_rules! debug {
    ($($t:tt)*) => { snapc_log!(debug, $($t)*) };
}

macro_rules! warn {
    ($($t:tt)*) => { snapc_log!(warn, $($t)*) };
}

#[cfg(test)]
mod tests {
    /// A value that is neither `Copy` nor `Clone`: logging must not move it.
    struct Owned(u32);

    impl core::fmt::Display for Owned {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            write!(f, "{}", self.0)
        }
    }

    #[cfg(feature = "defmt")]
    impl defmt::Format for Owned {
        fn format(&self, f: defmt::Formatter<'_>) {
            defmt::write!(f, "{}", self.0)
        }
    }

    #[test]
    fn arguments_are_borrowed_not_moved() {
        let owned = Owned(7);
        trace!("value {}", owned);
        debug!("value {} and {}", owned, 1u8);
        warn!("no arguments");
        // Still ours after three log calls.
        assert_eq!(owned.0, 7);
    }
}
