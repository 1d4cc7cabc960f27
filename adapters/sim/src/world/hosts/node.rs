//! The node daemon: the local coordinator's host.

use crate::checkers::encoding;
use crate::devices::Answer;
use crate::scenario::Mutation;
use crate::world::World;
use crate::world::events::{Ev, Src};
use snapc_core::local;
use snapc_core::time::Duration;
use snapc_core::wire::{CkptState, Message, OrtedState, StateCode};
use snapc_core::{IoError, MAX_MESSAGE_LEN, MessageBuf};

impl World {
    pub(super) fn lc_action(&mut self, lc: usize, a: local::Action, out: &MessageBuf) {
        use local::Action as A;
        match a {
            A::Signal { slot, pid } => {
                self.record(|| format!("signal lc{lc}->{pid}"), &[]);
                match self.pids.get(&pid).copied() {
                    Some(v) if self.ranks[v].alive && self.ranks[v].pid == pid => {
                        let g = self.ranks[v].incarnation;
                        for d in self.dev.signal.deliveries(&mut self.rng) {
                            self.schedule(d, Ev::Signal(v, g));
                        }
                    }
                    _ => self.schedule(Duration::ZERO, Ev::LcIoError(lc, slot, IoError::Failed)),
                }
            }
            A::WatchFifos { slot, names } => {
                let key = (names.pid, names.n);
                self.lc_chan.insert((lc, slot.index()), (slot, key));
                self.lc_watches(lc, slot, key);
            }
            A::OpenFifos { slot, names } => {
                let key = (names.pid, names.n);
                self.lc_chan.insert((lc, slot.index()), (slot, key));
                self.lc_opens(lc, slot, key);
            }
            A::Write { slot, bytes } => {
                let verdict = encoding::lc_frame(&bytes).map_err(|d| format!("lc{lc}: {d}"));
                self.check("encoding", verdict);
                let key = self.lc_chan.get(&(lc, slot.index())).map(|c| c.1);
                if let Some((pid, n)) = key {
                    self.record(|| format!("fifo {pid}_{n} lc->app"), &bytes);
                }
                self.lc_writes(lc, slot, key, &bytes);
            }
            A::Read { slot, len } => match self.lc_chan.get(&(lc, slot.index())).copied() {
                Some((_, key)) => self.lc_reads(lc, slot, key, len),
                None => self.schedule(Duration::ZERO, Ev::LcIoError(lc, slot, IoError::Failed)),
            },
            A::WaitStopped { slot, pid } => {
                let v = self.pids.get(&pid).copied().unwrap_or(usize::MAX);
                match self.dev.runtime.stopped(&mut self.rng, v) {
                    Answer::After(d, ()) => self.schedule(d, Ev::LcStopped(lc, slot)),
                    Answer::Never => {}
                }
            }
            A::Close { slot } => {
                if let Some((id, key)) = self.lc_chan.get(&(lc, slot.index())).copied() {
                    if id == slot {
                        self.lc_chan.remove(&(lc, slot.index()));
                        self.lc_closes(lc, slot, key);
                    }
                }
            }
            A::SendToGc { len } => {
                let mut bytes = out[..len].to_vec();
                match encoding::orted_state(&bytes) {
                    Ok(o)
                        if self.mutation == Mutation::ForgeFinished
                            && o.state.state == CkptState::Error =>
                    {
                        // The adapter defect this mutation plants: a node's
                        // ERROR reported as FINISHED_LOCAL.
                        let forged = OrtedState {
                            quick: o.quick,
                            state: StateCode::plain(CkptState::FinishedLocal),
                        };
                        let mut buf: MessageBuf = [0; MAX_MESSAGE_LEN];
                        if let Ok(n) = forged.emit(&mut buf) {
                            bytes = buf[..n].to_vec();
                        }
                    }
                    Ok(_) => {}
                    Err(d) => self.violation("encoding", format!("lc{lc}: {d}")),
                }
                self.send_stream(lc, true, Ev::ToGc(Src::Lc(lc), bytes));
            }
            A::Report(r) => {
                if let Some(rec) = self.record.as_mut() {
                    rec.lc_results[lc].push(r);
                }
            }
            other => self.violation("routing", format!("lc{lc}: unknown action {other:?}")),
        }
    }
}
