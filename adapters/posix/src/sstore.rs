//! The rank's side of the job's snapshot store: where a rank writes the
//! snapshot a handshake asks for, and where it reads the sequence number and
//! reference the runtime gave that snapshot once it was established.
//!
//! ```text
//! $SNAPC_SNAPSHOT_ROOT/<handle>/rank-<r>/   rank r's part of snapshot <handle>
//! $SNAPC_SNAPSHOT_ROOT/<handle>.global      "<seq>\n<reference>\n", once established
//! ```
//!
//! The runtime (the node daemon) owns the rest of the store: it sets
//! `SNAPC_SNAPSHOT_ROOT` to its staging directory, creates `<handle>/`
//! before it asks the ranks for the snapshot, publishes complete snapshots
//! under their sequence numbers and writes the `.global` files.
//!
//! Every directory here is private ([`PrivateDir`]): the staging root and
//! `<handle>/` are checked when opened (never created by the rank, so a
//! rank that comes late to a checkpoint the runtime already threw away
//! writes nothing), `rank-<r>/` is created 0700, and all of it is reached
//! through descriptors without following symlinks.

use crate::store::{DirError, PrivateDir};
use std::path::{Path, PathBuf};

/// Where rank `rank` writes snapshot `handle` under the staging root.
pub fn staged_rank_dir(root: &Path, handle: u32, rank: u32) -> PathBuf {
    root.join(handle.to_string()).join(format!("rank-{rank}"))
}

/// Opens (creating `rank-<rank>/`) where rank `rank` writes snapshot
/// `handle` under the staging root: the root and `<handle>/` must exist
/// and be private.
pub fn open_rank_dir(root: &Path, handle: u32, rank: u32) -> Result<PrivateDir, DirError> {
    open_handle_dir(root, handle)?.open_sub(&format!("rank-{rank}"), true)
}

/// Opens `<root>/<handle>/`, which the runtime made for snapshot `handle`
/// (never created here): both must exist and be private.
pub fn open_handle_dir(root: &Path, handle: u32) -> Result<PrivateDir, DirError> {
    PrivateDir::open(root, false)?.open_sub(&handle.to_string(), false)
}

/// The name of the file holding the established sequence number and
/// reference of `handle`, in the staging root.
pub fn global_name(handle: u32) -> String {
    format!("{handle}.global")
}

/// The file holding the established sequence number and reference of `handle`.
pub fn global_file(root: &Path, handle: u32) -> PathBuf {
    root.join(global_name(handle))
}

/// The contents of a `.global` file.
pub fn format_global(seq: u64, reference: &str) -> String {
    format!("{seq}\n{reference}\n")
}

/// The sequence number and reference the runtime recorded for `handle`.
/// A sequence number the protocol cannot carry (over `i32::MAX`) reads as
/// -1, the protocol's "unknown".
pub fn read_global(root: &Path, handle: u32) -> Option<(i32, String)> {
    let bytes = PrivateDir::open(root, false)
        .ok()?
        .read_file(&global_name(handle))
        .ok()?;
    parse_global(std::str::from_utf8(&bytes).ok()?)
}

fn parse_global(text: &str) -> Option<(i32, String)> {
    let (seq, rest) = text.split_once('\n')?;
    let reference = rest.strip_suffix('\n')?;
    if reference.contains('\n') {
        return None;
    }
    let seq: u64 = seq.parse().ok()?;
    Some((i32::try_from(seq).unwrap_or(-1), reference.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_round_trip_and_damage() {
        let text = format_global(7, "snapc_global_snapshot_x");
        assert_eq!(
            parse_global(&text),
            Some((7, "snapc_global_snapshot_x".into()))
        );
        assert_eq!(parse_global("7\nref"), None);
        assert_eq!(parse_global("x\nref\n"), None);
        assert_eq!(parse_global("7\na\nb\n"), None);
        assert_eq!(
            parse_global(&format_global(1 << 40, "r")),
            Some((-1, "r".into()))
        );
    }
}
