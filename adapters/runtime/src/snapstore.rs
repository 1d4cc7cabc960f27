//! The node daemon's snapshot store.
//!
//! ```text
//! <store>/<job>/<seq>/rank-<r>/...        one complete snapshot per sequence number
//! <store>/<job>/<seq>/snapshot.json       its metadata (job, seq, reference, ranks, ...)
//! <store>/<job>/.staging-<daemon pid>/    the running daemon's snapshots in progress:
//!     <handle>/rank-<r>/                  where rank r writes snapshot <handle>
//!     <handle>.global                     seq and reference, once established
//! <store>/<job>/.trash-<seq>-<pid>        a pruned snapshot being removed
//! <store>/standalone/<handle>/pid-<pid>/  `snapc checkpoint --pid` (no job has this name)
//! ```
//!
//! A path is told apart by content, never by its name (a job may be named
//! 123456): a snapshot directory holds `snapshot.json` or `rank-*`, a job
//! directory numbered snapshots or a daemon's staging directory. A job
//! directory left without snapshots is removed when its daemon exits.
//!
//! A rank writes snapshot H into `$SNAPC_SNAPSHOT_ROOT/H/rank-<r>/` (the
//! daemon sets `SNAPC_SNAPSHOT_ROOT` to its staging directory and creates
//! `H/` before it asks for the snapshot): it does not need to know the
//! sequence number, which the global coordinator assigns and which only
//! means something once the snapshot is complete. When every rank finished
//! with CONTINUE or TERM (each rank synced its own directory before it
//! said so), the daemon writes and syncs `snapshot.json` in `H/`, syncs
//! `H/`, and renames it to `<seq>/` (then fsyncs the job directory): a
//! snapshot directory with a number for a name is complete by
//! construction. Pruning renames a snapshot out of
//! the numbered names before it deletes it, so a numbered directory never
//! loses parts either. A failed or interrupted checkpoint stays in (and is
//! removed with) the staging directory, so it never becomes the latest
//! snapshot and never touches earlier ones.
//!
//! The store is private: the store directory must be this user's and
//! writable by nobody else, every directory in it is created 0700 and every
//! file 0600 whatever the umask, and all of it is reached through directory
//! descriptors without following symlinks ([`snapc_posix::store`]).
//!
//! A daemon holds an exclusive `flock` on its staging directory for its
//! life: a staging directory nobody holds belongs to a daemon that is gone,
//! and the job's next daemon removes it (with any `.trash-*` left by an
//! interrupted prune).
//!
//! The daemon's sequence numbers continue those already in the store (a
//! restarted job does not overwrite its earlier snapshots): the store's seq
//! is the global coordinator's plus the store's next number when the daemon
//! started. They are `u64`: they do not run out.

use serde_json::Value;
use snapc_posix::sstore;
use snapc_posix::store::{DirError, DirLock, PrivateDir};
use std::path::{Path, PathBuf};

/// The metadata file of a complete snapshot.
pub const METADATA: &str = "snapshot.json";

const STAGING_PREFIX: &str = ".staging-";
const TRASH_PREFIX: &str = ".trash-";

/// Whether `name` is a usable job name (a single path component).
pub fn valid_job_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The sequence number a directory name stands for (decimal, no sign, no
/// leading zero).
pub fn seq_of(name: &str) -> Option<u64> {
    let digits = !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit());
    (digits && (name == "0" || !name.starts_with('0')))
        .then(|| name.parse().ok())
        .flatten()
}

/// The complete snapshots in the job directory `root`, by sequence number.
pub fn complete_in(root: &PrivateDir) -> Vec<(u64, String)> {
    let mut v: Vec<(u64, String)> = root
        .entries()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, _)| {
            let seq = seq_of(&name)?;
            let dir = root.open_sub(&name, false).ok()?;
            dir.is_file(METADATA).then_some((seq, name))
        })
        .collect();
    v.sort_by_key(|(seq, _)| *seq);
    v
}

