//! Validation of a MIGRATE preference table (docs/PROTOCOL.md §5) into a plan for
//! the runtime.
//!
//! Each entry `(vpid, host, vpid_pref, off_node)` is read with Open MPI's own
//! table (the comment in `snapc_full_app.c`'s request path). The entry is
//! about the requester `vpid`'s own placement when `vpid_pref` is negative or
//! equal to `vpid`, else about its peer `vpid_pref`. "home" is the host the
//! requester runs on now; an empty host string is no host.
//!
//! | about | host | off_node | meaning |
//! |---|---|---|---|
//! | self | home | false | do not move |
//! | self | home | true | error |
//! | self | none | false | move anywhere |
//! | self | none | true | move off this node |
//! | self | other | either | move to `other` |
//! | peer | home | false | move the peer to the requester's host |
//! | peer | home | true | error |
//! | peer | none | false | move the peer to the requester's host (the default) |
//! | peer | none | true | move the requester off its node, the peer with it |
//! | peer | other | either | move both to `other` |
//!
//! A move onto the host a rank already runs on is "do not move". Every rank
//! named by any entry gets one wish per entry; the wishes must agree
//! ("anywhere" gives way to any move, "off this node" to a named other host,
//! equal wishes agree, anything else is a conflict and fails the migration).
//! A table that moves nobody fails too: there is nothing to checkpoint for.

use crate::wire::{List, MAX_HOST_LEN, MigrateEntry};
use core::fmt;

/// The longest host name a plan carries, in bytes (the wire's limit less the NUL).
pub const MAX_HOST_NAME_LEN: usize = MAX_HOST_LEN - 1;

/// A host name in a plan.
pub type HostName = heapless::String<MAX_HOST_NAME_LEN>;

/// Where each rank of the job runs now, as the runtime knows it.
///
/// The global coordinator owns one (see
/// [`GlobalCoordinator::placement_mut`](super::GlobalCoordinator::placement_mut)):
/// the runtime updates it after a migration.
pub trait Placement {
    /// The host rank `vpid` runs on; `None` if it is not a rank of the job.
    fn host_of(&self, vpid: u32) -> Option<&str>;
}

impl<T: AsRef<str>, const N: usize> Placement for [T; N] {
    fn host_of(&self, vpid: u32) -> Option<&str> {
        self.get(usize::try_from(vpid).ok()?).map(AsRef::as_ref)
    }
}

impl<T: AsRef<str>> Placement for &[T] {
    fn host_of(&self, vpid: u32) -> Option<&str> {
        self.get(usize::try_from(vpid).ok()?).map(AsRef::as_ref)
    }
}

/// Where a moving rank goes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // kept in a plan, never moved around in bulk
pub enum Destination {
    /// Anywhere the runtime chooses.
    Anywhere,
    /// Anywhere but the host it runs on now.
    OffNode,
    /// This host.
    Host(HostName),
    /// Wherever this other (moving) rank goes.
    With(u32),
}

/// One rank that moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The rank.
    pub vpid: u32,
    /// Where to.
    pub dest: Destination,
}

/// A validated migration: the ranks that move, at most `M`, in the order
/// they were first named.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MigrationPlan<const M: usize> {
    moves: heapless::Vec<Move, M>,
}

impl<const M: usize> MigrationPlan<M> {
    /// An empty plan.
    pub const fn new() -> Self {
        Self {
            moves: heapless::Vec::new(),
        }
    }

    /// The moves.
    pub fn moves(&self) -> &[Move] {
        &self.moves
    }

    /// Where `vpid` goes, if it moves.
    pub fn destination(&self, vpid: u32) -> Option<&Destination> {
        self.moves.iter().find(|m| m.vpid == vpid).map(|m| &m.dest)
    }
}

/// Why a preference table was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum MigrateError {
    /// The table has no entries.
    Empty,
    /// More entries than the coordinator's capacity `M`.
    TooManyEntries,
    /// More distinct ranks named than the capacity `M`.
    TooManyRanks,
    /// A vpid or vpid preference that is not a rank of the job.
    UnknownRank(i32),
    /// A rank the placement does not know the host of.
    UnknownHost(u32),
    /// A host preference longer than [`MAX_HOST_NAME_LEN`].
    HostTooLong,
    /// `off_node` with the host the rank is on: contradictory.
    OffNodeOntoHome {
        /// The requesting rank.
        vpid: u32,
    },
    /// Entries disagree about where this rank goes.
    Conflict {
        /// The rank.
        vpid: u32,
    },
    /// Nobody moves.
    NothingToMove,
}

impl fmt::Display for MigrateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty migration table"),
            Self::TooManyEntries => f.write_str("more migration entries than the capacity"),
            Self::TooManyRanks => f.write_str("more migrating ranks than the capacity"),
            Self::UnknownRank(v) => write!(f, "rank {v} is not in the job"),
            Self::UnknownHost(v) => write!(f, "host of rank {v} unknown"),
            Self::HostTooLong => f.write_str("host preference too long"),
            Self::OffNodeOntoHome { vpid } => {
                write!(f, "rank {vpid} asks to leave its node for its own node")
            }
            Self::Conflict { vpid } => write!(f, "conflicting preferences for rank {vpid}"),
            Self::NothingToMove => f.write_str("no rank moves"),
        }
    }
}

/// One rank's wish, from one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wish<'x> {
    Stay,
    Anywhere,
    OffNode,
    To(&'x str),
    With(u32),
}

/// `To(host)`, or `Stay` when the rank is there already.
fn to<'x>(host: &'x str, current: &str) -> Wish<'x> {
    if host == current {
        Wish::Stay
    } else {
        Wish::To(host)
    }
}

