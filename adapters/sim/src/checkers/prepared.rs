//! No application code runs between a prepare hook that answered ready and
//! the recover hook: the adapter holds the application meanwhile (the
//! `run-while-prepared` mutation shows this is seen).

use std::collections::BTreeSet;

/// The ranks inside a prepared checkpoint.
#[derive(Debug, Default)]
pub struct Prepared {
    ranks: BTreeSet<usize>,
}

impl Prepared {
    /// Rank `v`'s prepare hook answered ready.
    pub fn ready(&mut self, v: usize) {
        self.ranks.insert(v);
    }

    /// Rank `v`'s recover hook runs (or a new process replaced it).
    pub fn recovered(&mut self, v: usize) {
        self.ranks.remove(&v);
    }

    /// Rank `v`'s application code runs now.
    pub fn application_runs(&mut self, v: usize) -> Result<(), String> {
        if self.ranks.remove(&v) {
            return Err(format!(
                "rank {v}: application code ran between prepare and recover"
            ));
        }
        Ok(())
    }
}
