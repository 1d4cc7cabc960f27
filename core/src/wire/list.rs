//! Lists inside messages (migration entries, migrating processes) without
//! allocation.
//!
//! A decoded list keeps the validated bytes and yields its items on demand; a
//! list to encode borrows a slice of items. Both compare and iterate alike.

use super::dss::{Encoder, Failure, Reader, Sink};
use super::error::EmitError;
use core::fmt;

/// An element of a [`List`]: one DSS layout, decoded and encoded.
pub trait Item<'a>: Sized + Copy {
    /// Reads one item.
    fn decode<E: Failure>(r: &mut Reader<'a, E>) -> Result<Self, E>;
    /// Writes one item.
    fn encode<S: Sink>(&self, e: &mut Encoder<S>) -> Result<(), EmitError>;
}

/// A list of items: borrowed from a caller, or still encoded in a received buffer.
#[derive(Clone, Copy)]
pub enum List<'a, T> {
    /// Items given by the caller.
    Items(&'a [T]),
    /// Items validated in a received buffer, decoded on iteration.
    Encoded {
        /// The items' bytes.
        bytes: &'a [u8],
        /// How many items they hold.
        len: usize,
    },
}

impl<'a, T: Item<'a>> List<'a, T> {
    /// Decodes `len` items from `r`, validating each, and keeps their bytes.
    #[inline(always)]
    pub(crate) fn decode<E: Failure>(r: &mut Reader<'a, E>, len: usize) -> Result<Self, E> {
        let start = r.position();
        // Each item consumes bytes, so a huge claimed count ends in a
        // truncation error after at most `r.remaining()` items.
        for _ in 0..len {
            T::decode(r)?;
        }
        Ok(Self::Encoded {
            bytes: r.consumed_since(start),
            len,
        })
    }

    /// Writes every item.
    #[inline(always)]
    pub(crate) fn encode<S: Sink>(&self, e: &mut Encoder<S>) -> Result<(), EmitError> {
        match *self {
            // A plain loop over the caller's items, which the compiler sees through.
            Self::Items(items) => {
                for item in items {
                    item.encode(e)?;
                }
                Ok(())
            }
            Self::Encoded { .. } => self.encode_decoded(e),
        }
    }

    /// Re-encodes a received list item by item.
    #[inline(never)]
    fn encode_decoded<S: Sink>(&self, e: &mut Encoder<S>) -> Result<(), EmitError> {
        self.iter().try_for_each(|item| item.encode(e))
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        match self {
            Self::Items(items) => items.len(),
            Self::Encoded { len, .. } => *len,
        }
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The items in order.
    pub fn iter(&self) -> Iter<'a, T> {
        match *self {
            Self::Items(items) => Iter::Items(items.iter()),
            Self::Encoded { bytes, len } => Iter::Encoded {
                reader: Reader::new(bytes),
                left: len,
            },
        }
    }
}

/// Iterator over a [`List`].
#[derive(Debug, Clone)]
pub enum Iter<'a, T> {
    /// Over caller items.
    Items(core::slice::Iter<'a, T>),
    /// Over validated bytes.
    Encoded {
        /// Reader over the items' bytes.
        reader: Reader<'a>,
        /// Items not yielded yet.
        left: usize,
    },
}

impl<'a, T: Item<'a>> Iterator for Iter<'a, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        match self {
            Self::Items(it) => it.next().copied(),
            Self::Encoded { reader, left } => {
                if *left == 0 {
                    return None;
                }
                *left -= 1;
                // The bytes were validated when the list was decoded.
                T::decode(reader).ok()
            }
        }
    }
}

impl<'a, T: Item<'a> + PartialEq> PartialEq for List<'a, T> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<'a, T: Item<'a> + Eq> Eq for List<'a, T> {}

impl<'a, T: Item<'a> + fmt::Debug> fmt::Debug for List<'a, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(feature = "defmt")]
impl<'a, T: Item<'a> + defmt::Format> defmt::Format for List<'a, T> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "[");
        for (i, item) in self.iter().enumerate() {
            if i > 0 {
                defmt::write!(f, ", ");
            }
            defmt::write!(f, "{}", item);
        }
        defmt::write!(f, "]");
    }
}
