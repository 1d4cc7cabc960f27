//! MIGRATE across nodes (docs/PROTOCOL.md §5, §8): once every node has
//! checkpointed, the moving ranks are terminated on their node and started
//! on their new one from the snapshot they just wrote; when each has
//! reported its new pid (LOCAL_UPDATE) the global coordinator is told, and
//! releases the ranks that stayed.
//!
//! Only ranks the agents start themselves can move: a launcher (mpirun,
//! srun) owns the placement of its ranks and their connections to each
//! other, so an MPI job's MIGRATE is refused with the reason, before any
//! checkpoint. On one node there is nowhere to go.

use super::msg::{Down, DownCtl};
use super::*;
use snapc_core::global::Destination;

/// A migration under way.
#[derive(Debug, Clone)]
pub(super) struct Moving {
    pub(super) handle: u32,
    /// Each moving rank: from, to, and whether it was started there.
    pub(super) moves: Vec<(u32, usize, usize, bool)>,
    /// Every moving rank runs on its new node: the coordinator was told.
    pub(super) done: bool,
}

impl Moving {
    /// The moves, for the operation's result.
    pub(super) fn describe(&self, c: &Coordinator) -> Value {
        Value::Array(
            self.moves
                .iter()
                .map(|&(vpid, from, to, _)| {
                    json!({"rank": vpid, "from": c.node_name(from), "to": c.node_name(to)})
                })
                .collect(),
        )
    }

    /// Whether rank `vpid` is on its way (terminated on its old node and
    /// not started yet on its new one).
    pub(super) fn in_flight(&self, vpid: u32) -> bool {
        self.moves
            .iter()
            .any(|&(v, _, _, started)| v == vpid && !started)
    }
}

impl Coordinator {
    /// Why a rank's MIGRATE is refused before anything starts, if it is.
    pub(super) fn migration_refused(&self) -> Option<String> {
        if self.opts.launcher {
            Some(format!(
                "job {} is an MPI job: its ranks were started by the launcher {}, which places \
                 them and connects them to each other; snapc cannot move them (checkpoint it and \
                 `snapc restart` it elsewhere instead)",
                self.opts.job, self.opts.argv[0]
            ))
        } else if self.nodes.len() < 2 {
            Some(format!(
                "job {} runs on one node: there is no other node to move ranks to",
                self.opts.job
            ))
        } else {
            None
        }
    }

    /// The global coordinator's Migrate action: the snapshot `handle` is
    /// complete on every node. Plans each move onto a node of the job and
    /// terminates the moving ranks where they are.
    pub(super) fn begin_migration(&mut self, seq: u32, handle: u32) {
        let now = self.now();
        let plan = match self.plan_moves() {
            Ok(p) => p,
            Err(e) => {
                self.log(format!("migration (snapshot {seq}) refused: {e}"));
                if let Some(op) = self.op.as_mut() {
                    op.error.get_or_insert(e);
                }
                let _ = self.gc.handle_migration_done(now, false);
                return;
            }
        };
        let moving = Moving {
            handle,
            moves: plan.iter().map(|&(v, f, t)| (v, f, t, false)).collect(),
            done: false,
        };
        let text: Vec<String> = plan
            .iter()
            .map(|&(v, f, t)| format!("rank {v} {} -> {}", self.node_name(f), self.node_name(t)))
            .collect();
        self.log(format!("migrating: {}", text.join(", ")));
        let mut by_node: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
        for &(v, from, _) in &plan {
            by_node.entry(from).or_default().push(v);
        }
        if let Some(op) = self.op.as_mut() {
            op.migration = Some(moving);
        }
        for (node, ranks) in by_node {
            self.send_to(node, Down::Ctl(DownCtl::Terminate { ranks }));
        }
    }

