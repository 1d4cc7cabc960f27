//! The runtime's part: processes that vanish, are terminated, restored
//! from a snapshot, migrated or replaced; snapshots recorded as established;
//! a node daemon that crashes.

use super::events::Ev;
use super::{World, host_name};
use crate::checkers::snapshot::Snapshots;
use crate::devices::{Answer, RuntimeOp};
use snapc_core::global::{self, Destination, Move};
use snapc_core::time::Duration;

impl World {
    /// The process vanishes: its FIFO ends close; it never answers again.
    pub(crate) fn kill(&mut self, v: usize) {
        let r = &mut self.ranks[v];
        r.alive = false;
        r.in_hook = false;
        if let Some(k) = r.chan {
            self.app_closes(k);
        }
        self.after_rank(v);
    }

    /// The runtime takes rank `v`'s process out of its LC's table.
    pub(crate) fn remove_from_lc(&mut self, v: usize) {
        let r = &mut self.ranks[v];
        if !r.in_job {
            return;
        }
        r.in_job = false;
        let node = r.node;
        if self.lc_alive[node] {
            let now = self.now;
            let name = self.name_of(v);
            let _ = self.lcs[node].remove_process(now, name);
            self.after_lc(node);
        }
    }

    /// The runtime replaces rank `v` by a process restored from snapshot
    /// `handle` on `node`; its state must be the snapshot's.
    fn restore(&mut self, v: usize, node: usize, handle: u32) {
        // A node whose daemon is gone takes no process: the runtime uses
        // another.
        let here = self.ranks[v].node;
        let room = |w: &Self, n: usize| {
            w.lc_alive[n] && (w.lcs[n].len() < w.slots || (n == here && w.ranks[v].in_job))
        };
        let nodes = self.nodes;
        let Some(node) = (0..nodes)
            .map(|i| (node + i) % nodes)
            .find(|&n| room(self, n))
        else {
            return;
        };
        let image = self.content.get(&(handle, v)).copied();
        let Some(state) = image else {
            let verdict = Snapshots::restored(v, handle, None, None);
            return self.check("snapshot", verdict);
        };
        let verdict = Snapshots::restored(v, handle, image, Some(state));
        self.check("snapshot", verdict);
        self.replace(v, node, state, None);
    }

    /// Rank `v`'s process is replaced by a new one on `node` with this
    /// application state and the next pid (or `pid`).
    fn replace(&mut self, v: usize, node: usize, state: u64, pid: Option<u32>) {
        self.res.crashes += 1;
        if self.ranks[v].alive {
            self.kill(v);
        }
        self.remove_from_lc(v);
        let incarnation = self.ranks[v].incarnation + 1;
        let mut r = self.spawn(v, node, state, pid);
        r.incarnation = incarnation;
        let old_busy = self.ranks[v].busy;
        self.ranks[v] = r;
        self.ranks[v].busy = old_busy;
        self.prepared.recovered(v);
        self.gc.placement_mut().0[v] = host_name(node);
        self.after_rank(v);
    }

    /// The runtime starts a new process for rank `v` on `node` with `pid`
    /// (the old one, if alive, is ended first), not from a snapshot.
    pub(crate) fn respawn(&mut self, v: usize, node: usize, pid: u32) {
        let state = self.ranks[v].state;
        self.replace(v, node, state, Some(pid));
    }

    /// The runtime carries out a migration (or never reports).
    pub(crate) fn migrate(&mut self, handle: u32, moves: Vec<Move>) {
        match self.dev.runtime.done(&mut self.rng, RuntimeOp::Migrate) {
            Answer::After(d, ok) => self.schedule(d, Ev::MigrationDone(ok, true, handle, moves)),
            Answer::Never => {
                // The runtime never reports, but restarts the moving
                // ranks where they were.
                let d = Duration::from_secs(10);
                self.schedule(d, Ev::MigrationDone(false, false, handle, moves));
            }
        }
    }

