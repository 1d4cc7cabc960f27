//! FIN: FIN_ACK never goes out while a checkpoint runs; at the end of a
//! run, a FIN sent on a clean path (no lost messages, no daemon crash, not
//! quiesced, its sender alive) is acknowledged, and an acknowledged FIN
//! leaves the global coordinator finished.

use snapc_core::app::RequestReport;
use snapc_core::global::OpKind;
use snapc_core::wire::OpEvent;

/// Whether a checkpoint runs, as the JOB_STATEs sent say.
#[derive(Debug, Default)]
pub struct Fin {
    checkpoint_running: bool,
}

impl Fin {
    /// The global coordinator sent JOB_STATE RUNNING.
    pub fn running(&mut self) {
        self.checkpoint_running = true;
    }

    /// An operation of `kind` ended at the global coordinator.
    pub fn finished(&mut self, kind: OpKind) {
        if kind != OpKind::Fin {
            self.checkpoint_running = false;
        }
    }

    /// The global coordinator sends FIN_ACK; `busy`: it runs an operation.
    pub fn fin_ack(&self, busy: bool) -> Result<(), String> {
        if self.checkpoint_running || busy {
            return Err("FIN_ACK sent while a checkpoint runs".into());
        }
        Ok(())
    }

    /// At the end of a run whose last request of its FIN's sender is
    /// `last`; `finished`: the global coordinator says it is.
    pub fn at_end(
        last: Option<&RequestReport>,
        finished: bool,
        clean_path: bool,
    ) -> Result<(), String> {
        match last {
            Some(rep) if rep.op == OpEvent::Fin && rep.error.is_none() && !finished => {
                Err("FIN acknowledged but the GC is not finished".into())
            }
            Some(rep) if rep.op == OpEvent::Fin && rep.error.is_none() => Ok(()),
            other if clean_path => Err(format!("FIN not acknowledged: {other:?}")),
            _ => Ok(()),
        }
    }
}
