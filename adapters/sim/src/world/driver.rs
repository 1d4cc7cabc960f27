//! The driver of a seed's run: the scenario's operations one after the
//! other, each started once the job settled, every step bounded in virtual
//! time (liveness), and FIN at the end.

use super::World;
use super::events::Ev;
use crate::checkers::fin::Fin;
use crate::scenario::{Op, Scenario};
use snapc_core::global;
use snapc_core::local;
use snapc_core::time::{Duration, Instant};
use snapc_core::wire::{List, MigrateEntry, Request};

/// How long one driver step (an operation, or one phase of a quiesce) may
/// take in virtual time before it is a liveness violation. The machines'
/// own bounds are far shorter (135 minutes for a GC operation, 150 for the
/// app's waits); slow hooks (up to two hours each, several per handshake)
/// make up the rest.
const STEP_BOUND: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Init,
    Op(usize, u8),
    Fin,
    Done,
}

/// A seed's operations and where the run is in them.
pub(crate) struct Driver {
    sc: Scenario,
    stage: Stage,
    step_deadline: Instant,
    fin_sent: bool,
    /// The incarnation of rank 0 that sent FIN.
    fin_incarnation: u32,
}

impl Driver {
    pub(crate) fn new(sc: Scenario) -> Self {
        Self {
            sc,
            stage: Stage::Init,
            step_deadline: Instant::MAX,
            fin_sent: false,
            fin_incarnation: 0,
        }
    }

    /// Called whenever nothing is due now: starts the next step once the
    /// job settled, or reports a step that does not end.
    pub(crate) fn drive(&mut self, w: &mut World, queue_empty: bool) {
        if !w.settled() {
            if w.now >= self.step_deadline {
                let what = self.stage;
                w.violation(
                    "liveness",
                    format!("{what:?} did not end within {}s", STEP_BOUND.as_secs()),
                );
                w.stopped = true;
            } else if queue_empty {
                let report = w.busy_report();
                w.violation(
                    "liveness",
                    format!(
                        "{:?}: nothing left to happen, not ended: {report}",
                        self.stage
                    ),
                );
                w.stopped = true;
            }
            return;
        }
        if self.stage == Stage::Done {
            self.final_checks(w);
            w.stopped = true;
            return;
        }
        self.step_deadline = w.now.saturating_add(STEP_BOUND);
        w.res.operations += 1;
        match self.stage {
            Stage::Init => {
                for v in 0..w.ranks.len() {
                    w.request(v, Request::Init);
                }
                self.stage = Stage::Op(0, 0);
            }
            Stage::Op(i, step) => {
                let Some(op) = self.sc.ops.get(i).copied() else {
                    self.stage = Stage::Fin;
                    w.res.operations -= 1;
                    return self.drive(w, queue_empty);
                };
                self.spurious_signals(w);
                self.stage = Stage::Op(i + 1, 0);
                match op {
                    Op::Checkpoint => {
                        w.request(0, Request::Checkpoint);
                    }
                    Op::Command { term, stop } => {
                        let _ = w.command(global::Command::Checkpoint { term, stop });
                        if term {
                            self.stage = Stage::Done;
                        }
                    }
                    Op::Quiesce { checkpoints } => {
                        let (req, again) = match step {
                            0 => (Request::QuiesceStart, true),
                            s if s <= checkpoints => (Request::QuiesceCheckpoint, true),
                            _ => (Request::QuiesceEnd, false),
                        };
                        if again {
                            self.stage = Stage::Op(i, step + 1);
                        }
                        for v in (0..w.ranks.len()).rev() {
                            let quiesced = w.ranks[v].app.is_quiesced();
                            if step == 0 || quiesced {
                                w.request(v, req);
                            }
                        }
                    }
                    Op::Migrate { rank } => {
                        let entries = [MigrateEntry {
                            vpid: (rank as usize % w.ranks.len()) as i32,
                            host: None,
                            vpid_pref: -1,
                            off_node: true,
                        }];
                        w.request(0, Request::Migrate(List::Items(&entries)));
                    }
                    Op::Restart => {
                        if let Some((seq, _, reference)) = w.restartable.last().cloned() {
                            let req = Request::Restart {
                                seq_num: seq as i32,
                                handle: Some(reference.as_str()),
                            };
                            w.request(0, req);
                        }
                    }
                }
            }
            Stage::Fin => {
                if w.rank_usable(0) {
                    self.fin_sent = w.request(0, Request::Fin);
                    self.fin_incarnation = w.ranks[0].incarnation;
                }
                self.step_deadline = w.now.saturating_add(STEP_BOUND);
                // FIN is checked once it settled.
                self.stage = Stage::Done;
                w.schedule(Duration::ZERO, Ev::Driver);
            }
            Stage::Done => {}
        }
    }

    fn final_checks(&self, w: &mut World) {
        if !self.fin_sent || w.ranks[0].incarnation != self.fin_incarnation {
            // No FIN, or its sender was replaced (migrated) meanwhile.
            return;
        }
        let r = &w.ranks[0];
        let clean_path = !self.sc.faults.lossy()
            && self.sc.faults.daemon_crash_at_ms.is_none()
            && !w.gc.is_quiesced()
            && r.alive
            && !r.hung;
        let verdict = Fin::at_end(r.last_req.as_ref(), w.gc.is_finished(), clean_path);
        w.check("fin", verdict);
    }

    fn spurious_signals(&self, w: &mut World) {
        let p = self.sc.faults.spurious;
        if p <= 0.0 {
            return;
        }
        for v in 0..w.ranks.len() {
            if w.rng.chance(p) {
                let g = w.ranks[v].incarnation;
                let d = w.rng.duration(Duration::ZERO, Duration::from_secs(600));
                w.schedule(d, Ev::Signal(v, g));
            }
        }
    }
}

impl World {
    /// Nothing runs: no rank busy, the GC without an operation, every live
    /// LC idle or quiesced.
    pub(crate) fn settled(&self) -> bool {
        self.busy == 0
            && !self.gc.is_busy()
            && self.lcs.iter().zip(&self.lc_alive).all(|(l, alive)| {
                !alive || matches!(l.phase(), local::Phase::Idle | local::Phase::Quiesced)
            })
    }

    fn busy_report(&self) -> String {
        let ranks: Vec<usize> = (0..self.ranks.len())
            .filter(|&v| self.ranks[v].busy)
            .take(5)
            .collect();
        let lcs: Vec<String> = self
            .lcs
            .iter()
            .enumerate()
            .filter(|(i, _)| self.lc_alive[*i])
            .map(|(i, l)| format!("lc{i} {:?}", l.phase()))
            .take(5)
            .collect();
        format!(
            "gc busy {}, busy ranks {ranks:?}, {lcs:?}",
            self.gc.is_busy()
        )
    }

    pub(crate) fn rank_usable(&self, v: usize) -> bool {
        let r = &self.ranks[v];
        r.alive && !r.terminating && !r.hung
    }

    /// An application request on rank `v`. Whether it was taken.
    fn request(&mut self, v: usize, req: snapc_core::wire::Request<'_>) -> bool {
        if !self.rank_usable(v) || self.ranks[v].in_hook {
            return false;
        }
        self.app_request(v, req).is_ok()
    }
}