    /// Where each moving rank goes: (rank, from, to).
    fn plan_moves(&self) -> Result<Vec<(u32, usize, usize)>, String> {
        let moves = self.gc.migration_plan().moves().to_vec();
        let mut load: Vec<usize> = vec![0; self.nodes.len()];
        for r in &self.ranks {
            if let Some(n) = r.node {
                load[n] += 1;
            }
        }
        let mut out: Vec<(u32, usize, usize)> = Vec::new();
        let live = |i: usize| self.nodes.get(i).is_some_and(|n| n.lost.is_none());
        // Ranks that follow another go last.
        let (follow, direct): (Vec<_>, Vec<_>) = moves
            .into_iter()
            .partition(|m| matches!(m.dest, Destination::With(_)));
        for m in direct.iter().chain(follow.iter()) {
            let from = self
                .ranks
                .get(m.vpid as usize)
                .and_then(|r| r.node)
                .ok_or_else(|| format!("rank {} runs on no known node", m.vpid))?;
            let to = match &m.dest {
                Destination::Host(h) => self
                    .nodes
                    .iter()
                    .position(|n| n.name == h.as_str())
                    .filter(|&i| live(i))
                    .ok_or_else(|| format!("{h} is not a node of job {}", self.opts.job))?,
                Destination::With(v) => out
                    .iter()
                    .find(|(w, _, _)| w == v)
                    .map(|&(_, _, t)| t)
                    .ok_or_else(|| format!("rank {} follows rank {v}, which stays", m.vpid))?,
                _ => (0..self.nodes.len())
                    .filter(|&i| i != from && live(i))
                    .min_by_key(|&i| load[i])
                    .ok_or("no other node to move to")?,
            };
            if to == from {
                continue;
            }
            load[to] += 1;
            load[from] = load[from].saturating_sub(1);
            out.push((m.vpid, from, to));
        }
        if out.is_empty() {
            return Err("no rank moves".into());
        }
        Ok(out)
    }

    /// Moves a migration on: a moving rank gone from its old node starts on
    /// its new one; once each reported its pid there, the global
    /// coordinator hears that the migration is done.
    pub(super) fn migration_tick(&mut self) {
        let Some(m) = self.op.as_ref().and_then(|o| o.migration.clone()) else {
            return;
        };
        if m.done {
            return;
        }
        let mut moving = m.clone();
        let mut starts = Vec::new();
        for mv in moving.moves.iter_mut() {
            let (vpid, _, to, started) = *mv;
            let view = self.ranks.get(vpid as usize);
            if !started && view.is_some_and(|r| r.state.ended()) {
                mv.3 = true;
                starts.push((vpid, to));
            }
        }
        for (vpid, to) in starts {
            if let Some(r) = self.ranks.get_mut(vpid as usize) {
                *r = coordinator::RankView::new_on(to);
            }
            let dir = self.store.staging().join(m.handle.to_string());
            let launch = msg::Launch {
                ranks: vec![vpid],
                argv: self.opts.argv.clone(),
                cwd: self.opts.cwd.clone(),
                restart_from: Some(dir),
                launcher: false,
            };
            self.send_to(to, Down::Ctl(DownCtl::Start(launch)));
        }
        let all_there = moving.moves.iter().all(|&(vpid, _, to, started)| {
            started
                && self
                    .ranks
                    .get(vpid as usize)
                    .is_some_and(|r| r.updated && r.node == Some(to))
        });
        if all_there {
            moving.done = true;
            self.log(format!(
                "migration: {} running on {} new node(s)",
                rank_list(&moving.moves.iter().map(|m| m.0).collect::<Vec<_>>()),
                moving
                    .moves
                    .iter()
                    .map(|m| m.2)
                    .collect::<std::collections::BTreeSet<_>>()
                    .len()
            ));
            self.hosts_changed = true;
            self.sync_hosts();
            let now = self.now();
            let _ = self.gc.handle_migration_done(now, true);
        }
        if let Some(op) = self.op.as_mut() {
            op.migration = Some(moving);
        }
    }
}
