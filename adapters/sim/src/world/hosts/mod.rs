//! The three machines' hosts: each event given to its machine as an input,
//! and after every input the machine's actions carried out, its deadline
//! armed, and the rank's busy state accounted. Here: recording, the
//! transport, delivery and the drains; the hosts themselves in
//! [`rank`] (the app coordinator in the rank's process), [`node`] (the
//! local coordinator in its node daemon) and [`launcher`] (the global
//! coordinator).

mod launcher;
mod node;
mod rank;

use super::World;
use super::events::{Ev, Machine, Src};
use super::record::Rec;
use crate::checkers::encoding;
use crate::devices::Route;
use crate::scenario::Mutation;
use snapc_core::app::{self, AppCoordinator, CheckpointResult, HostError, PrepareResult};
use snapc_core::global;
use snapc_core::local::{LocalCoordinator, ProcessSlot};
use snapc_core::time::Instant;
use snapc_core::wire::fifo::OptionsFrame;
use snapc_core::wire::{CkptState, FromGc, Message, Request, ToDaemon, ToGc};
use snapc_core::{IoError, MAX_MESSAGE_LEN, MessageBuf};

impl World {
    // ---- recording ----

    fn record(&mut self, chan: impl FnOnce() -> String, bytes: &[u8]) {
        if let Some(r) = self.record.as_mut() {
            r.log.push(Rec {
                at: self.now,
                chan: chan(),
                bytes: bytes.to_vec(),
            });
        }
    }

    /// Keeps what a machine did not take (the scripted scenarios look).
    pub(crate) fn refused<E: std::fmt::Debug>(&mut self, what: &str, r: Result<(), E>) {
        if let (Err(e), Some(rec)) = (r, self.record.as_mut()) {
            rec.refused.push(format!("{what}: {e:?}"));
        }
    }

    // ---- the transport ----

    fn channel(&self, route: Route) -> String {
        match route {
            Route::RankToGc(v) => format!("rank{v}->gc"),
            Route::GcToRank(v) => format!("gc->rank{v}"),
            Route::LcToGc(lc) => format!("lc{lc}->gc"),
            Route::GcToLc(lc) => format!("gc->lc{lc}"),
            Route::RankToLc(v) => format!("rank{v}->lc{}", self.ranks[v].node),
        }
    }

    /// A message between a rank and the GC: each copy the link delivers.
    fn send_net(&mut self, route: Route, ev: Ev) {
        let copies = self.dev.net.deliveries(&mut self.rng, route);
        if !copies.is_empty() && self.record.is_some() {
            let chan = self.channel(route);
            let bytes = ev.bytes().to_vec();
            self.record(|| chan, &bytes);
        }
        for d in copies {
            self.schedule(d, ev.clone());
        }
    }

    /// A message on an LC's stream to or from the GC (`up`: towards the
    /// GC). ORTED_STATE and JOB_STATE carry no operation id, so the
    /// protocol needs this link to be a stream, as Open MPI's OOB (TCP) and
    /// our Unix sockets are: it may lose messages (a broken connection) and
    /// delay them, but never duplicates or reorders them. Duplicating or
    /// reordering them lets a stale report of one operation count for the
    /// next (found by this simulator; see ARCHITECTURE.md).
    fn send_stream(&mut self, lc: usize, up: bool, ev: Ev) {
        let route = if up {
            Route::LcToGc(lc)
        } else {
            Route::GcToLc(lc)
        };
        let Some(d) = self
            .dev
            .net
            .deliveries(&mut self.rng, route)
            .first()
            .copied()
        else {
            return;
        };
        if self.record.is_some() {
            let chan = self.channel(route);
            let bytes = ev.bytes().to_vec();
            self.record(|| chan, &bytes);
        }
        let last = &mut self.stream_last[lc][usize::from(up)];
        let at = self.now.saturating_add(d).max(*last);
        *last = at;
        let d = at.saturating_duration_since(self.now);
        self.schedule(d, ev);
    }

    // ---- delivery ----

    pub(crate) fn live(&self, v: usize, g: u32) -> bool {
        self.ranks
            .get(v)
            .is_some_and(|r| r.alive && r.incarnation == g && !r.hung)
    }