    /// The runtime is done moving: on success the moving ranks restart
    /// from the snapshot on their new node; on failure, where they were.
    pub(crate) fn migration_done(&mut self, ok: bool, report: bool, handle: u32, moves: Vec<Move>) {
        let now = self.now;
        let mut ok = ok;
        for m in moves {
            let v = m.vpid as usize;
            let Some(cur) = self.ranks.get(v).map(|r| r.node) else {
                continue;
            };
            self.targets.retain(|t| t.0 != v);
            let member = self.snapshots.members(handle).contains(&v);
            if !member || !self.lc_alive[cur] && !ok {
                continue;
            }
            if ok {
                let node = match &m.dest {
                    Destination::Host(h) => h
                        .strip_prefix("node")
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|n| *n < self.nodes)
                        .unwrap_or((cur + 1) % self.nodes),
                    _ => (cur + 1) % self.nodes,
                };
                if !self.lc_alive[node] {
                    ok = false;
                    continue;
                }
                self.restore(v, node, handle);
            } else {
                self.restore(v, cur, handle);
            }
        }
        if report {
            let r = self.gc.handle_migration_done(now, ok);
            self.refused("gc migration", r);
            self.after_gc();
        }
    }

    /// The GC asks for a restart from snapshot `seq_num`.
    pub(crate) fn restart(&mut self, seq_num: i32) {
        match self.dev.runtime.done(&mut self.rng, RuntimeOp::Restart) {
            Answer::After(d, ok) => self.schedule(d, Ev::RestartDone(ok, seq_num)),
            Answer::Never => {}
        }
    }

    /// The runtime restarted the job from snapshot `seq` (or could not).
    pub(crate) fn restart_done(&mut self, ok: bool, seq: i32) {
        let now = self.now;
        let snap = self
            .restartable
            .iter()
            .find(|s| s.0 as i32 == seq)
            .map(|s| s.1);
        let ok = match snap {
            Some(h) if ok => {
                let members = self.snapshots.members(h).to_vec();
                for v in members {
                    let node = self.ranks[v].node;
                    let node = if self.lc_alive[node] {
                        node
                    } else {
                        (0..self.nodes).find(|n| self.lc_alive[*n]).unwrap_or(node)
                    };
                    self.restore(v, node, h);
                }
                true
            }
            _ => false,
        };
        if !ok {
            // The runtime ends the requester, which awaits its end.
            let g = self.ranks[0].incarnation;
            self.schedule(Duration::from_millis(100), Ev::Terminate(0, g));
        }
        let r = self.gc.handle_restart_done(now, ok);
        self.refused("gc restart", r);
        self.after_gc();
    }

    /// An operation ended at the GC.
    pub(crate) fn finished(&mut self, kind: global::OpKind, ok: bool) {
        if kind == global::OpKind::Migrate && !ok {
            // The runtime restarts the stranded targets in place.
            for (v, h) in std::mem::take(&mut self.targets) {
                let r = &self.ranks[v];
                if r.alive && r.terminating && r.handle == h {
                    let node = r.node;
                    self.restore(v, node, h);
                }
            }
        }
        self.fin.finished(kind);
        if kind == global::OpKind::QuiesceEnd {
            self.snapshots.quiesce_ended();
        }
        if ok {
            self.res.ops_ok += 1;
        } else {
            self.res.ops_failed += 1;
        }
    }

    /// The GC established a snapshot: checked, and recorded in sstore.
    pub(crate) fn established(&mut self, seq: u32, h: u32, reference: String) {
        self.res.established += 1;
        let e = self.snapshots.established(seq, h, self.gc.is_quiesced());
        for (kind, d) in e.violations {
            self.violation(kind, d);
        }
        if e.restartable {
            self.restartable.push((seq, h, reference.clone()));
        }
        self.sstore.insert(h, (seq, reference));
    }

    /// Node `lc`'s daemon dies with its local coordinator.
    pub(crate) fn daemon_crash(&mut self, lc: usize) {
        if self.lc_alive[lc] {
            self.res.crashes += 1;
            self.lc_alive[lc] = false;
            self.lc_vanishes(lc);
        }
    }
}