/// The complete snapshots of the job directory `root`, by sequence number
/// (none when `root` is not a private directory of this user).
pub fn complete_snapshots(root: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(dir) = PrivateDir::open(root, false) else {
        return Vec::new();
    };
    complete_in(&dir)
        .into_iter()
        .map(|(seq, name)| (seq, root.join(name)))
        .collect()
}

/// The latest complete snapshot of the job directory `root`.
pub fn latest(root: &Path) -> Option<(u64, PathBuf)> {
    complete_snapshots(root).pop()
}

/// The metadata of the snapshot in `dir`.
pub fn metadata_in(dir: &PrivateDir) -> Result<Value, String> {
    let bytes = dir.read_file(METADATA).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: {e}", dir.path().join(METADATA).display()))
}

/// A snapshot's metadata (the directory and the file checked to be private).
pub fn read_metadata(dir: &Path) -> Result<Value, String> {
    metadata_in(&PrivateDir::open(dir, false).map_err(|e| e.to_string())?)
}

/// The rank of a `rank-<r>` directory name.
pub fn rank_of(name: &str) -> Option<u32> {
    name.strip_prefix("rank-")?.parse().ok()
}

/// The ranks whose directories a snapshot holds, sorted.
pub fn ranks_in(dir: &PrivateDir) -> Vec<u32> {
    let mut v: Vec<u32> = dir
        .entries()
        .unwrap_or_default()
        .iter()
        .filter_map(|(n, _)| rank_of(n))
        .collect();
    v.sort_unstable();
    v
}

/// Why the rank directories of the snapshot `dir` are not exactly
/// `rank-0` to `rank-<nranks - 1>`, if they are not.
pub fn rank_dirs_mismatch(dir: &PrivateDir, nranks: u64) -> Option<String> {
    let found = ranks_in(dir);
    let exact = found.len() as u64 == nranks
        && found
            .iter()
            .enumerate()
            .all(|(i, r)| i as u64 == u64::from(*r));
    if exact {
        return None;
    }
    let missing: Vec<String> = (0..nranks)
        .filter(|r| u32::try_from(*r).is_ok_and(|r| found.binary_search(&r).is_err()))
        .take(8)
        .map(|r| format!("rank-{r}"))
        .collect();
    let extra: Vec<String> = found
        .iter()
        .filter(|r| u64::from(**r) >= nranks)
        .take(8)
        .map(|r| format!("rank-{r}"))
        .collect();
    let mut why = format!(
        "the metadata names {nranks} ranks, {} rank directories are there",
        found.len()
    );
    if !missing.is_empty() {
        why.push_str(&format!("; missing {}", missing.join(", ")));
    }
    if !extra.is_empty() {
        why.push_str(&format!("; not in the metadata {}", extra.join(", ")));
    }
    Some(why)
}

/// One job's snapshots, as one daemon writes them.
#[derive(Debug)]
pub struct JobStore {
    /// The store, for removing an empty job directory at the end.
    store: PrivateDir,
    job: String,
    root: PrivateDir,
    staging: PrivateDir,
    staging_name: String,
    /// Held for the daemon's life: the staging directory is in use.
    lock: Option<DirLock>,
    /// Added to the global coordinator's sequence numbers.
    base: u64,
}

impl JobStore {
    /// Opens (creating) `<store>/<job>/`, refusing a store that is not a
    /// private directory of this user; removes what daemons that are gone
    /// left (staging directories nobody holds, interrupted prunes); creates
    /// and locks this daemon's staging directory.
    pub fn open(store: &Path, job: &str) -> Result<Self, DirError> {
        let store = PrivateDir::open(store, true)?;
        let root = store.open_sub(job, true)?;
        for (name, _) in root.entries()? {
            if name.starts_with(TRASH_PREFIX) {
                log::info!("removing {}", root.path().join(&name).display());
                if let Err(e) = root.remove_tree(&name) {
                    log::warn!("{e}");
                }
            } else if name.starts_with(STAGING_PREFIX) {
                let Ok(dir) = root.open_sub(&name, false) else {
                    continue;
                };
                // Held: a live daemon of this job (another run directory).
                if let Ok(Some(_gone)) = dir.try_lock() {
                    log::info!("removing stale {}", dir.path().display());
                    if let Err(e) = root.remove_tree(&name) {
                        log::warn!("{e}");
                    }
                }
            }
        }
        let staging_name = format!("{STAGING_PREFIX}{}", std::process::id());
        root.remove_tree(&staging_name)?;
        let staging = root.create_sub(&staging_name)?;
        let lock = staging.try_lock()?;
        let base = match complete_in(&root).pop() {
            None => 0,
            Some((s, _)) => s.checked_add(1).ok_or_else(|| DirError::Unsafe {
                path: root.path().join(s.to_string()),
                reason: "the last possible sequence number is taken".into(),
            })?,
        };
        Ok(Self {
            store,
            job: job.to_string(),
            root,
            staging,
            staging_name,
            lock,
            base,
        })
    }

