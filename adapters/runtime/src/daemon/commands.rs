//! What the control socket asks for (checkpoint, quiesce, status, resume,
//! stop, interval) and the interval checkpoints; whether the job can take
//! one now.

use super::*;

impl Coordinator {
    pub(super) fn interval_tick(&mut self) {
        let (Some(next), Some(every)) = (self.next_interval, self.opts.interval) else {
            return;
        };
        if Instant::now() < next {
            return;
        }
        self.next_interval = Instant::now().checked_add(every);
        let started = self.ready().and_then(|()| {
            if let Some(op) = &self.op {
                return Err(format!("a {} is still in progress", op.kind));
            }
            self.start(GcCommand::Checkpoint {
                term: false,
                stop: false,
            })
        });
        match started {
            Ok(_) => self.interval_skip = None,
            // Said once per reason: a job that can never be checkpointed
            // says so instead of staying silent.
            Err(why) if self.interval_skip.as_ref() != Some(&why) => {
                self.log(format!("interval checkpoint skipped: {why}"));
                self.interval_skip = Some(why);
            }
            Err(_) => {}
        }
    }

    /// `--checkpoint-on`: the signal came; a checkpoint (with `term`) is
    /// taken as soon as the job can take one (after the operation in
    /// progress), then the job ends. A job that cannot be checkpointed
    /// ends as the signal would end it.
    pub(super) fn checkpoint_signal_tick(&mut self) {
        let Some(sig) = self.opts.checkpoint_on else {
            return;
        };
        let n = CHECKPOINT_SIGNALS.load(Ordering::Relaxed);
        if n > self.signals_seen {
            self.signals_seen = n;
            if !self.signal_checkpoint && !self.aborting {
                self.log(format!(
                    "{sig} received: a checkpoint, then the job ends (--checkpoint-on)"
                ));
                self.signal_checkpoint = true;
                self.signal_op = None;
            }
        }
        if !self.signal_checkpoint || self.signal_op.is_some() || self.aborting {
            return;
        }
        if self.op.is_some() {
            return;
        }
        let started = self.ready().and_then(|()| {
            self.start(GcCommand::Checkpoint {
                term: true,
                stop: false,
            })
        });
        match started {
            Ok((handle, _)) => self.signal_op = Some(handle),
            Err(_) if self.starting() => {}
            Err(why) => {
                self.log(format!("{sig}: no checkpoint can be taken ({why})"));
                self.signal_checkpoint = false;
                self.end_job(
                    &format!("{} received", sig.as_str()),
                    Some(128 + sig as i32),
                );
            }
        }
    }

    /// An operation ended: if it was `--checkpoint-on`'s, the job ends,
    /// with [`EXIT_CHECKPOINTED`] when the checkpoint is complete.
    pub(super) fn after_signal_checkpoint(&mut self, handle: u32, ok: bool) {
        let Some(sig) = self.opts.checkpoint_on else {
            return;
        };
        if self.signal_op != Some(handle) {
            return;
        }
        self.signal_op = None;
        self.signal_checkpoint = false;
        if ok {
            self.ended_by_checkpoint = true;
            self.end_job(&format!("checkpoint complete after {}", sig.as_str()), None);
        } else {
            self.end_job(
                &format!("{} received and its checkpoint failed", sig.as_str()),
                Some(128 + sig as i32),
            );
        }
    }

    /// Reports, once, ranks that did not connect within the connect
    /// timeout; starts (or refuses) the requests that waited for them.
    pub(super) fn connect_tick(&mut self) {
        if !self.pending.is_empty() && !self.starting() {
            for (id, cmd, wait) in std::mem::take(&mut self.pending) {
                self.begin(id, cmd, wait);
            }
        }
        if self.initialized || self.unconnected_reported || self.aborting {
            return;
        }
        if let Some(why) = self.unconnected(true) {
            self.unconnected_reported = true;
            self.log(why);
        }
    }

    /// The ranks are starting: all running, not stopped, not all connected
    /// yet, within the connect timeout.
    pub(super) fn starting(&self) -> bool {
        if !self.launched {
            // The node agents are not all up yet.
            return !self.aborting;
        }
        !self.initialized
            && !self.aborting
            && self.restarting.is_none()
            && self
                .ranks
                .iter()
                .all(|r| matches!(r.state, RankState::Running | RankState::Waiting))
            && (self.launcher.is_none() || self.launcher_running())
            && self.stopped().is_empty()
            && self.unconnected(true).is_none()
    }