/// Two wishes for one rank, combined; `None` if they conflict.
fn merge<'x>(a: Wish<'x>, b: Wish<'x>) -> Option<Wish<'x>> {
    use Wish::*;
    match (a, b) {
        (Stay, Stay) => Some(Stay),
        (Stay, _) | (_, Stay) => None,
        (Anywhere, x) | (x, Anywhere) => Some(x),
        (OffNode, OffNode) => Some(OffNode),
        (OffNode, To(h)) | (To(h), OffNode) => Some(To(h)),
        (To(a), To(b)) if a == b => Some(To(a)),
        (With(p), With(q)) if p == q => Some(With(p)),
        _ => None,
    }
}

fn rank(v: i32, nranks: u32) -> Result<u32, MigrateError> {
    u32::try_from(v)
        .ok()
        .filter(|r| *r < nranks)
        .ok_or(MigrateError::UnknownRank(v))
}

fn host<P: Placement + ?Sized>(placement: &P, vpid: u32) -> Result<&str, MigrateError> {
    placement
        .host_of(vpid)
        .ok_or(MigrateError::UnknownHost(vpid))
}

type Wishes<'x> = ((u32, Wish<'x>), Option<(u32, Wish<'x>)>);

/// The wishes one entry expresses (the table at the top of this module).
fn wishes<'x, P: Placement + ?Sized>(
    e: MigrateEntry<'x>,
    nranks: u32,
    placement: &'x P,
) -> Result<Wishes<'x>, MigrateError> {
    let r = rank(e.vpid, nranks)?;
    let home = host(placement, r)?;
    let pref = e.host.filter(|h| !h.is_empty());
    if pref.is_some_and(|h| h.len() > MAX_HOST_NAME_LEN) {
        return Err(MigrateError::HostTooLong);
    }
    if e.vpid_pref < 0 || e.vpid_pref == e.vpid {
        return match (pref, e.off_node) {
            (Some(h), true) if h == home => Err(MigrateError::OffNodeOntoHome { vpid: r }),
            (Some(h), _) => Ok(((r, to(h, home)), None)),
            (None, false) => Ok(((r, Wish::Anywhere), None)),
            (None, true) => Ok(((r, Wish::OffNode), None)),
        };
    }
    let p = rank(e.vpid_pref, nranks)?;
    let peer_host = host(placement, p)?;
    match (pref, e.off_node) {
        (Some(h), true) if h == home => Err(MigrateError::OffNodeOntoHome { vpid: r }),
        (Some(h), false) if h == home => Ok(((p, to(home, peer_host)), None)),
        (None, false) => Ok(((p, to(home, peer_host)), None)),
        (None, true) => Ok(((r, Wish::OffNode), Some((p, Wish::With(r))))),
        (Some(h), _) => Ok(((r, to(h, home)), Some((p, to(h, peer_host))))),
    }
}

/// Validates `entries` for a job of `nranks` ranks placed by `placement`
/// and writes the moves into `out` (cleared first; left empty on error).
pub(crate) fn plan<'x, P: Placement + ?Sized, const M: usize>(
    entries: List<'x, MigrateEntry<'x>>,
    nranks: u32,
    placement: &'x P,
    out: &mut MigrationPlan<M>,
) -> Result<(), MigrateError> {
    out.moves.clear();
    let result = build(entries, nranks, placement, out);
    if result.is_err() {
        out.moves.clear();
    }
    result
}

fn build<'x, P: Placement + ?Sized, const M: usize>(
    entries: List<'x, MigrateEntry<'x>>,
    nranks: u32,
    placement: &'x P,
    out: &mut MigrationPlan<M>,
) -> Result<(), MigrateError> {
    if entries.is_empty() {
        return Err(MigrateError::Empty);
    }
    if entries.len() > M {
        return Err(MigrateError::TooManyEntries);
    }
    let mut table: heapless::Vec<(u32, Wish<'x>), M> = heapless::Vec::new();
    for entry in entries.iter() {
        let (first, second) = wishes(entry, nranks, placement)?;
        for (vpid, wish) in core::iter::once(first).chain(second) {
            match table.iter_mut().find(|(v, _)| *v == vpid) {
                Some(slot) => {
                    slot.1 = merge(slot.1, wish).ok_or(MigrateError::Conflict { vpid })?;
                }
                None => table
                    .push((vpid, wish))
                    .map_err(|_| MigrateError::TooManyRanks)?,
            }
        }
    }
    // A rank that goes "with" a peer follows the peer's named host, if any.
    for i in 0..table.len() {
        let Some(&(vpid, Wish::With(leader))) = table.get(i) else {
            continue;
        };
        let resolved = match table.iter().find(|(v, _)| *v == leader).map(|(_, w)| *w) {
            Some(Wish::To(h)) => to(h, host(placement, vpid)?),
            Some(Wish::OffNode | Wish::Anywhere) => Wish::With(leader),
            _ => return Err(MigrateError::Conflict { vpid }),
        };
        if let Some(slot) = table.get_mut(i) {
            slot.1 = resolved;
        }
    }
    // By reference: heapless's owning iterator keeps a panic path in its drop.
    for &(vpid, wish) in table.iter() {
        let dest = match wish {
            Wish::Stay => continue,
            Wish::Anywhere => Destination::Anywhere,
            Wish::OffNode => Destination::OffNode,
            Wish::To(h) => {
                Destination::Host(HostName::try_from(h).map_err(|_| MigrateError::HostTooLong)?)
            }
            Wish::With(leader) => Destination::With(leader),
        };
        // `table` holds at most M ranks, so this cannot overflow.
        out.moves
            .push(Move { vpid, dest })
            .map_err(|_| MigrateError::TooManyRanks)?;
    }
    if out.moves.is_empty() {
        return Err(MigrateError::NothingToMove);
    }
    Ok(())
}