    /// `<store>/<job>/`.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The job directory, open.
    pub fn root_dir(&self) -> &PrivateDir {
        &self.root
    }

    /// The staging directory (the ranks' `SNAPC_SNAPSHOT_ROOT`).
    pub fn staging(&self) -> &Path {
        self.staging.path()
    }

    /// The store's sequence number for the coordinator's `gc_seq`.
    pub fn seq(&self, gc_seq: u32) -> u64 {
        self.base.saturating_add(u64::from(gc_seq))
    }

    /// The staging directory, opened again if it was removed under us
    /// (its path then holds whatever is there now, checked).
    fn staging_dir(&mut self) -> Result<&PrivateDir, DirError> {
        if self.staging.is_removed() {
            let dir = self.root.open_sub(&self.staging_name, true)?;
            self.lock = dir.try_lock()?;
            self.staging = dir;
        }
        Ok(&self.staging)
    }

    /// Makes the directory of snapshot `handle` (before the ranks write
    /// into it), so that an unusable store fails the checkpoint at once with
    /// a clear message.
    pub fn prepare(&mut self, handle: u32) -> Result<(), String> {
        let name = handle.to_string();
        let err = |e: DirError| format!("snapshot store: {e}");
        let staging = self.staging_dir().map_err(err)?;
        staging.remove_tree(&name).map_err(err)?;
        let dir = staging.create_sub(&name).map_err(err)?;
        let probe = ".probe";
        dir.create_file(probe)
            .and_then(|mut f| {
                use std::io::Write;
                f.write_all(b"x").map_err(|e| DirError::Sys {
                    path: dir.path().join(probe),
                    op: "write",
                    errno: e
                        .raw_os_error()
                        .map_or(nix::errno::Errno::EIO, nix::errno::Errno::from_raw),
                })
            })
            .and_then(|()| dir.remove_file(probe))
            .map_err(err)
    }

    /// The directory of snapshot `handle` in staging.
    pub fn staged(&self, handle: u32) -> Result<PrivateDir, DirError> {
        self.staging.open_sub(&handle.to_string(), false)
    }

    /// Publishes snapshot `handle` as `<seq>/` with `metadata`: the
    /// metadata written and synced, the snapshot's directory synced, then
    /// one rename (which never replaces anything) and a sync of the job
    /// directory.
    ///
    /// Each rank synced its own directory, everything in it, before it
    /// reported its final state (its sync step: a rank whose sync failed
    /// reports an error and the snapshot is not published), so what is
    /// left to make durable here is the metadata and the snapshot's own
    /// entries: each file and directory is synced once, by whoever wrote it.
    pub fn publish(&self, handle: u32, seq: u64, metadata: &Value) -> Result<PathBuf, String> {
        let err = |what: &str, e: DirError| format!("snapshot {seq}: {what}: {e}");
        let name = seq.to_string();
        let dir = self.staged(handle).map_err(|e| err("staging", e))?;
        let text = serde_json::to_string_pretty(metadata).unwrap_or_default();
        match dir.write_new_synced(METADATA, text.as_bytes()) {
            // A rank's hooks cannot have put it there (they write in their
            // own directories), but whatever is there is replaced whole.
            Err(e) if e.errno() == Some(nix::errno::Errno::EEXIST) => {
                dir.write_atomically(METADATA, text.as_bytes())
            }
            other => other,
        }
        .map_err(|e| err("writing the metadata", e))?;
        dir.sync().map_err(|e| err("syncing", e))?;
        self.staging
            .rename_new(&handle.to_string(), &self.root, &name)
            .map_err(|e| err("renaming", e))?;
        self.root
            .sync()
            .map_err(|e| err("syncing the job directory", e))?;
        Ok(self.root.path().join(name))
    }

