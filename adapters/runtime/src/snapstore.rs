//! The node daemon's snapshot store.
//!
//! ```text
//! <store>/<job>/<seq>/rank-<r>/...        one complete snapshot per sequence number
//! <store>/<job>/<seq>/snapshot.json       its metadata (job, seq, reference, ranks, ...)
//! <store>/<job>/.staging-<daemon pid>/    the running daemon's snapshots in progress:
//!     <handle>/rank-<r>/                  where rank r writes snapshot <handle>
//!     <handle>.global                     seq and reference, once established
//! ```
//!
//! A rank writes snapshot H into `$SNAPC_SNAPSHOT_ROOT/H/rank-<r>/` (the
//! daemon sets `SNAPC_SNAPSHOT_ROOT` to its staging directory): it does not
//! need to know the sequence number, which the global coordinator assigns and
//! which only means something once the snapshot is complete. When every rank
//! finished with CONTINUE or TERM, the daemon writes `snapshot.json` into
//! `H/` (temporary file, fsync, rename), syncs it, and renames `H/` to
//! `<seq>/` (then fsyncs the job directory): a snapshot directory with a
//! number for a name is complete by construction. A failed or interrupted
//! checkpoint stays in (and is removed with) the staging directory, so it
//! never becomes the latest snapshot and never touches earlier ones.
//!
//! The daemon's sequence numbers continue those already in the store (a
//! restarted job does not overwrite its earlier snapshots): the store's seq
//! is the global coordinator's plus the store's next number when the daemon
//! started.

use serde_json::Value;
use snapc_posix::{sstore, store};
use std::path::{Path, PathBuf};

/// The metadata file of a complete snapshot.
pub const METADATA: &str = "snapshot.json";

/// Whether `name` is a usable job name (a single path component).
pub fn valid_job_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The complete snapshots of the job directory `root`, by sequence number.
pub fn complete_snapshots(root: &Path) -> Vec<(u32, PathBuf)> {
    let mut v: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let seq = e.file_name().to_str()?.parse::<u32>().ok()?;
            let dir = e.path();
            dir.join(METADATA).is_file().then_some((seq, dir))
        })
        .collect();
    v.sort_by_key(|(seq, _)| *seq);
    v
}

/// The latest complete snapshot of the job directory `root`.
pub fn latest(root: &Path) -> Option<(u32, PathBuf)> {
    complete_snapshots(root).pop()
}

