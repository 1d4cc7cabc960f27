//! Snapshots: the global coordinator establishes one only after every rank
//! in it reported a good final state (`established`; the `forge-finished`
//! mutation shows this is seen), sequence numbers grow (`sequence`), and a
//! process the runtime restores has its snapshot's state (`snapshot`).

use snapc_core::wire::{CrState, JobOptions};
use std::collections::{BTreeMap, BTreeSet};

/// What the checker knows of each snapshot (by sstore handle).
#[derive(Debug, Default)]
pub struct Snapshots {
    /// The ranks in each snapshot: those in a local coordinator's table
    /// when it took the JOB_STATE RUNNING.
    members: BTreeMap<u32, Vec<usize>>,
    /// The state each rank reported for each snapshot.
    finals: BTreeMap<(u32, usize), CrState>,
    last_seq: Option<u32>,
    /// Handles of migrations: their snapshots hold the moving ranks only.
    migrations: BTreeSet<u32>,
    quiesce_handle: Option<u32>,
}

/// What an established snapshot means for the runtime, and what was wrong.
#[derive(Debug, Default)]
pub struct Established {
    /// Broken invariants: (kind, detail).
    pub violations: Vec<(&'static str, String)>,
    /// A restart may use it (a whole-job, non-quiesce snapshot).
    pub restartable: bool,
}

impl Snapshots {
    /// The global coordinator sent JOB_STATE RUNNING for `handle`.
    pub fn running(&mut self, handle: u32, options: JobOptions, migrating: bool) {
        if migrating {
            self.migrations.insert(handle);
        }
        self.members.entry(handle).or_default();
        if options.inc_prep_only {
            self.quiesce_handle = Some(handle);
        }
    }

    /// A local coordinator took JOB_STATE RUNNING for `handle` with these
    /// ranks in its table.
    pub fn taken(&mut self, handle: u32, ranks: impl IntoIterator<Item = usize>) {
        let m = self.members.entry(handle).or_default();
        m.extend(ranks);
        m.sort_unstable();
        m.dedup();
    }

    /// The quiesce ended.
    pub fn quiesce_ended(&mut self) {
        self.quiesce_handle = None;
    }

    /// Rank `v` wrote `state` as its final (or quiesced) state for `handle`.
    pub fn reported(&mut self, handle: u32, v: usize, state: CrState) {
        self.finals.insert((handle, v), state);
    }

    /// The ranks in snapshot `handle`.
    pub fn members(&self, handle: u32) -> &[usize] {
        self.members.get(&handle).map_or(&[], Vec::as_slice)
    }

    /// The global coordinator established snapshot `seq` with `handle`;
    /// `quiesced`: the job is quiesced.
    pub fn established(&mut self, seq: u32, handle: u32, quiesced: bool) -> Established {
        let mut out = Established::default();
        if self.last_seq.is_some_and(|s| seq <= s) {
            let d = format!("sequence number {seq} after {:?}", self.last_seq);
            out.violations.push(("sequence", d));
        }
        self.last_seq = Some(seq);
        let quiesce = self.quiesce_handle == Some(handle) && quiesced;
        let mut missing = Vec::new();
        for &v in self.members(handle) {
            let s = self.finals.get(&(handle, v)).copied();
            let ok = if quiesce {
                // Quiesced: RUNNING reported; the rank may have gone on to
                // quiesce end since (the request can arrive late).
                matches!(
                    s,
                    Some(CrState::Running | CrState::Continue | CrState::Term)
                )
            } else {
                matches!(s, Some(CrState::Continue | CrState::Term))
            };
            if !ok {
                missing.push((v, s));
            }
        }
        if !missing.is_empty() {
            missing.truncate(4);
            out.violations.push((
                "established",
                format!("snapshot seq {seq} handle {handle} established before every rank reported: {missing:?}"),
            ));
        }
        out.restartable = !quiesce && !self.migrations.contains(&handle);
        out
    }

    /// Rank `v` is restored from snapshot `handle`, whose image of it is
    /// `image`, into a process whose state is `restored`.
    pub fn restored(
        v: usize,
        handle: u32,
        image: Option<u64>,
        restored: Option<u64>,
    ) -> Result<(), String> {
        match (image, restored) {
            (None, _) => Err(format!(
                "rank {v}: restored from established snapshot handle {handle} that has no state for it"
            )),
            (Some(a), Some(b)) if a != b => Err(format!(
                "rank {v}: restarted state differs from its snapshot"
            )),
            _ => Ok(()),
        }
    }
}
