//! The launcher: the global coordinator's host.

use crate::checkers::encoding;
use crate::devices::Route;
use crate::world::World;
use crate::world::events::Ev;
use snapc_core::global;
use snapc_core::wire::{CkptState, FromGc, Message};

impl World {
    pub(super) fn gc_out(&mut self, action: global::Action, bytes: Vec<u8>) {
        match action {
            global::Action::SendToLcs { .. } => {
                let (state, detail) = match FromGc::parse(&bytes) {
                    Ok(FromGc::JobState(js)) => (
                        js.state.state,
                        js.detail
                            .map(|d| (d.handle, d.options, d.migrating.is_some())),
                    ),
                    other => {
                        let d = format!("JOB_STATE does not decode: {bytes:02x?}: {other:?}");
                        return self.violation("encoding", d);
                    }
                };
                if let (CkptState::Running, Some((h, o, migrating))) = (state, detail) {
                    // Each LC adds its processes when it takes the JOB_STATE.
                    self.snapshots.running(h, o, migrating);
                    self.fin.running();
                }
                for lc in 0..self.nodes {
                    self.send_stream(lc, false, Ev::ToLc(lc, bytes.clone()));
                }
            }
            global::Action::SendToRank { vpid, .. } => {
                match encoding::gc_answer(&bytes) {
                    Ok(FromGc::FinAck) => {
                        let verdict = self.fin.fin_ack(self.gc.is_busy());
                        self.check("fin", verdict);
                    }
                    Ok(_) => {}
                    Err(d) => self.violation("encoding", d),
                }
                let v = vpid as usize;
                if v < self.ranks.len() {
                    self.send_net(Route::GcToRank(v), Ev::ToRank(v, bytes));
                } else {
                    self.violation("routing", format!("GC answers unknown rank {vpid}"));
                }
            }
            global::Action::Established(s) => {
                self.established(s.seq, s.handle, s.reference.as_str().to_string())
            }
            global::Action::Migrate { seq, handle } => {
                let moves = self.gc.migration_plan().moves().to_vec();
                if let Some(r) = self.record.as_mut() {
                    r.migrations.push((seq, handle, moves.clone()));
                }
                self.migrate(handle, moves);
            }
            global::Action::Restart { seq_num } => self.restart(seq_num),
            global::Action::Finished(r) => {
                let (kind, ok) = (r.kind, r.ok);
                if let Some(rec) = self.record.as_mut() {
                    rec.gc_reports.push(r);
                }
                self.finished(kind, ok);
            }
            other => self.violation(
                "routing",
                format!("a GC action the world does not know: {other:?}"),
            ),
        }
    }
}
