//! What a scripted scenario looks at, kept next to the trace hash when the
//! world records: every byte string per channel as it was sent, in order
//! and with its time, and each machine's reports.
//!
//! Channels: `rank{v}->gc`, `gc->rank{v}`, `lc{n}->gc`, `gc->lc{n}`,
//! `rank{v}->lc{n}` (DSS messages), `fifo {pid}_{counter} app->lc` and
//! `... lc->app` (FIFO frames, each write whole), `signal lc{n}->{pid}`.
//! A message the link loses is not recorded.

use snapc_core::app;
use snapc_core::global::{self, Move};
use snapc_core::local;
use snapc_core::time::Instant;
use snapc_core::wire::CrState;
use std::collections::BTreeMap;

/// One byte string sent.
#[derive(Debug, Clone)]
pub struct Rec {
    /// When.
    pub at: Instant,
    /// On which channel.
    pub chan: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Everything recorded.
#[derive(Debug, Default)]
pub struct Recorder {
    /// Every byte string, in the order sent.
    pub log: Vec<Rec>,
    /// Per rank, its app coordinators' outcomes (across its processes).
    pub outcomes: Vec<Vec<app::Outcome>>,
    /// Per rank, the states its recover hook was called with.
    pub recovered_with: Vec<Vec<CrState>>,
    /// Per rank, how many times its checkpointer was called.
    pub checkpoints: Vec<usize>,
    /// Per node, its local coordinator's per-process results.
    pub lc_results: Vec<Vec<local::ProcessResult>>,
    /// The global coordinator's operation reports.
    pub gc_reports: Vec<global::Report>,
    /// Per handle, the ranks that marked themselves skipped (sstore).
    pub skipped: BTreeMap<u32, Vec<usize>>,
    /// The migrations the runtime was asked for: (seq, handle, moves).
    pub migrations: Vec<(u32, u32, Vec<Move>)>,
    /// Inputs a machine did not take.
    pub refused: Vec<String>,
}

impl Recorder {
    pub(crate) fn new(ranks: usize, nodes: usize) -> Self {
        Self {
            outcomes: vec![Vec::new(); ranks],
            recovered_with: vec![Vec::new(); ranks],
            checkpoints: vec![0; ranks],
            lc_results: vec![Vec::new(); nodes],
            ..Self::default()
        }
    }

    /// Every byte string sent on `chan`, in order.
    pub fn sent(&self, chan: &str) -> Vec<Vec<u8>> {
        self.log
            .iter()
            .filter(|r| r.chan == chan)
            .map(|r| r.bytes.clone())
            .collect()
    }

    /// Rank `v`'s request reports.
    pub fn requests(&self, v: usize) -> Vec<app::RequestReport> {
        self.outcomes[v]
            .iter()
            .filter_map(|o| match o {
                app::Outcome::Request(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    /// Rank `v`'s handshake reports.
    pub fn handshakes(&self, v: usize) -> Vec<app::HandshakeReport> {
        self.outcomes[v]
            .iter()
            .filter_map(|o| match o {
                app::Outcome::Handshake(r) => Some(*r),
                _ => None,
            })
            .collect()
    }
}
