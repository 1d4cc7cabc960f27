//! The local and global coordinators and the messages between them; the
//! operation the daemon follows, and its publication in the store.

use super::*;

/// Messages between the LC and the GC, encoded.
pub(super) enum Wire {
    ToGc(Vec<u8>),
    ToLc(Vec<u8>),
}

/// The operation the daemon follows.
pub(super) struct Op {
    pub(super) kind: &'static str,
    pub(super) handle: u32,
    pub(super) gc_seq: Option<u32>,
    pub(super) started: Instant,
    pub(super) results: BTreeMap<u32, ProcessResult>,
    pub(super) waiters: Vec<u64>,
    /// The store refused the snapshot: the LC was not started, the daemon
    /// answers for it.
    pub(super) lc_skipped: bool,
    pub(super) error: Option<String>,
    pub(super) published: Option<(u64, PathBuf, String, u64)>,
    /// What the FIFO side knows of a rank's failure beyond the machine's
    /// outcome (EMFILE, a stopped or exited process), by rank.
    pub(super) notes: BTreeMap<u32, String>,
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

pub(super) fn outcome_name(o: ProcessOutcome) -> String {
    match o {
        ProcessOutcome::State(s) => s.name().to_string(),
        ProcessOutcome::Failed(f) => format!("failed: {f}"),
    }
}

impl Daemon {
    /// Carries out every action of both machines and delivers the messages
    /// between them until nothing moves.
    pub(super) fn pump(&mut self) {
        let mut out: MessageBuf = [0; MAX_MESSAGE_LEN];
        loop {
            let mut moved = false;
            while let Some(a) = self.lc.poll_action(&mut out) {
                moved = true;
                match self.io.execute(&mut self.lc, a) {
                    Some(local::Action::SendToGc { len }) => {
                        self.wire.push_back(Wire::ToGc(out[..len].to_vec()));
                    }
                    Some(local::Action::Report(r)) => self.on_report(r),
                    _ => {}
                }
            }
            while let Some(action) = self.gc.poll_action(&mut out) {
                moved = true;
                self.on_gc(action, &out);
            }
            if let Some(msg) = self.wire.pop_front() {
                moved = true;
                self.deliver(msg);
            }
            if !moved {
                break;
            }
        }
    }

    pub(super) fn deliver(&mut self, msg: Wire) {
        let now = self.io.now();
        match msg {
            Wire::ToGc(bytes) => {
                if let Err(e) = self.gc.handle_lc_message(now, 0, &bytes) {
                    log::warn!("ORTED_STATE refused: {e}");
                }
            }
            Wire::ToLc(bytes) => {
                if let Err(e) = self.lc.handle_gc_message(now, &bytes) {
                    log::warn!("JOB_STATE refused: {e}");
                }
            }
        }
    }

    /// The LC's report when the daemon answers for it (it was not started).
    pub(super) fn answer_for_lc(&mut self, state: CkptState) {
        let o = OrtedState {
            quick: true,
            state: StateCode::plain(state),
        };
        let mut buf: MessageBuf = [0; MAX_MESSAGE_LEN];
        match o.emit(&mut buf) {
            Ok(n) => self.wire.push_back(Wire::ToGc(buf[..n].to_vec())),
            Err(e) => log::error!("ORTED_STATE: {e}"),
        }
    }