    /// Records the established `seq` and `reference` of `handle` for the
    /// ranks: whole or not at all for a reader, and not synced (it serves
    /// the running job only; staging goes with the daemon).
    pub fn record_global(&self, handle: u32, seq: u64, reference: &str) {
        let text = sstore::format_global(seq, reference);
        if let Err(e) = self
            .staging
            .replace_file(&sstore::global_name(handle), text.as_bytes())
        {
            log::warn!("{e}");
        }
    }

    /// A message when the store's file system has less than a page left
    /// (a checkpoint that failed then most likely failed for want of space).
    pub fn full(&self) -> Option<String> {
        let free = self.staging.free_bytes()?;
        (free < 4096).then(|| {
            format!(
                "the snapshot store {} is full ({free} bytes free): No space left on device",
                self.root.path().display()
            )
        })
    }

    /// Throws away snapshot `handle` (failed or interrupted) and its record.
    pub fn discard(&self, handle: u32) {
        for name in [handle.to_string(), sstore::global_name(handle)] {
            if let Err(e) = self.staging.remove_tree(&name) {
                log::warn!("discarding snapshot {handle}: {e}");
            }
        }
    }

    /// Keeps the `keep` latest complete snapshots and removes the others:
    /// each is first renamed out of the numbered names, then deleted.
    pub fn prune(&self, keep: usize) -> Vec<u64> {
        // The snapshot just taken always stays.
        let keep = keep.max(1);
        let all = complete_in(&self.root);
        let drop = all.len().saturating_sub(keep);
        let mut removed = Vec::new();
        for (seq, name) in all.into_iter().take(drop) {
            let trash = format!("{TRASH_PREFIX}{seq}-{}", std::process::id());
            match self.root.rename(&name, &self.root, &trash) {
                Ok(()) => {
                    removed.push(seq);
                    if let Err(e) = self.root.remove_tree(&trash) {
                        log::warn!("pruning snapshot {seq}: {e}");
                    }
                }
                Err(e) => log::warn!("pruning snapshot {seq}: {e}"),
            }
        }
        removed
    }

