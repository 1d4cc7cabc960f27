//! Time as the crate sees it: an [`Instant`] and a [`Duration`], both whole
//! microseconds in a `u64`.
//!
//! Nothing in snapc-core reads a clock: adapters pass `now` into every
//! `handle_*` call (a monotonic clock on POSIX, a virtual one in simulation).
//! All arithmetic saturates, so no input can make it panic or wrap: an
//! instant plus a huge duration is [`Instant::MAX`], and the time from a
//! later instant to an earlier one is [`Duration::ZERO`]. "No deadline" is
//! never an instant: every machine's `poll_timeout` says it with `None`.

use core::fmt;
use core::ops::{Add, AddAssign, Sub, SubAssign};

/// A point in time, in microseconds since an origin the adapter chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Instant(u64);

/// A span of time in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Duration(u64);

/// What [`Instant`] and [`Duration`] share: whole microseconds in a `u64`,
/// built saturating (an instant counts from the origin), printed as
/// seconds.
macro_rules! microseconds {
    ($t:ident, zero: $zero:literal, max: $max:literal) => {
        impl $t {
            #[doc = $zero]
            pub const ZERO: Self = Self(0);
            #[doc = $max]
            pub const MAX: Self = Self(u64::MAX);

            /// `micros` microseconds.
            pub const fn from_micros(micros: u64) -> Self {
                Self(micros)
            }

            /// `millis` milliseconds (saturating).
            pub const fn from_millis(millis: u64) -> Self {
                Self(millis.saturating_mul(1_000))
            }

            /// `secs` seconds (saturating).
            pub const fn from_secs(secs: u64) -> Self {
                Self(secs.saturating_mul(1_000_000))
            }

            /// Whole microseconds.
            pub const fn as_micros(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}.{:06}s", self.0 / 1_000_000, self.0 % 1_000_000)
            }
        }
    };
}

microseconds!(
    Instant,
    zero: "The origin.",
    max: "The latest representable instant (where additions saturate)."
);
microseconds!(
    Duration,
    zero: "No time.",
    max: "The longest representable duration."
);

impl Instant {
    /// `self + d`, saturating at [`Instant::MAX`].
    pub const fn saturating_add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(d.0))
    }

    /// `self - d`, saturating at [`Instant::ZERO`].
    pub const fn saturating_sub(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(d.0))
    }

    /// The time from `earlier` to `self`; zero if `earlier` is later.
    pub const fn saturating_duration_since(self, earlier: Self) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }
}

impl Duration {
    /// Whole milliseconds (rounded down).
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000
    }

    /// Whole seconds (rounded down).
    pub const fn as_secs(self) -> u64 {
        self.0 / 1_000_000
    }

    /// `self + other`, saturating.
    pub const fn saturating_add(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0))
    }

    /// `self - other`, saturating at zero.
    pub const fn saturating_sub(self, other: Self) -> Self {
        Self(self.0.saturating_sub(other.0))
    }
}

impl From<core::time::Duration> for Duration {
    /// Converts, rounding down to whole microseconds and saturating.
    fn from(d: core::time::Duration) -> Self {
        Self(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }
}

impl From<Duration> for core::time::Duration {
    fn from(d: Duration) -> Self {
        core::time::Duration::from_micros(d.0)
    }
}

// Every operator is the saturating method named beside it.
macro_rules! operator {
    ($Op:ident::$op:ident($Lhs:ident, $Rhs:ident) -> $Out:ident = $method:ident) => {
        impl $Op<$Rhs> for $Lhs {
            type Output = $Out;
            fn $op(self, rhs: $Rhs) -> $Out {
                self.$method(rhs)
            }
        }
    };
    ($Op:ident::$op:ident($Lhs:ident, $Rhs:ident) = $method:ident) => {
        impl $Op<$Rhs> for $Lhs {
            fn $op(&mut self, rhs: $Rhs) {
                *self = self.$method(rhs);
            }
        }
    };
}

operator!(Add::add(Instant, Duration) -> Instant = saturating_add);
operator!(AddAssign::add_assign(Instant, Duration) = saturating_add);
operator!(Sub::sub(Instant, Duration) -> Instant = saturating_sub);
operator!(SubAssign::sub_assign(Instant, Duration) = saturating_sub);
operator!(Sub::sub(Instant, Instant) -> Duration = saturating_duration_since);
operator!(Add::add(Duration, Duration) -> Duration = saturating_add);
operator!(AddAssign::add_assign(Duration, Duration) = saturating_add);
operator!(Sub::sub(Duration, Duration) -> Duration = saturating_sub);
operator!(SubAssign::sub_assign(Duration, Duration) = saturating_sub);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_secs(2);
        assert_eq!(
            t + Duration::from_millis(500),
            Instant::from_micros(2_500_000)
        );
        assert_eq!(t + Duration::MAX, Instant::MAX);
        assert_eq!(Instant::MAX + Duration::from_micros(1), Instant::MAX);
        assert_eq!(t - Duration::from_secs(3), Instant::ZERO);
        assert_eq!(t - Instant::from_secs(3), Duration::ZERO);
        assert_eq!(Instant::from_secs(3) - t, Duration::from_secs(1));
        assert_eq!(Duration::MAX + Duration::from_secs(1), Duration::MAX);
        assert_eq!(
            Duration::from_secs(1) - Duration::from_secs(2),
            Duration::ZERO
        );
        assert_eq!(Duration::from_secs(u64::MAX), Duration::MAX);
        assert_eq!(Instant::from_millis(u64::MAX), Instant::MAX);
        let mut i = Instant::ZERO;
        i += Duration::from_millis(3);
        i -= Duration::from_millis(1);
        assert_eq!(i.as_micros(), 2_000);
        let mut d = Duration::from_secs(1);
        d += Duration::from_millis(1);
        d -= Duration::from_millis(2);
        assert_eq!(d.as_millis(), 999);
        assert_eq!(d.as_secs(), 0);
    }

    #[test]
    fn converts_and_prints() {
        let d: Duration = core::time::Duration::from_nanos(1_500).into();
        assert_eq!(d.as_micros(), 1);
        let big: Duration = core::time::Duration::MAX.into();
        assert_eq!(big, Duration::MAX);
        assert_eq!(
            core::time::Duration::from(Duration::from_millis(2)),
            core::time::Duration::from_millis(2)
        );
        extern crate std;
        use std::format;
        assert_eq!(format!("{}", Instant::from_micros(1_000_042)), "1.000042s");
        assert_eq!(format!("{}", Duration::from_millis(1)), "0.001000s");
    }
}