    pub(super) fn on_gc(&mut self, action: global::Action, out: &MessageBuf) {
        let now = self.io.now();
        match action {
            global::Action::SendToLcs { len } => {
                let bytes = out[..len].to_vec();
                let (state, detail) = match FromGc::parse(&bytes) {
                    Ok(FromGc::JobState(js)) => {
                        (js.state.state, js.detail.map(|d| (d.handle, d.options)))
                    }
                    other => {
                        log::error!("GC to LCs: not a JOB_STATE: {other:?}");
                        return;
                    }
                };
                if let (CkptState::Running, Some((handle, options))) = (state, detail) {
                    let kind = if options.inc_recover_only {
                        "quiesce_end"
                    } else if options.inc_prep_only {
                        "quiesce_start"
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
                        notes: BTreeMap::new(),
                        error: None,
                        published: None,
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
                        self.answer_for_lc(CkptState::Error);
                        return;
                    }
                    self.op = Some(op);
                    if options.inc_recover_only && self.runtime_quiesce_end {
                        // The ranks end their quiesce when they see this (snapc_posix::app).
                        self.send_all_ranks(Tag::Snapc, &bytes);
                    }
                } else if self.op.as_ref().is_some_and(|o| o.lc_skipped) {
                    self.answer_for_lc(CkptState::Recovered);
                    return;
                }
                self.wire.push_back(Wire::ToLc(bytes));
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
            global::Action::Migrate { .. } => {
                self.log("migration is not supported on one node: refused");
                let _ = self.gc.handle_migration_done(now, false);
            }
            global::Action::Restart { seq_num } => {
                let handle = self.gc.restart_handle().to_string();
                self.begin_restart(seq_num, &handle);
            }
            global::Action::Finished(r) => self.finish(&r),
            other => log::error!("a GC action this daemon does not know: {other:?}"),
        }
    }

    pub(super) fn on_report(&mut self, r: ProcessResult) {
        let note = self.io.take_note(r.slot);
        if let Some(note) = &note {
            self.log(format!("rank {}: {note}", r.name.vpid));
        }
        let total = self.opts.nranks;
        let Some(op) = self.op.as_mut() else {
            return;
        };
        if let Some(note) = note {
            op.notes.insert(r.name.vpid, note);
        }
        op.results.insert(r.name.vpid, r);
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
        let complete = (0..nranks).all(|r| {
            op.results.get(&r).is_some_and(|p| {
                matches!(
                    p.outcome,
                    ProcessOutcome::State(CrState::Continue | CrState::Term)
                )
            })
        });
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
                    .and_then(|d| d.open_sub(&format!("rank-{}", p.name.vpid), false).ok())
                    .map_or(0, |d| d.tree_size());
                total += bytes;
                json!({
                    "rank": p.name.vpid, "pid": p.pid, "state": outcome_name(p.outcome),
                    "dir": format!("rank-{}", p.name.vpid), "bytes": bytes,
                    "handshake": p.n, "timings_ms": timings_json(&p.timings),
                })
            })
            .collect();
        let meta = json!({
            "job": self.opts.job, "jobid": self.jobid, "seq": seq, "gc_seq": s.seq,
            "handle": s.handle, "reference": s.reference.as_str(), "nranks": nranks,
            "argv": self.opts.argv, "launcher": self.opts.launcher,
            "cwd": self.opts.cwd.clone().or_else(|| std::env::current_dir().ok()),
            "created_unix_ms": unix_ms(),
            "duration_ms": op.started.elapsed().as_secs_f64() * 1000.0,
            "bytes": total, "ranks": ranks,
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
        let ok = r.ok && op.error.is_none() && (!checkpoint || op.published.is_some());
        // Why a rank could not write its snapshot is in its own log; a full
        // store is worth saying here (before the discard frees space).
        let full = (checkpoint && !ok).then(|| self.store.full()).flatten();
        // A failed operation's snapshot directory goes at once (a quiesce's
        // stays until the daemon's end: its ranks write their attributes
        // there as they tear down).
        if !ok && !matches!(r.kind, OpKind::QuiesceEnd) {
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
                .filter_map(|p| match p.outcome {
                    ProcessOutcome::State(CrState::Continue | CrState::Term | CrState::Running) => {
                        None
                    }
                    // With what the machine alone cannot say (EMFILE, ...).
                    o => Some(match op.notes.get(&p.name.vpid) {
                        Some(e) => format!("rank {}: {} ({e})", p.name.vpid, outcome_name(o)),
                        None => format!("rank {}: {}", p.name.vpid, outcome_name(o)),
                    }),
                })
                .collect();
            if let Some(e) = &op.error {
                why.insert(0, e.clone());
            }
            if let Some(f) = full.filter(|_| op.error.is_none()) {
                why.push(f);
            }
            if why.is_empty() {
                why.push(match r.failure {
                    Some(f) => format!("{f:?}"),
                    None => "failed".into(),
                });
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
                "rank": p.name.vpid, "pid": p.pid, "state": outcome_name(p.outcome),
                "timings_ms": timings_json(&p.timings),
            })).collect::<Vec<_>>(),
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
    }
}