    /// Removes the staging directory (at the daemon's exit), and the job
    /// directory if no snapshot is left in it.
    pub fn close(&self) {
        if let Err(e) = self.root.remove_tree(&self.staging_name) {
            log::warn!("{e}");
        }
        if let Err(e) = self.store.remove_empty_dir(&self.job) {
            log::warn!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use snapc_posix::sstore::{open_rank_dir, read_global};
    use std::io::Write;

    #[test]
    fn publish_discard_latest_and_prune() {
        let t = tempfile::tempdir().unwrap();
        let mut s = JobStore::open(t.path(), "j").unwrap();
        assert!(latest(s.root()).is_none());
        for (h, seq) in [(1, 0), (2, 1), (3, 2)] {
            s.prepare(h).unwrap();
            let d = open_rank_dir(s.staging(), h, 0).unwrap();
            d.create_file("state").unwrap().write_all(b"123").unwrap();
            if h == 2 {
                s.discard(h);
                continue;
            }
            s.publish(h, s.seq(seq), &serde_json::json!({"seq": seq}))
                .unwrap();
            s.record_global(h, s.seq(seq), "ref");
        }
        assert_eq!(read_global(s.staging(), 3), Some((2, "ref".into())));
        let all: Vec<u64> = complete_snapshots(s.root()).iter().map(|x| x.0).collect();
        assert_eq!(all, vec![0, 2], "the failed one never appears");
        assert_eq!(latest(s.root()).unwrap().0, 2);
        let two = PrivateDir::open(s.root().join("2"), false).unwrap();
        assert!(two.tree_size() > 3);
        assert_eq!(s.prune(1), vec![0]);
        assert!(s.prune(0).is_empty(), "the latest snapshot always stays");
        assert!(!s.root().join("0").exists());
        // A rank late to a discarded snapshot creates nothing.
        assert!(open_rank_dir(s.staging(), 2, 1).is_err());
        s.close();
        // A new daemon continues the numbering.
        let s2 = JobStore::open(t.path(), "j").unwrap();
        assert_eq!(s2.seq(0), 3);
        assert!(valid_job_name("a-b_c.1") && !valid_job_name("../x") && !valid_job_name(""));
    }

    #[test]
    fn sequence_numbers_go_past_u32() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("j");
        let last = root.join(u32::MAX.to_string());
        std::fs::create_dir_all(&last).unwrap();
        std::fs::write(last.join(METADATA), b"{}").unwrap();
        let s = JobStore::open(t.path(), "j").unwrap();
        assert_eq!(s.seq(0), u64::from(u32::MAX) + 1);
        assert_eq!(seq_of("007"), None);
        assert_eq!(seq_of("0"), Some(0));
        assert_eq!(seq_of("18446744073709551616"), None);
    }

    /// Unmounts (lazily) when dropped.
    struct Mounted(PathBuf);

    impl Drop for Mounted {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }

    #[test]
    fn an_interrupted_prune_never_leaves_a_numbered_snapshot_without_metadata() {
        if !nix::unistd::Uid::effective().is_root() {
            assert!(
                std::env::var_os("SNAPC_REQUIRE_ROOT").is_none_or(|v| v != "1"),
                "needs root to bind-mount (SNAPC_REQUIRE_ROOT=1)"
            );
            eprintln!("SKIP an_interrupted_prune_...: needs root to bind-mount");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let mut s = JobStore::open(t.path(), "j").unwrap();
        for h in [1, 2] {
            s.prepare(h).unwrap();
            let d = open_rank_dir(s.staging(), h, 0).unwrap();
            d.open_sub("sub", true).unwrap();
            s.publish(h, s.seq(h - 1), &serde_json::json!({})).unwrap();
        }
        // A mount point inside snapshot 0 cannot be removed (EBUSY): its
        // deletion stops half-way, as a daemon killed during it would.
        let sub = s.root().join("0/rank-0/sub");
        let ok = std::process::Command::new("mount")
            .arg("--bind")
            .arg(elsewhere.path())
            .arg(&sub)
            .status()
            .is_ok_and(|st| st.success());
        assert!(ok, "mount --bind");
        let _mounted = Mounted(sub);
        assert_eq!(s.prune(1), vec![0]);
        for e in std::fs::read_dir(s.root()).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if seq_of(&name).is_some() {
                assert!(
                    e.path().join(METADATA).is_file(),
                    "{name} lost its metadata"
                );
            }
        }
        let left: Vec<String> = std::fs::read_dir(s.root())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(TRASH_PREFIX))
            .collect();
        assert_eq!(left.len(), 1, "the half-removed one is out of the numbers");
        let trash = s.root().join(&left[0]);
        drop(_mounted);
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(trash.join("rank-0/sub"))
            .status();
        s.close();
        let s = JobStore::open(t.path(), "j").unwrap();
        assert!(!trash.exists(), "removed when the store is opened again");
        assert_eq!(complete_in(&s.root).len(), 1);
    }

    #[test]
    fn leftovers_of_dead_daemons_are_removed_and_live_ones_kept() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("j");
        std::fs::create_dir_all(root.join(".staging-1/5/rank-0")).unwrap();
        std::fs::create_dir_all(root.join(".trash-3-1/rank-0")).unwrap();
        std::fs::create_dir_all(root.join(".staging-2")).unwrap();
        let held = PrivateDir::open(root.join(".staging-2"), false).unwrap();
        let _lock = held.try_lock().unwrap().unwrap();
        let s = JobStore::open(t.path(), "j").unwrap();
        assert!(!root.join(".staging-1").exists());
        assert!(!root.join(".trash-3-1").exists());
        assert!(root.join(".staging-2").exists(), "a live daemon's");
        assert!(s.staging().exists());
    }
}