    /// The running ranks that have not connected; with `overdue`, only once
    /// the connect timeout passed. A message naming them.
    pub(super) fn unconnected(&self, overdue: bool) -> Option<String> {
        let missing: Vec<u32> = (0..self.ranks.len() as u32)
            .filter(|&i| {
                let r = &self.ranks[i as usize];
                matches!(r.state, RankState::Running | RankState::Waiting)
                    && !r.connected
                    && !r.updated
            })
            .collect();
        let since = self
            .ranks
            .iter()
            .map(|r| r.started)
            .min()
            .map_or(Duration::ZERO, |t| t.elapsed());
        let late = since >= self.opts.connect_timeout;
        if missing.is_empty() || (overdue && !late) {
            return None;
        }
        let who = rank_list(&missing);
        Some(match (late, self.opts.launcher) {
            (true, false) => format!(
                "{who} never connected to the daemon (waited {:.0} s): is the program linked with snapc?",
                self.opts.connect_timeout.as_secs_f64()
            ),
            (true, true) => format!(
                "{who} never joined the daemon (waited {:.0} s): does the launcher start {} ranks with its environment, and do they link snapc?",
                self.opts.connect_timeout.as_secs_f64(),
                self.opts.nranks
            ),
            (false, false) => format!("{who} not connected to the daemon yet"),
            (false, true) => format!("{who} not joined yet"),
        })
    }

    /// Ends the operation in progress (`snapc abort`): every handshake
    /// still running fails and its channel closes (the rank carries on at
    /// once), the others are released, nothing is published. On one node
    /// this is the local coordinator reporting ERROR to the global one,
    /// which then ends the operation as failed for every rank.
    pub(super) fn abort(&mut self) -> Result<(&'static str, u32), String> {
        if self.restarting.is_some() {
            return Err("a restart is in progress; it cannot be aborted".into());
        }
        let Some(op) = self.op.as_mut() else {
            return Err(if self.quiesced {
                "nothing to abort: the job is quiesced (end it with `snapc quiesce end`)".into()
            } else {
                "nothing to abort: no operation is in progress".into()
            });
        };
        if op.verdict || op.migration.is_some() {
            return Err(format!(
                "the {} (handle {}) is already ending",
                op.kind, op.handle
            ));
        }
        op.error
            .get_or_insert_with(|| "aborted (snapc abort)".into());
        let (kind, handle) = (op.kind, op.handle);
        self.log(format!("aborting the {kind} (handle {handle})"));
        // Every node's ERROR on its behalf: the global coordinator ends the
        // operation at once (a node that reported already keeps its
        // report, and the verdict lets every rank go).
        self.answer_for_all(CkptState::Error);
        self.pump();
        Ok((kind, handle))
    }

    /// Whether the job can take a checkpoint now.
    pub(super) fn ready(&self) -> Result<(), String> {
        if self.aborting {
            return Err("the job is ending".into());
        }
        if let Some(r) = &self.restarting {
            return Err(format!("the job is restarting from snapshot {}", r.seq));
        }
        if let Some(l) = self
            .launcher
            .as_ref()
            .filter(|l| l.state != RankState::Running)
        {
            return Err(format!(
                "the launcher has {}: the job cannot be checkpointed",
                l.state.name()
            ));
        }
        for (rank, r) in self.ranks.iter().enumerate() {
            if r.state.ended() {
                return Err(format!(
                    "rank {rank} has {}: the job cannot be checkpointed",
                    r.state.name()
                ));
            }
        }
        let stopped = self.stopped();
        if !stopped.is_empty() {
            return Err(format!(
                "{} stopped: `snapc resume --job {}` continues the job",
                rank_list(&stopped),
                self.opts.job
            ));
        }
        if !self.initialized {
            return Err(self
                .unconnected(false)
                .unwrap_or_else(|| "the job is not initialized yet".into()));
        }
        Ok(())
    }

    /// Whether a rank is stopped: on this node looked up now, on another
    /// as its agent last said (it looks every 100 ms, and at once when a
    /// checkpoint ends).
    pub(super) fn rank_stopped(&self, r: &RankView) -> bool {
        if self.embedded {
            r.state == RankState::Running && r.pid != 0 && snapc_posix::lcio::is_stopped(r.pid)
        } else {
            r.is_stopped()
        }
    }

    /// The ranks that are stopped.
    pub(super) fn stopped(&self) -> Vec<u32> {
        (0..self.ranks.len() as u32)
            .filter(|&i| self.rank_stopped(&self.ranks[i as usize]))
            .collect()
    }

