//! The global coordinator's actions: the messages to the node agents and
//! the ranks, the operation the coordinator follows, and its publication
//! in the store.

use super::msg::{Down, RankResult};
use super::*;

/// The operation the coordinator follows.
pub(super) struct Op {
    pub(super) kind: &'static str,
    pub(super) handle: u32,
    pub(super) gc_seq: Option<u32>,
    pub(super) started: Instant,
    pub(super) results: BTreeMap<u32, RankResult>,
    pub(super) waiters: Vec<u64>,
    /// The store refused the snapshot: the LCs were not started, the
    /// coordinator answers for them.
    pub(super) lc_skipped: bool,
    pub(super) error: Option<String>,
    pub(super) published: Option<(u64, PathBuf, String, u64)>,
    /// The verdict (ESTABLISHED, ERROR, INC_PREPED) went out: the
    /// operation is ending.
    pub(super) verdict: bool,
    /// A migration: the ranks moved to their new nodes.
    pub(super) migration: Option<migrate::Moving>,
}

pub(super) fn ms(d: CoreDuration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

pub(super) fn opt_ms(d: Option<CoreDuration>) -> Option<f64> {
    d.map(ms)
}

pub(super) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(super) fn timings_json(t: &local::Timings) -> Value {
    json!({
        "fifos": opt_ms(t.fifos), "open": opt_ms(t.open), "options": opt_ms(t.options),
        "response": opt_ms(t.response), "go_ahead": opt_ms(t.go_ahead),
        "final_state": opt_ms(t.final_state), "stop": opt_ms(t.stop), "total": ms(t.total),
    })
}

impl Coordinator {
    /// Carries out the global coordinator's actions until it has none;
    /// whether there were any.
    pub(super) fn pump(&mut self) -> bool {
        self.sync_hosts();
        let mut out: MessageBuf = [0; MAX_MESSAGE_LEN];
        let mut moved = false;
        while let Some(action) = self.gc.poll_action(&mut out) {
            moved = true;
            self.on_gc(action, &out);
        }
        moved
    }

    /// Node `node`'s report when the coordinator answers for it (its LC
    /// was not started, or its agent is lost): delivered at once.
    pub(super) fn answer_for_lc(&mut self, node: usize, state: CkptState) {
        let o = OrtedState {
            quick: true,
            state: StateCode::plain(state),
        };
        let mut buf: MessageBuf = [0; MAX_MESSAGE_LEN];
        match o.emit(&mut buf) {
            Ok(n) => {
                let now = self.now();
                if let Err(e) = self.gc.handle_lc_message(now, node, &buf[..n]) {
                    log::warn!("ORTED_STATE refused: {e}");
                }
            }
            Err(e) => log::error!("ORTED_STATE: {e}"),
        }
    }

    /// Every node's report, answered for them.
    pub(super) fn answer_for_all(&mut self, state: CkptState) {
        for node in 0..self.nodes.len() {
            self.answer_for_lc(node, state);
        }
    }

    pub(super) fn on_gc(&mut self, action: global::Action, out: &MessageBuf) {
        let now = self.now();
        match action {
            global::Action::SendToLcs { len } => {
                let bytes = out[..len].to_vec();
                let (state, detail) = match FromGc::parse(&bytes) {
                    Ok(FromGc::JobState(js)) => (
                        js.state.state,
                        js.detail
                            .map(|d| (d.handle, d.options, d.migrating.is_some())),
                    ),
                    other => {
                        log::error!("GC to LCs: not a JOB_STATE: {other:?}");
                        return;
                    }
                };
                if let (CkptState::Running, Some((handle, options, migrating))) = (state, detail) {
                    let kind = if options.inc_recover_only {
                        "quiesce_end"
                    } else if options.inc_prep_only {
                        "quiesce_start"
                    } else if migrating {
                        "migrate"
                    } else {
                        "checkpoint"
                    };
                    let mut op = Op {
                        kind,
                        handle,
                        gc_seq: None,
                        started: Instant::now(),
                        results: BTreeMap::new(),
                        waiters: Vec::new(),
                        lc_skipped: false,
                        error: None,
                        published: None,
                        verdict: false,
                        migration: None,
                    };
                    if let Some(prev) = self.op.take() {
                        op.waiters = prev.waiters;
                    }
                    // A quiesce's handle gets its directory too: the ranks
                    // register it, and a quiesced checkpoint writes into it.
                    if kind != "quiesce_end"
                        && let Err(e) = self.store.prepare(handle)
                    {
                        self.log(format!("checkpoint refused: {e}"));
                        op.error = Some(e);
                        op.lc_skipped = true;
                        self.op = Some(op);
                        self.answer_for_all(CkptState::Error);
                        return;
                    }
                    self.op = Some(op);
                    if options.inc_recover_only && self.runtime_quiesce_end {
                        // The ranks end their quiesce when they see this (snapc_posix::app).
                        self.broadcast(Down::ToAllRanks {
                            tag: Tag::Snapc,
                            bytes: bytes.clone(),
                        });
                    }
                } else {
                    if let Some(op) = self.op.as_mut() {
                        op.verdict = true;
                    }
                    if self.op.as_ref().is_some_and(|o| o.lc_skipped) {
                        self.answer_for_all(CkptState::Recovered);
                        return;
                    }
                }
                self.broadcast(Down::JobState(bytes));
                // The lost nodes' reports, on their behalf.
                let lost: Vec<usize> = (0..self.nodes.len())
                    .filter(|&i| self.nodes[i].lost.is_some())
                    .collect();
                for node in lost {
                    self.answer_for_lc(node, CkptState::Error);
                }
            }
            global::Action::SendToRank { vpid, len } => {
                let failed = self
                    .op
                    .as_ref()
                    .is_some_and(|o| o.error.is_some() || o.published.is_none());
                let done = matches!(
                    FromGc::parse(&out[..len]),
                    Ok(FromGc::OpResponse(OpResponse {
                        op_event: OpEvent::Checkpoint,
                        op_state: Some(OpResponse::DONE),
                    }))
                );
                if done && failed {
                    // The GC established a snapshot the store could not
                    // publish: the rank hears that its checkpoint failed.
                    let failure = FromGc::OpResponse(OpResponse {
                        op_event: OpEvent::Checkpoint,
                        op_state: Some(OpResponse::FAILED),
                    });
                    let mut buf: MessageBuf = [0; MAX_MESSAGE_LEN];
                    match failure.emit(&mut buf) {
                        Ok(n) => self.send_rank(vpid, Tag::SnapcFull, &buf[..n]),
                        Err(e) => log::error!("OP response: {e}"),
                    }
                } else {
                    self.send_rank(vpid, Tag::SnapcFull, &out[..len]);
                }
            }
            global::Action::Established(s) => self.establish(&s),
            global::Action::Migrate { seq, handle } => self.begin_migration(seq, handle),
            global::Action::Restart { seq_num } => {
                let handle = self.gc.restart_handle().to_string();
                self.begin_restart(seq_num, &handle);
            }
            global::Action::Finished(r) => self.finish(&r),
            other => {
                let _ = now;
                log::error!("a GC action this daemon does not know: {other:?}")
            }
        }
    }

    /// A message to rank `vpid`, through its node's agent.
    pub(super) fn send_rank(&mut self, vpid: u32, tag: Tag, payload: &[u8]) {
        match self.ranks.get(vpid as usize).and_then(|r| r.node) {
            Some(node) => self.send_to(
                node,
                Down::ToRank {
                    vpid,
                    tag,
                    bytes: payload.to_vec(),
                },
            ),
            None => log::warn!("rank {vpid} is not connected: message dropped"),
        }
    }

    /// A rank's result from its node's agent.
    pub(super) fn on_result(&mut self, r: RankResult) {
        let total = self.opts.nranks;
        let Some(op) = self.op.as_mut() else {
            return;
        };
        op.results.insert(r.vpid, r);
        let done = op.results.len();
        let ev = json!({"event": "progress", "done": done, "total": total});
        let waiters = op.waiters.clone();
        for id in waiters {
            self.send_control(id, &ev);
        }
    }

    pub(super) fn establish(&mut self, s: &Snapshot) {
        let seq = self.store.seq(s.seq);
        let nranks = self.opts.nranks;
        let Some(op) = self.op.as_mut() else {
            self.log(format!(
                "snapshot {} (handle {}) not recorded: no checkpoint was followed",
                s.seq, s.handle
            ));
            return;
        };
        op.gc_seq = Some(s.seq);
        if op.migration.is_some() {
            // The moving ranks restarted from it; the others did not write
            // theirs: not a snapshot of the whole job.
            return;
        }
        let complete = (0..nranks).all(|r| op.results.get(&r).is_some_and(RankResult::complete));
        if !complete {
            op.error = Some(format!(
                "snapshot {seq}: only {} of {nranks} ranks took part",
                op.results.len()
            ));
            return;
        }
        let staged = self.store.staged(s.handle).ok();
        let mut total = 0;
        let ranks: Vec<Value> = op
            .results
            .values()
            .map(|p| {
                let bytes = staged
                    .as_ref()
                    .and_then(|d| d.open_sub(&format!("rank-{}", p.vpid), false).ok())
                    .map_or(0, |d| d.tree_size());
                total += bytes;
                let node = self
                    .ranks
                    .get(p.vpid as usize)
                    .and_then(|r| r.node)
                    .and_then(|n| self.nodes.get(n))
                    .map(|n| n.name.clone());
                json!({
                    "rank": p.vpid, "pid": p.pid, "state": p.outcome(),
                    "dir": format!("rank-{}", p.vpid), "bytes": bytes,
                    "handshake": p.n, "timings_ms": p.timings, "node": node,
                })
            })
            .collect();
        let nodes: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
        let meta = json!({
            "job": self.opts.job, "jobid": self.jobid, "seq": seq, "gc_seq": s.seq,
            "handle": s.handle, "reference": s.reference.as_str(), "nranks": nranks,
            "argv": self.opts.argv, "launcher": self.opts.launcher,
            "cwd": self.opts.cwd.clone().or_else(|| std::env::current_dir().ok()),
            "created_unix_ms": unix_ms(),
            "duration_ms": op.started.elapsed().as_secs_f64() * 1000.0,
            "bytes": total, "ranks": ranks,
            "nodes": if self.embedded { None } else { Some(nodes) },
        });
        match self.store.publish(s.handle, seq, &meta) {
            Ok(dir) => {
                self.store
                    .record_global(s.handle, seq, s.reference.as_str());
                op.published = Some((seq, dir, s.reference.as_str().to_string(), total));
            }
            Err(e) => {
                log::warn!(target: crate::logging::TARGET, "checkpoint failed: {e}");
                op.error = Some(e);
            }
        }
    }

    /// The global coordinator's failure, with node names.
    fn failure_text(&self, f: Option<global::OperationFailure>) -> String {
        match f {
            Some(global::OperationFailure::Lc { lc, state }) if !self.embedded => {
                format!("node {}: {}", self.node_name(lc), state.name())
            }
            Some(global::OperationFailure::LcTimeout { lc }) if !self.embedded => {
                format!("node {}: no report in time", self.node_name(lc))
            }
            Some(f) => format!("{f:?}"),
            None => "failed".into(),
        }
    }

    pub(super) fn finish(&mut self, r: &Report) {
        if matches!(r.kind, OpKind::Restart) {
            self.finish_restart(r);
            return;
        }
        let Some(op) = self.op.take() else {
            return;
        };
        let kind = op.kind;
        let checkpoint = matches!(r.kind, OpKind::Checkpoint);
        let migration = matches!(r.kind, OpKind::Migrate);
        let ok = r.ok && op.error.is_none() && (!checkpoint || op.published.is_some());
        // Why a rank could not write its snapshot is in its own log; a full
        // store is worth saying here (before the discard frees space).
        let full = (checkpoint && !ok).then(|| self.store.full()).flatten();
        // A failed operation's snapshot directory goes at once (a quiesce's
        // stays until the daemon's end: its ranks write their attributes
        // there as they tear down); a migration's once its ranks run again.
        if (!ok && !matches!(r.kind, OpKind::QuiesceEnd)) || migration {
            self.store.discard(op.handle);
        }
        match r.kind {
            OpKind::QuiesceStart if ok => self.quiesced = true,
            OpKind::QuiesceEnd => {
                self.quiesced = false;
                self.runtime_quiesce_end = false;
            }
            _ => {}
        }
        let error = if ok {
            None
        } else {
            let mut why: Vec<String> = op
                .results
                .values()
                .filter(|p| p.failing())
                // With what the machine alone cannot say (EMFILE, ...).
                .map(|p| match &p.note {
                    Some(e) => format!("rank {}: {} ({e})", p.vpid, p.outcome()),
                    None => format!("rank {}: {}", p.vpid, p.outcome()),
                })
                .collect();
            if let Some(e) = &op.error {
                why.insert(0, e.clone());
            }
            if let Some(f) = full.filter(|_| op.error.is_none()) {
                why.push(f);
            }
            if why.is_empty() {
                why.push(self.failure_text(r.failure));
            }
            Some(why.join("; "))
        };
        let seq = op.published.as_ref().map(|p| p.0).or(r
            .seq
            .and_then(|s| u32::try_from(s).ok())
            .map(|s| self.store.seq(s)));
        let ev = json!({
            "event": "finished", "op": kind, "ok": ok, "seq": seq,
            "reference": op.published.as_ref().map(|p| p.2.clone()),
            "dir": op.published.as_ref().map(|p| p.1.display().to_string()),
            "bytes": op.published.as_ref().map(|p| p.3),
            "handle": op.handle, "error": error,
            "duration_ms": op.started.elapsed().as_secs_f64() * 1000.0,
            "ranks": op.results.values().map(|p| json!({
                "rank": p.vpid, "pid": p.pid, "state": p.outcome(),
                "timings_ms": p.timings,
            })).collect::<Vec<_>>(),
            "moved": op.migration.as_ref().map(|m| m.describe(self)),
        });
        match (&error, &op.published) {
            (None, Some((seq, dir, _, bytes))) => self.log(format!(
                "checkpoint {seq}: complete in {:.1} ms, {bytes} bytes, {}",
                op.started.elapsed().as_secs_f64() * 1000.0,
                dir.display()
            )),
            (None, None) => self.log(format!("{kind}: done")),
            (Some(e), _) => self.log(format!("{kind} failed: {e}")),
        }
        for id in &op.waiters {
            self.send_control(*id, &ev);
            self.conns.remove(id);
        }
        if ok
            && checkpoint
            && let Some(k) = self.opts.keep
        {
            let removed = self.store.prune(k);
            if !removed.is_empty() {
                self.log(format!("pruned snapshots {removed:?} (--keep {k})"));
            }
        }
        self.last_result = Some(ev);
        self.after_signal_checkpoint(op.handle, ok && checkpoint);
    }
}