/// A snapshot's metadata.
pub fn read_metadata(dir: &Path) -> Result<Value, String> {
    let path = dir.join(METADATA);
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The bytes of the regular files under `dir`.
pub fn tree_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// Whether process `pid` exists.
fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// One job's snapshots, as one daemon writes them.
#[derive(Debug)]
pub struct JobStore {
    root: PathBuf,
    staging: PathBuf,
    /// Added to the global coordinator's sequence numbers.
    base: u32,
}

impl JobStore {
    /// Opens (creating) `<store>/<job>/`, removes the staging directories of
    /// daemons that no longer run, and creates this daemon's.
    pub fn open(store: &Path, job: &str) -> std::io::Result<Self> {
        let root = store.join(job);
        std::fs::create_dir_all(&root)?;
        for entry in std::fs::read_dir(&root)?.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(".staging-"))
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            if !alive(pid) || pid == std::process::id() as i32 {
                log::info!("removing stale {}", entry.path().display());
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let staging = root.join(format!(".staging-{}", std::process::id()));
        std::fs::create_dir_all(&staging)?;
        let base = latest(&root).map_or(0, |(s, _)| s.saturating_add(1));
        Ok(Self {
            root,
            staging,
            base,
        })
    }

    /// `<store>/<job>/`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The staging directory (the ranks' `SNAPC_SNAPSHOT_ROOT`).
    pub fn staging(&self) -> &Path {
        &self.staging
    }

    /// The store's sequence number for the coordinator's `gc_seq`.
    pub fn seq(&self, gc_seq: u32) -> u32 {
        self.base.saturating_add(gc_seq)
    }

    /// Makes the directory of snapshot `handle` (before the ranks write
    /// into it), so that an unusable store fails the checkpoint at once with
    /// a clear message.
    pub fn prepare(&self, handle: u32) -> Result<(), String> {
        let dir = self.staging.join(handle.to_string());
        std::fs::create_dir_all(&dir)
            .and_then(|()| {
                let probe = dir.join(".probe");
                std::fs::write(&probe, b"x")?;
                std::fs::remove_file(&probe)
            })
            .map_err(|e| format!("snapshot store {}: {e}", dir.display()))
    }

    /// Publishes snapshot `handle` as `<seq>/` with `metadata`: the
    /// metadata written atomically, everything synced, then one rename.
    pub fn publish(&self, handle: u32, seq: u32, metadata: &Value) -> Result<PathBuf, String> {
        let dir = self.staging.join(handle.to_string());
        let target = self.root.join(seq.to_string());
        let err = |what: &str, e: std::io::Error| format!("snapshot {seq}: {what}: {e}");
        if target.exists() {
            return Err(format!("snapshot {seq}: {} exists", target.display()));
        }
        let text = serde_json::to_string_pretty(metadata).unwrap_or_default();
        store::write_atomically(&dir.join(METADATA), text.as_bytes())
            .map_err(|e| err("writing the metadata", e))?;
        store::sync_tree(&dir).map_err(|e| err("syncing", e))?;
        std::fs::rename(&dir, &target).map_err(|e| err("renaming", e))?;
        std::fs::File::open(&self.root)
            .and_then(|f| f.sync_all())
            .map_err(|e| err("syncing the job directory", e))?;
        Ok(target)
    }

    /// Records the established `seq` and `reference` of `handle` for the ranks.
    pub fn record_global(&self, handle: u32, seq: u32, reference: &str) {
        let path = sstore::global_file(&self.staging, handle);
        if let Err(e) =
            store::write_atomically(&path, sstore::format_global(seq, reference).as_bytes())
        {
            log::warn!("{}: {e}", path.display());
        }
    }

    /// A message when the store's file system has less than a page left
    /// (a checkpoint that failed then most likely failed for want of space).
    pub fn full(&self) -> Option<String> {
        let v = nix::sys::statvfs::statvfs(&self.staging).ok()?;
        let free = v.blocks_available().saturating_mul(v.fragment_size());
        (free < 4096).then(|| {
            format!(
                "the snapshot store {} is full ({free} bytes free): No space left on device",
                self.root.display()
            )
        })
    }

    /// Throws away snapshot `handle` (failed or interrupted).
    pub fn discard(&self, handle: u32) {
        let _ = std::fs::remove_dir_all(self.staging.join(handle.to_string()));
    }

    /// Keeps the `keep` latest complete snapshots and removes the others.
    pub fn prune(&self, keep: usize) -> Vec<u32> {
        let all = complete_snapshots(&self.root);
        let drop = all.len().saturating_sub(keep);
        let mut removed = Vec::new();
        for (seq, dir) in all.into_iter().take(drop) {
            // Unpublish first (the metadata goes), then remove the rest.
            if std::fs::remove_file(dir.join(METADATA)).is_ok() {
                let _ = std::fs::remove_dir_all(&dir);
                removed.push(seq);
            }
        }
        removed
    }

    /// Removes the staging directory (at the daemon's exit).
    pub fn close(&self) {
        let _ = std::fs::remove_dir_all(&self.staging);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use snapc_posix::sstore::{read_global, staged_rank_dir};

    #[test]
    fn publish_discard_latest_and_prune() {
        let t = tempfile::tempdir().unwrap();
        let s = JobStore::open(t.path(), "j").unwrap();
        assert!(latest(s.root()).is_none());
        for (h, seq) in [(1, 0), (2, 1), (3, 2)] {
            s.prepare(h).unwrap();
            let d = staged_rank_dir(s.staging(), h, 0);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("state"), b"123").unwrap();
            if h == 2 {
                s.discard(h);
                continue;
            }
            s.publish(h, s.seq(seq), &serde_json::json!({"seq": seq}))
                .unwrap();
            s.record_global(h, seq, "ref");
        }
        assert_eq!(read_global(s.staging(), 3), Some((2, "ref".into())));
        let all: Vec<u32> = complete_snapshots(s.root()).iter().map(|x| x.0).collect();
        assert_eq!(all, vec![0, 2], "the failed one never appears");
        assert_eq!(latest(s.root()).unwrap().0, 2);
        assert!(tree_size(&s.root().join("2")) > 3);
        assert_eq!(s.prune(1), vec![0]);
        assert!(!s.root().join("0").exists());
        s.close();
        // A new daemon continues the numbering.
        let s2 = JobStore::open(t.path(), "j").unwrap();
        assert_eq!(s2.seq(0), 3);
        assert!(valid_job_name("a-b_c.1") && !valid_job_name("../x") && !valid_job_name(""));
    }
}