    pub(crate) fn deliver(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Driver => {}
            Ev::Timer(m) => self.timer(m),
            Ev::Signal(v, g) => {
                if self.live(v, g) {
                    self.ranks[v].flag.request_at(now);
                    let d = self.dev.app.progress_delay(&mut self.rng, v);
                    self.schedule(d, Ev::Progress(v, g));
                    self.after_rank(v);
                }
            }
            Ev::Progress(v, g) => {
                if self.live(v, g) && !self.ranks[v].in_hook {
                    self.ranks[v].app.handle_progress(now);
                    self.after_rank(v);
                }
            }
            Ev::AppOpened(v, g) => {
                self.app_input(v, g, "app opened", |a, now| a.handle_opened(now))
            }
            Ev::AppRead(v, g, bytes) => {
                if self.live(v, g) && self.ranks[v].reading == Some(app::FrameKind::Options) {
                    if let Ok(f) = OptionsFrame::parse(&bytes, false) {
                        self.ranks[v].handle = f.handle;
                        self.ranks[v].target = f.options.all_migrating && f.options.migrating;
                    }
                }
                self.app_input(v, g, "app read", |a, now| a.handle_read(now, &bytes));
            }
            Ev::AppWriteDone(v, g) => {
                self.app_input(v, g, "app write done", |a, now| a.handle_write_done(now))
            }
            Ev::AppIoError(v, g) => self.app_input(v, g, "app io error", |a, now| {
                a.handle_io_error(now, IoError::PeerGone)
            }),
            Ev::AppPrepare(v, g, r) => {
                if self.live(v, g) && r == PrepareResult::Ready {
                    self.prepared.ready(v);
                }
                if self.live(v, g) && r == PrepareResult::NotNow {
                    // The next progress point comes later.
                    let d = self.dev.app.not_now_delay(&mut self.rng, v);
                    self.schedule(d, Ev::Progress(v, g));
                }
                self.hook_input(v, g, "app prepare", |a, now| a.handle_prepare(now, r));
            }
            Ev::AppCheckpoint(v, g, mut r) => {
                if self.live(v, g) {
                    let h = self.ranks[v].handle;
                    if let CheckpointResult::Restart { pid: pid @ 0 } = &mut r {
                        // A restarted copy: a new process with the snapshot's
                        // state (which is this state: nothing ran since).
                        *pid = self.next_pid;
                        self.next_pid += 1;
                    }
                    if r != CheckpointResult::Error {
                        let s = self.ranks[v].state;
                        self.content.insert((h, v), s);
                    }
                }
                self.hook_input(v, g, "app checkpoint", |a, now| a.handle_checkpoint(now, r));
            }
            Ev::AppRecovered(v, g, ok) => self.hook_input(v, g, "app recovered", |a, now| {
                a.handle_recovered(now, if ok { Ok(()) } else { Err(HostError) })
            }),
            Ev::AppSstore(v, g, ok) => self.hook_input(v, g, "app sstore", |a, now| {
                a.handle_sstore(now, if ok { Ok(()) } else { Err(HostError) })
            }),
            Ev::AppGlobal(v, g, h) => {
                let found = self.sstore.get(&h).cloned();
                self.app_input(v, g, "app sstore global", |a, now| match &found {
                    Some((seq, r)) => a.handle_sstore_global(now, Some(*seq as i32), Some(r)),
                    None => a.handle_sstore_global(now, None, None),
                });
            }
            Ev::AppTeardownDone(v, g) => {
                self.app_input(v, g, "app teardown", |a, now| a.handle_teardown_done(now))
            }
            Ev::ToRank(v, bytes) => {
                let g = self.ranks[v].incarnation;
                self.app_input(v, g, "app gc message", |a, now| {
                    a.handle_gc_message(now, &bytes)
                });
            }
            Ev::Chunk {
                key,
                to_app,
                bytes,
                done,
            } => self.chunk(key, to_app, bytes, done),
            Ev::LcFifosExist(lc, s) => {
                self.lc_input(lc, "lc fifos", |l, now| l.handle_fifos_exist(now, s))
            }
            Ev::LcOpened(lc, s) => self.lc_input(lc, "lc opened", |l, now| l.handle_opened(now, s)),
            Ev::LcWritten(lc, s) => {
                self.lc_input(lc, "lc written", |l, now| l.handle_written(now, s))
            }
            Ev::LcRead(lc, s, b) => {
                self.lc_input(lc, "lc read", |l, now| l.handle_read(now, s, &b))
            }
            Ev::LcIoError(lc, s, e) => {
                self.lc_input(lc, "lc io error", |l, now| l.handle_io_error(now, s, e))
            }
            Ev::LcStopped(lc, s) => {
                self.lc_input(lc, "lc stopped", |l, now| l.handle_stopped(now, s))
            }
            Ev::ToLc(lc, bytes) => match FromGc::parse(&bytes) {
                Ok(FromGc::JobState(js)) => {
                    if let (true, Some(d), CkptState::Running) =
                        (self.lc_alive[lc], js.detail, js.state.state)
                    {
                        // The job's ranks in this checkpoint: those in the
                        // LC's table when the LC takes the JOB_STATE.
                        let here = (0..self.ranks.len())
                            .filter(|&v| self.ranks[v].in_job && self.ranks[v].node == lc);
                        self.snapshots.taken(d.handle, here);
                    }
                    self.lc_input(lc, "lc job state", |l, now| {
                        l.handle_gc_message(now, &bytes)
                    })
                }
                other => self.violation("encoding", format!("to lc{lc}: {other:?}")),
            },
            Ev::ToDaemon(lc, pid, bytes) => match ToDaemon::parse(&bytes) {
                Ok(_) => self.lc_input(lc, "process message", |l, now| {
                    l.handle_process_message(now, pid, &bytes)
                }),
                Err(e) => self.violation("encoding", format!("to daemon {lc}: {e:?}")),
            },
            Ev::ToGc(src, bytes) => {
                let r = match (src, ToGc::parse(&bytes)) {
                    (Src::Rank(v), Ok(ToGc::RequestOp(_))) => {
                        self.gc.handle_rank_message(now, v as u32, &bytes)
                    }
                    (Src::Lc(lc), Ok(ToGc::OrtedState(_))) => {
                        self.gc.handle_lc_message(now, lc, &bytes)
                    }
                    (_, other) => {
                        self.violation("encoding", format!("to gc from {src:?}: {other:?}"));
                        Ok(())
                    }
                };
                self.refused("gc message", r);
                self.after_gc();
            }
            Ev::MigrationDone(ok, report, handle, moves) => {
                self.migration_done(ok, report, handle, moves)
            }
            Ev::RestartDone(ok, seq) => self.restart_done(ok, seq),
            Ev::Terminate(v, g) => {
                if self.ranks[v].incarnation == g && self.ranks[v].alive {
                    self.kill(v);
                    self.remove_from_lc(v);
                }
            }
            Ev::DaemonCrash(lc) => self.daemon_crash(lc),
        }
    }

    fn app_input(
        &mut self,
        v: usize,
        g: u32,
        what: &str,
        f: impl FnOnce(&mut AppCoordinator<'static>, Instant) -> Result<(), app::InputError>,
    ) {
        if !self.live(v, g) {
            return;
        }
        // An input the machine does not take (late, after a deadline) it
        // counts; the simulation checks outcomes, not this.
        let r = f(&mut self.ranks[v].app, self.now);
        self.refused(what, r);
        self.after_rank(v);
    }

    /// A hook's answer: the process is out of the hook.
    fn hook_input(
        &mut self,
        v: usize,
        g: u32,
        what: &str,
        f: impl FnOnce(&mut AppCoordinator<'static>, Instant) -> Result<(), app::InputError>,
    ) {
        if self.live(v, g) {
            self.ranks[v].in_hook = false;
        }
        self.app_input(v, g, what, f);
    }

    fn lc_input<E: std::fmt::Debug>(
        &mut self,
        lc: usize,
        what: &str,
        f: impl FnOnce(&mut LocalCoordinator<Vec<ProcessSlot>>, Instant) -> Result<(), E>,
    ) {
        if !self.lc_alive[lc] {
            return;
        }
        let r = f(&mut self.lcs[lc], self.now);
        self.refused(what, r);
        self.after_lc(lc);
    }

    fn timer(&mut self, m: Machine) {
        let now = self.now;
        match m {
            Machine::Gc => {
                self.gc_armed = None;
                if self.gc.poll_timeout().is_some_and(|t| t <= now) {
                    self.gc.handle_timeout(now);
                }
                self.after_gc();
            }
            Machine::Lc(lc) => {
                self.lc_armed[lc] = None;
                if !self.lc_alive[lc] {
                    return;
                }
                if self.lcs[lc].poll_timeout().is_some_and(|t| t <= now) {
                    self.lcs[lc].handle_timeout(now);
                }
                self.after_lc(lc);
            }
            Machine::Rank(v, g) => {
                if !self.live(v, g) {
                    return;
                }
                self.ranks[v].armed = None;
                if self.ranks[v].in_hook {
                    // Busy in a hook: the deadline is seen when it returns.
                    return;
                }
                if self.ranks[v].app.poll_timeout().is_some_and(|t| t <= now) {
                    self.ranks[v].app.handle_timeout(now);
                }
                self.after_rank(v);
            }
        }
    }

    // ---- the application's requests and the runtime's commands ----

    /// An application request on rank `v` (any state); the REQUEST_OP, if
    /// any, goes to the GC. The request's length, as the machine says.
    pub(crate) fn app_request(
        &mut self,
        v: usize,
        req: Request<'_>,
    ) -> Result<usize, app::InputError> {
        let mut buf = [0u8; 4096];
        let now = self.now;
        let n = self.ranks[v].app.request(now, req, &mut buf)?;
        self.ranks[v].req = Some(req.op_event());
        if n > 0 {
            let bytes = buf[..n].to_vec();
            let verdict = encoding::request_op(&bytes, req).map_err(|d| format!("rank {v}: {d}"));
            self.check("encoding", verdict);
            self.send_net(Route::RankToGc(v), Ev::ToGc(Src::Rank(v), bytes));
        }
        self.after_rank(v);
        Ok(n)
    }

    /// The runtime's own command to the GC.
    pub(crate) fn command(&mut self, c: global::Command) -> Result<(), global::InputError> {
        let r = self.gc.handle_command(self.now, c);
        self.after_gc();
        r
    }

    // ---- after each input: drain, arm, account ----

    pub(crate) fn after_rank(&mut self, v: usize) {
        let mut out: MessageBuf = [0; MAX_MESSAGE_LEN];
        while let Some(a) = self.ranks[v].app.poll_action(&mut out) {
            if !self.ranks[v].alive {
                continue;
            }
            self.app_action(v, a, &out);
        }
        let r = &mut self.ranks[v];
        if r.alive && r.app.config().pid != r.pid {
            // A restarted copy took its new pid.
            let new = r.app.config().pid;
            r.pid = new;
            self.pids.insert(new, v);
        }
        let r = &self.ranks[v];
        // The application runs between its progress points whenever the
        // coordinator does not hold it.
        let holds = r.app.is_checkpointing() && self.mutation != Mutation::RunWhilePrepared;
        if r.alive && !r.hung && !r.in_hook && !r.terminating && !holds {
            let verdict = self.prepared.application_runs(v);
            self.check("prepared", verdict);
            let r = &mut self.ranks[v];
            r.state = r
                .state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
        }
        let r = &self.ranks[v];
        if r.alive && !r.hung && !r.in_hook {
            let t = r.app.poll_timeout();
            if t.is_some() && t != r.armed {
                let g = r.incarnation;
                self.ranks[v].armed = t;
                let d = t.unwrap_or(self.now).saturating_duration_since(self.now);
                self.schedule(d, Ev::Timer(Machine::Rank(v, g)));
            }
        }
        let r = &self.ranks[v];
        let busy = r.alive
            && !r.terminating
            && !r.hung
            && (r.req.is_some()
                || r.in_hook
                || r.flag.is_requested()
                || !(r.app.is_idle() || r.app.is_quiesced()));
        if busy != r.busy {
            self.ranks[v].busy = busy;
            if busy {
                self.busy += 1;
            } else {
                self.busy -= 1;
            }
        }
    }

    pub(crate) fn after_lc(&mut self, lc: usize) {
        let mut out: MessageBuf = [0; MAX_MESSAGE_LEN];
        while let Some(a) = self.lcs[lc].poll_action(&mut out) {
            self.lc_action(lc, a, &out);
        }
        let t = self.lcs[lc].poll_timeout();
        if t.is_some() && t != self.lc_armed[lc] {
            self.lc_armed[lc] = t;
            let d = t.unwrap_or(self.now).saturating_duration_since(self.now);
            self.schedule(d, Ev::Timer(Machine::Lc(lc)));
        }
    }

    pub(crate) fn after_gc(&mut self) {
        let mut out: MessageBuf = [0; MAX_MESSAGE_LEN];
        while let Some(action) = self.gc.poll_action(&mut out) {
            let bytes = match action {
                global::Action::SendToLcs { len } | global::Action::SendToRank { len, .. } => {
                    out[..len].to_vec()
                }
                _ => Vec::new(),
            };
            self.gc_out(action, bytes);
        }
        let t = self.gc.poll_timeout();
        if t.is_some() && t != self.gc_armed {
            self.gc_armed = t;
            let d = t.unwrap_or(self.now).saturating_duration_since(self.now);
            self.schedule(d, Ev::Timer(Machine::Gc));
        }
    }
}
