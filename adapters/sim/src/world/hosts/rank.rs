//! The rank's process: the app coordinator's host.

use crate::checkers::{encoding, fifo as fifo_checker};
use crate::devices::{Answer, Route, Step, StorageCall};
use crate::scenario::Mutation;
use crate::world::World;
use crate::world::events::Ev;
use snapc_core::MessageBuf;
use snapc_core::app::{self, SstoreOp};
use snapc_core::time::Duration;

impl World {
    pub(super) fn app_action(&mut self, v: usize, a: app::Action, out: &MessageBuf) {
        use app::Action as A;
        if let Some(step) = Step::of(&a) {
            if self.dev.app.crashes(&mut self.rng, v, step) {
                self.res.crashes += 1;
                return self.kill(v);
            }
        }
        let g = self.ranks[v].incarnation;
        match a {
            A::OpenChannel { names } => {
                let key = (names.pid, names.n);
                self.ranks[v].chan = Some(key);
                self.app_creates_fifos(v, g, key);
            }
            A::Read { frame, len } => {
                self.ranks[v].reading = Some(frame);
                if let Some(k) = self.ranks[v].chan {
                    self.app_reads(v, g, k, len);
                }
            }
            A::Write { frame, bytes } => {
                match encoding::app_frame(frame, &bytes) {
                    Ok(Some(s))
                        if matches!(
                            frame,
                            app::FrameKind::FinalState | app::FrameKind::Running
                        ) =>
                    {
                        let h = self.ranks[v].handle;
                        self.snapshots.reported(h, v, s);
                    }
                    Ok(_) => {}
                    Err(d) => self.violation("encoding", format!("rank {v}: {d}")),
                }
                let key = self.ranks[v].chan;
                if let Some((pid, n)) = key {
                    self.record(|| format!("fifo {pid}_{n} app->lc"), &bytes);
                }
                self.app_writes(v, g, key, &bytes);
            }
            A::Prepare => {
                let a = self.dev.app.prepare(&mut self.rng, v);
                self.hook(v, a, Ev::AppPrepare);
            }
            A::Checkpoint { .. } => {
                if let Some(r) = self.record.as_mut() {
                    r.checkpoints[v] += 1;
                }
                let a = self.dev.app.checkpoint(&mut self.rng, v);
                self.hook(v, a, Ev::AppCheckpoint);
            }
            A::Recover { state } => {
                self.prepared.recovered(v);
                if let Some(r) = self.record.as_mut() {
                    r.recovered_with[v].push(state);
                }
                let a = self.dev.app.recover(&mut self.rng, v);
                self.hook(v, a, Ev::AppRecovered);
            }
            A::Sstore(op) => match op {
                SstoreOp::ReadLocation { .. } => {
                    let a = self.dev.disk.call(&mut self.rng, v, StorageCall::Location);
                    self.hook(v, a, Ev::AppSstore);
                }
                SstoreOp::Sync { .. } => {
                    let a = self.dev.disk.call(&mut self.rng, v, StorageCall::Sync);
                    self.hook(v, a, Ev::AppSstore);
                }
                SstoreOp::ReadGlobal { handle } => {
                    self.schedule(Duration::ZERO, Ev::AppGlobal(v, g, handle));
                }
                SstoreOp::SetSkip { handle } => {
                    if let Some(r) = self.record.as_mut() {
                        r.skipped.entry(handle).or_default().push(v);
                    }
                }
                _ => {}
            },
            A::SendToDaemon { len } => {
                let bytes = out[..len].to_vec();
                let verdict = encoding::to_daemon(&bytes).map_err(|d| format!("rank {v}: {d}"));
                self.check("encoding", verdict);
                let node = self.ranks[v].node;
                let pid = self.ranks[v].pid;
                let copies = self.dev.local.deliveries(&mut self.rng, Route::RankToLc(v));
                if !copies.is_empty() {
                    self.record(|| format!("rank{v}->lc{node}"), &bytes);
                }
                for d in copies {
                    self.schedule(d, Ev::ToDaemon(node, pid, bytes.clone()));
                }
            }
            A::Close { names } => self.app_closes((names.pid, names.n)),
            A::Unlink { names } => {
                if self.mutation != Mutation::SkipUnlink {
                    self.app_unlinks((names.pid, names.n));
                }
                self.ranks[v].chan = None;
                self.schedule(Duration::ZERO, Ev::AppTeardownDone(v, g));
            }
            A::AwaitTermination => {
                self.ranks[v].terminating = true;
                if self.ranks[v].target {
                    // The runtime moves it (or, if the migration fails,
                    // restarts it where it was) from its snapshot.
                    let h = self.ranks[v].handle;
                    self.targets.push((v, h));
                } else if let Answer::After(d, ()) = self.dev.runtime.terminates(&mut self.rng, v) {
                    self.schedule(d, Ev::Terminate(v, g));
                }
            }
            A::Outcome(o) => {
                match &o {
                    app::Outcome::Handshake(rep) => {
                        let k = (rep.names.pid, rep.names.n);
                        let verdict = fifo_checker::handshake_ended(v, k, self.fifos_exist(k));
                        self.check("fifo", verdict);
                    }
                    app::Outcome::Request(rep) => {
                        self.ranks[v].req = None;
                        self.ranks[v].last_req = Some(rep.clone());
                    }
                    app::Outcome::Quiesced { .. } => {}
                    other => {
                        self.violation("routing", format!("rank {v}: unknown outcome {other:?}"))
                    }
                }
                if let Some(r) = self.record.as_mut() {
                    r.outcomes[v].push(o);
                }
            }
            other => self.violation("routing", format!("rank {v}: unknown action {other:?}")),
        }
    }

    /// A hook (or sstore call) of rank `v` answers as `a` says. Blocking
    /// hooks hold the process meanwhile, and one that never answers hangs
    /// it; deferred ones leave the machine's hook deadline to end the wait.
    fn hook<T>(&mut self, v: usize, a: Answer<T>, ev: impl FnOnce(usize, u32, T) -> Ev) {
        let g = self.ranks[v].incarnation;
        match a {
            Answer::After(d, t) => {
                self.ranks[v].in_hook = self.blocking_hooks;
                self.schedule(d, ev(v, g, t));
            }
            Answer::Never if self.blocking_hooks => {
                // The process hangs in the hook for good.
                self.ranks[v].hung = true;
            }
            Answer::Never => {}
        }
    }
}
