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
//! `SNAPC_SNAPSHOT_ROOT` to its staging directory, publishes complete
//! snapshots under their sequence numbers and writes the `.global` files.

use std::path::{Path, PathBuf};

/// Where rank `rank` writes snapshot `handle` under the staging root.
pub fn staged_rank_dir(root: &Path, handle: u32, rank: u32) -> PathBuf {
    root.join(handle.to_string()).join(format!("rank-{rank}"))
}

/// The file holding the established sequence number and reference of `handle`.
pub fn global_file(root: &Path, handle: u32) -> PathBuf {
    root.join(format!("{handle}.global"))
}

/// The contents of a `.global` file.
pub fn format_global(seq: u32, reference: &str) -> String {
    format!("{seq}\n{reference}\n")
}

/// The sequence number and reference the runtime recorded for `handle`.
pub fn read_global(root: &Path, handle: u32) -> Option<(i32, String)> {
    let text = std::fs::read_to_string(global_file(root, handle)).ok()?;
    parse_global(&text)
}

fn parse_global(text: &str) -> Option<(i32, String)> {
    let (seq, rest) = text.split_once('\n')?;
    let reference = rest.strip_suffix('\n')?;
    if reference.contains('\n') {
        return None;
    }
    Some((seq.parse().ok()?, reference.to_string()))
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
    }
}
