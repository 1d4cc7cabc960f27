//! The invariants, one checker per family. The world calls them at the
//! points where the family's facts happen and records what they report as
//! a [`crate::Violation`] of the family's kind; each checker keeps the
//! state its family needs and nothing else.
//!
//! | checker | kind | what must hold |
//! |---|---|---|
//! | [`encoding`] | `encoding` | every byte string a machine emits decodes on its channel (and back to the request sent) |
//! | [`snapshot`] | `established`, `sequence`, `snapshot` | a snapshot is established only after every rank in it reported a good state; sequence numbers grow; a restored process has its snapshot's state |
//! | [`prepared`] | `prepared` | no application code runs between a prepare that said ready and the recover |
//! | [`fifo`] | `fifo` | no FIFO names are left after a handshake |
//! | [`fin`] | `fin` | FIN_ACK never goes out while a checkpoint runs; FIN is acknowledged on a clean path, and then the GC is finished |
//!
//! Liveness (every driver step ends within its bound, nothing stalls, no
//! livelock) is the driver's (`world::driver`); a panic in any machine is
//! caught where events are delivered.

pub mod encoding;
pub mod fifo;
pub mod fin;
pub mod prepared;
pub mod snapshot;
