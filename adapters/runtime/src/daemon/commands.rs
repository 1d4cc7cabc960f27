//! What the control socket asks for (checkpoint, quiesce, status) and the
//! interval checkpoints; whether the job can take one now.

use super::*;

impl Daemon {
    pub(super) fn interval_tick(&mut self) {
        let (Some(next), Some(every)) = (self.next_interval, self.opts.interval) else {
            return;
        };
        if Instant::now() < next {
            return;
        }
        self.next_interval = Some(Instant::now() + every);
        if self.ready().is_ok() && !self.gc.is_busy() && !self.quiesced {
            if let Err(e) = self.start(GcCommand::Checkpoint {
                term: false,
                stop: false,
            }) {
                self.log(format!("interval checkpoint: {e}"));
            }
        }
    }

    /// Whether the job can take a checkpoint now.
    pub(super) fn ready(&self) -> Result<(), String> {
        if self.aborting {
            return Err("the job is ending".into());
        }
        if let Some(r) = &self.restarting {
            return Err(format!("the job is restarting from snapshot {}", r.seq));
        }
        for (rank, r) in self.ranks.iter().enumerate() {
            if r.state != RankState::Running {
                return Err(format!(
                    "rank {rank} has {}: the job cannot be checkpointed",
                    r.state.name()
                ));
            }
        }
        if !self.initialized {
            return Err("not every rank has started yet".into());
        }
        Ok(())
    }

    /// Gives the GC a command; the handle of the operation it started.
    pub(super) fn start(&mut self, cmd: GcCommand) -> Result<(u32, Option<u64>), String> {
        let next = self.gc.next_seq();
        if let Err(e) = self.gc.handle_command(self.io.now(), cmd) {
            let busy = match &self.op {
                Some(op) => format!(
                    "a {} is in progress (handle {}, {}/{} ranks done)",
                    op.kind,
                    op.handle,
                    op.results.len(),
                    self.opts.nranks
                ),
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
            other => {
                self.control_error(id, format!("unknown request {other:?}"));
                return;
            }
        };
        if let Err(e) = self.ready() {
            self.control_error(id, e);
            return;
        }
        if matches!(cmd, GcCommand::QuiesceEnd) {
            self.runtime_quiesce_end = true;
        }
        match self.start(cmd) {
            Ok((handle, seq)) => {
                self.send_control(
                    id,
                    &json!({"event": "started", "seq": seq, "handle": handle}),
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
            "ranks": self.ranks.iter().enumerate().map(|(i, r)| json!({
                "rank": i, "pid": r.pid, "state": r.state.name(), "connected": r.conn.is_some(),
            })).collect::<Vec<_>>(),
            "checkpointable": self.ready().is_ok(),
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
}

/// What a field's value must be.
#[derive(Clone, Copy)]
enum Kind {
    Bool,
}

/// The fields a request may carry besides `op`, with their types.
const FIELDS: [(&str, Kind); 3] = [
    ("term", Kind::Bool),
    ("stop", Kind::Bool),
    ("wait", Kind::Bool),
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
            (Kind::Bool, Value::Bool(_)) => {}
            (Kind::Bool, other) => {
                return Err(format!("{name:?} must be true or false, not {other}"));
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