    fn busy(&self, op: &Op) -> String {
        format!(
            "a {} is in progress (handle {}, {}/{} ranks done)",
            op.kind,
            op.handle,
            op.results.len(),
            self.opts.nranks
        )
    }

    /// The job's state in a word (`status`).
    pub(super) fn job_state(&self) -> &'static str {
        if self.ending.is_some() || self.aborting {
            "ending"
        } else if self.restarting.is_some() {
            "restarting"
        } else if !self.stopped().is_empty() {
            "stopped"
        } else if self.op.is_some() {
            "busy"
        } else if self.quiesced {
            "quiesced"
        } else if !self.initialized {
            if self.unconnected(true).is_some() {
                "unconnected"
            } else {
                "starting"
            }
        } else {
            "running"
        }
    }

    /// Gives the GC a command; the handle of the operation it started.
    pub(super) fn start(&mut self, cmd: GcCommand) -> Result<(u32, Option<u64>), String> {
        let next = self.gc.next_seq();
        let now = self.now();
        if let Err(e) = self.gc.handle_command(now, cmd) {
            let busy = match &self.op {
                Some(op) => self.busy(op),
                None if self.quiesced => "the job is quiesced".into(),
                None => e.to_string(),
            };
            return Err(match e {
                global::InputError::Busy => busy,
                other => other.to_string(),
            });
        }
        self.pump();
        let handle = self.op.as_ref().map_or(0, |o| o.handle);
        let seq = match cmd {
            GcCommand::Checkpoint { .. } => next.map(|s| self.store.seq(s)),
            _ => None,
        };
        Ok((handle, seq))
    }

    pub(super) fn send_control(&mut self, id: u64, v: &Value) {
        let mut line = v.to_string();
        line.push('\n');
        let ok = self
            .conns
            .get_mut(&id)
            .is_some_and(|c| c.stream.write_all(line.as_bytes()).is_ok());
        if !ok {
            self.drop_conn(id);
        }
    }

    pub(super) fn control(&mut self, id: u64, line: &[u8]) {
        let req = match parse_request(line) {
            Ok(r) => r,
            Err(e) => {
                self.control_error(id, format!("malformed request: {e}"));
                return;
            }
        };
        let flag = |k: &str| req.flag(k);
        let wait = flag("wait");
        let cmd = match req.op.as_str() {
            "status" => {
                let s = self.status();
                self.send_control(id, &s);
                self.conns.remove(&id);
                return;
            }
            "checkpoint" => GcCommand::Checkpoint {
                term: flag("term"),
                stop: flag("stop"),
            },
            "quiesce_start" => GcCommand::QuiesceStart,
            "quiesce_end" => GcCommand::QuiesceEnd,
            "resume" => return self.resume(id),
            "stop" => return self.stop(id, flag("force")),
            "interval" => return self.set_interval(id, req.number("seconds")),
            "abort" => {
                match self.abort() {
                    Ok((op, handle)) => {
                        let v = json!({"event": "aborted", "op": op, "handle": handle});
                        self.send_control(id, &v);
                        self.conns.remove(&id);
                    }
                    Err(e) => self.control_error(id, e),
                }
                return;
            }
            other => {
                self.control_error(id, format!("unknown request {other:?}"));
                return;
            }
        };
        self.begin(id, cmd, wait);
    }

    /// Starts `cmd` for control connection `id` if the job can take it; a
    /// job whose ranks are still starting (within the connect timeout)
    /// keeps the request until they all connected.
    fn begin(&mut self, id: u64, cmd: GcCommand, wait: bool) {
        if let Err(e) = self.ready() {
            if self.starting() {
                self.pending.push((id, cmd, wait));
            } else {
                self.control_error(id, e);
            }
            return;
        }
        if matches!(cmd, GcCommand::QuiesceEnd) {
            self.runtime_quiesce_end = true;
        }
        match self.start(cmd) {
            Ok((handle, seq)) => {
                let dir = seq.map(|s| self.store.root().join(s.to_string()));
                let op = self.op.as_ref().map_or("", |o| o.kind);
                self.send_control(
                    id,
                    &json!({"event": "started", "op": op, "job": self.opts.job,
                        "seq": seq, "handle": handle, "dir": dir}),
                );
                match self.op.as_mut() {
                    Some(op) if wait => op.waiters.push(id),
                    _ => {
                        // Ended at once (or no wait): the last result, if it is this one.
                        if wait && let Some(r) = self.last_result.clone() {
                            self.send_control(id, &r);
                        }
                        self.conns.remove(&id);
                    }
                }
            }
            Err(e) => {
                if matches!(cmd, GcCommand::QuiesceEnd) {
                    self.runtime_quiesce_end = false;
                }
                self.control_error(id, e);
            }
        }
    }

    /// `resume`: SIGCONT to the stopped ranks.
    fn resume(&mut self, id: u64) {
        if self.aborting {
            return self.control_error(id, "the job is ending".into());
        }
        if let Some(op) = &self.op {
            // A `checkpoint --stop` in progress is waiting for them to stop.
            let why = self.busy(op);
            return self.control_error(id, why);
        }
        let stopped = self.stopped();
        if !stopped.is_empty() {
            self.broadcast(msg::Down::Ctl(msg::DownCtl::Signal {
                sig: Signal::SIGCONT as i32,
                only_stopped: true,
            }));
            for &r in &stopped {
                if let Some(v) = self.ranks.get_mut(r as usize) {
                    v.stopped = false;
                }
            }
            self.log(format!("{} resumed (SIGCONT)", rank_list(&stopped)));
        }
        let ev = json!({"event": "finished", "op": "resume", "ok": true,
            "job": self.opts.job, "resumed": stopped});
        self.send_control(id, &ev);
        self.conns.remove(&id);
    }

    /// `stop`: ends the job without a checkpoint (SIGTERM, then SIGKILL
    /// after the grace period, at once with `force`); the connection gets
    /// the job's end.
    fn stop(&mut self, id: u64, force: bool) {
        self.stop_waiters.push(id);
        self.end_job("stop requested", Some(128 + Signal::SIGTERM as i32));
        if force {
            self.kill_remaining("stop --force");
        }
    }

    /// `interval`: a new interval in seconds (0: none), from now.
    fn set_interval(&mut self, id: u64, seconds: Option<f64>) {
        let every = match seconds {
            Some(0.0) => None,
            Some(s) => match Duration::try_from_secs_f64(s)
                .ok()
                .filter(|d| Instant::now().checked_add(*d).is_some())
            {
                Some(d) => Some(d),
                None => return self.control_error(id, format!("bad interval {s} s")),
            },
            None => {
                return self.control_error(id, "interval: \"seconds\" must be a number".into());
            }
        };
        let previous = self.opts.interval.map(|d| d.as_secs_f64());
        self.opts.interval = every;
        self.next_interval = every.and_then(|d| Instant::now().checked_add(d));
        self.interval_skip = None;
        self.log(match every {
            Some(d) => format!("checkpoint interval now {:.3} s", d.as_secs_f64()),
            None => "interval checkpoints off".into(),
        });
        let ev = json!({"event": "finished", "op": "interval", "ok": true,
            "job": self.opts.job, "interval_s": every.map(|d| d.as_secs_f64()),
            "previous_s": previous});
        self.send_control(id, &ev);
        self.conns.remove(&id);
    }

    pub(super) fn control_error(&mut self, id: u64, message: String) {
        self.send_control(id, &json!({"event": "error", "message": message}));
        self.conns.remove(&id);
    }

    pub(super) fn status(&self) -> Value {
        let latest = snapstore::latest(self.store.root());
        json!({
            "event": "status",
            "job": self.opts.job,
            "jobid": self.jobid,
            "daemon_pid": std::process::id(),
            "nranks": self.opts.nranks,
            "store": self.store.root(),
            "state": self.job_state(),
            "ranks": self.ranks.iter().enumerate().map(|(i, r)| json!({
                "rank": i, "pid": (r.pid != 0).then_some(r.pid),
                "state": if self.rank_stopped(r) { "stopped".into() } else { r.state.name() },
                "connected": r.connected,
                "node": r.node.map(|n| self.node_name(n)),
            })).collect::<Vec<_>>(),
            "nodes": self.nodes.iter().enumerate().map(|(i, n)| json!({
                "node": n.name,
                "agent": if self.embedded { "in the daemon".to_string() } else {
                    match (&n.lost, n.ready) {
                        (Some(why), _) => format!("lost: {why}"),
                        (None, true) => "up".into(),
                        (None, false) => "starting".into(),
                    }
                },
                "agent_pid": n.agent_pid,
                "ranks": (0..self.ranks.len() as u32)
                    .filter(|&r| self.ranks[r as usize].node == Some(i))
                    .collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "coordinator": self.hub.as_ref().map(|h| h.advertised.clone()),
            "launcher": self.launcher.as_ref().map(|l| json!({
                "pid": l.pid, "state": l.state.name(), "program": self.opts.argv.first(),
            })),
            "checkpointable": self.ready().is_ok(),
            "not_checkpointable": self.ready().err(),
            "quiesced": self.quiesced,
            "in_progress": self.op.as_ref().map(|op| json!({
                "op": op.kind, "handle": op.handle,
                "done": op.results.len(), "total": self.opts.nranks,
                "elapsed_ms": op.started.elapsed().as_secs_f64() * 1000.0,
            })),
            "last_snapshot": latest.map(|(seq, dir)| json!({"seq": seq, "dir": dir})),
            "last_result": self.last_result,
            "restarting": self.restarting.as_ref().map(|r| json!({
                "seq": r.seq, "dir": r.dir,
                "step": match r.step {
                    RestartStep::Stopping { .. } => "stopping",
                    RestartStep::Starting { .. } => "starting",
                },
                "elapsed_ms": r.started.elapsed().as_secs_f64() * 1000.0,
            })),
            "interval_s": self.opts.interval.map(|d| d.as_secs_f64()),
            "grace_s": self.opts.grace.as_secs_f64(),
            "output_dropped_bytes": {
                "stdout": crate::out::dropped().0, "stderr": crate::out::dropped().2,
            },
        })
    }
}

/// A control request: its `op` and its other fields, each checked against
/// [`FIELDS`].
pub(super) struct ControlRequest {
    pub(super) op: String,
    pub(super) fields: serde_json::Map<String, Value>,
}

impl ControlRequest {
    /// A boolean field (false when absent).
    pub(super) fn flag(&self, name: &str) -> bool {
        self.fields
            .get(name)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// A number field.
    pub(super) fn number(&self, name: &str) -> Option<f64> {
        self.fields.get(name).and_then(Value::as_f64)
    }
}

/// What a field's value must be.
#[derive(Clone, Copy)]
enum Kind {
    Bool,
    Number,
}

/// The fields a request may carry besides `op`, with their types.
const FIELDS: [(&str, Kind); 5] = [
    ("term", Kind::Bool),
    ("stop", Kind::Bool),
    ("wait", Kind::Bool),
    ("force", Kind::Bool),
    ("seconds", Kind::Number),
];

/// Parses one request line strictly: a JSON object with a string `op` and
/// only known fields, each of its own type; anything else is refused with
/// what is wrong, rather than taken with a default.
pub(super) fn parse_request(line: &[u8]) -> Result<ControlRequest, String> {
    let v: Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let Value::Object(mut fields) = v else {
        return Err("a request is a JSON object".into());
    };
    let op = match fields.remove("op") {
        Some(Value::String(s)) => s,
        Some(other) => return Err(format!("\"op\" must be a string, not {other}")),
        None => return Err("no \"op\"".into()),
    };
    for (name, value) in &fields {
        let Some((_, kind)) = FIELDS.iter().find(|(f, _)| f == name) else {
            return Err(format!("unknown field {name:?}"));
        };
        match (kind, value) {
            (Kind::Bool, Value::Bool(_)) | (Kind::Number, Value::Number(_)) => {}
            (Kind::Bool, other) => {
                return Err(format!("{name:?} must be true or false, not {other}"));
            }
            (Kind::Number, other) => {
                return Err(format!("{name:?} must be a number, not {other}"));
            }
        }
    }
    Ok(ControlRequest { op, fields })
}

#[cfg(test)]
mod tests {
    use super::parse_request;

    #[test]
    fn requests_are_type_checked() {
        let r = parse_request(br#"{"op":"checkpoint","term":true,"wait":false}"#).unwrap();
        assert_eq!(r.op, "checkpoint");
        assert!(r.flag("term") && !r.flag("wait") && !r.flag("stop"));
        for (bad, why) in [
            (
                &br#"{"op":"checkpoint","term":"yes"}"#[..],
                "\"term\" must be true or false",
            ),
            (br#"{"op":1}"#, "\"op\" must be a string"),
            (br#"{"op":"status","x":true}"#, "unknown field \"x\""),
            (br#"["op"]"#, "JSON object"),
            (br#"{"wait":true}"#, "no \"op\""),
        ] {
            let e = parse_request(bad).err().unwrap();
            assert!(e.contains(why), "{e}");
        }
    }
}
