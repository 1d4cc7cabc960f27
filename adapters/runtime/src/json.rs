//! The JSON form of wire messages: what `snapc wire decode` prints and
//! `snapc wire encode` reads.
//!
//! One object per message, `"message"` naming its kind; enums appear by
//! their protocol names (`"op_event":"CHECKPOINT"`), NULL strings as `null`,
//! optional parts (op_state, LOCAL_UPDATE's debug flag, JOB_STATE's long
//! form and process list) only when carried. The mapping is exact both ways:
//! decoding then encoding reproduces the input bytes. Encoding rejects
//! unknown keys, so that a misspelt field is an error rather than a default.
//!
//! ```text
//! {"message":"REQUEST_OP","jobid":305397761,"op_event":"INIT"}
//! {"message":"REQUEST_OP","jobid":1,"op_event":"RESTART","seq_num":3,"handle":"snap"}
//! {"message":"REQUEST_OP","jobid":1,"op_event":"MIGRATE",
//!  "entries":[{"vpid":0,"host":null,"vpid_pref":1,"off_node":true}]}
//! {"message":"ORTED_STATE","quick":false,"state":"FINISHED_LOCAL"}   (+ "notify":true)
//! {"message":"OP_RESPONSE","op_event":"CHECKPOINT","op_state":0}
//! {"message":"FIN_ACK"}
//! {"message":"JOB_STATE","quick":false,"jobid":1,"state":"RUNNING","handle":7,
//!  "term":false,"stop":false,"inc_prep_only":false,"inc_recover_only":false,
//!  "migrating":true,"procs":[{"jobid":1,"vpid":2}]}
//! {"message":"LOCAL_FINISH","cr_state":"CONTINUE"}
//! {"message":"LOCAL_UPDATE","name":{"jobid":1,"vpid":0},"pid":4242,"debug":false}
//! {"frame":"OPTIONS","all_migrating":false,...,"handle":7}   (fifo-options)
//! ```

use serde_json::{Map, Value, json};
use snapc_core::wire::io::write_message;
use snapc_core::wire::{
    CkptState, CrState, Debugger, DecodeError, FifoOptions, FromGc, JobDetail, JobOptions,
    JobState, List, LocalFinish, LocalUpdate, Message, MigrateEntry, OpEvent, OpResponse,
    OptionsFrame, OrtedState, ProcessName, Request, RequestOp, StateCode, ToDaemon, ToGc,
};
use std::collections::BTreeSet;
use std::fmt;

/// The channels `snapc wire` understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Channel {
    /// REQUEST_OP and ORTED_STATE, to the global coordinator.
    ToGc,
    /// OP response, FIN_ACK and JOB_STATE, from the global coordinator.
    FromGc,
    /// LOCAL_FINISH and LOCAL_UPDATE, to the node daemon.
    ToDaemon,
    /// The FIFO options frame (step 1 of the handshake), host byte order.
    FifoOptions,
}

/// A JSON value that does not describe a message of the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError(pub String);

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for JsonError {}

fn err<T>(msg: impl Into<String>) -> Result<T, JsonError> {
    Err(JsonError(msg.into()))
}

/// Decodes one buffer of `channel` into its JSON form.
pub fn decode(channel: Channel, bytes: &[u8]) -> Result<Value, DecodeError> {
    Ok(match channel {
        Channel::ToGc => to_gc_json(&ToGc::parse(bytes)?),
        Channel::FromGc => from_gc_json(&FromGc::parse(bytes)?),
        Channel::ToDaemon => to_daemon_json(&ToDaemon::parse(bytes)?),
        Channel::FifoOptions => {
            let debug = bytes.len() == OptionsFrame::DEBUG_LEN;
            options_json(&OptionsFrame::parse(bytes, debug)?)
        }
    })
}

/// Encodes the JSON form of a message of `channel`.
pub fn encode(channel: Channel, value: &Value) -> Result<Vec<u8>, JsonError> {
    let obj = Obj::new(value)?;
    match channel {
        Channel::ToGc => with_to_gc(obj, |m| written(&m)),
        Channel::FromGc => with_from_gc(obj, |m| written(&m)),
        Channel::ToDaemon => written(&to_daemon_from(obj)?),
        Channel::FifoOptions => Ok(options_from(obj)?.to_bytes().to_vec()),
    }
}

/// The message as the wire's DSS writer streams it into a `Vec`.
fn written<'a, M: Message<'a>>(m: &M) -> Result<Vec<u8>, JsonError> {
    let mut out = Vec::new();
    write_message(&mut out, m).map_err(|e| JsonError(e.to_string()))?;
    Ok(out)
}

// ---- messages to JSON ----

fn name_json(n: ProcessName) -> Value {
    json!({ "jobid": n.jobid, "vpid": n.vpid })
}

fn state_into(obj: &mut Map<String, Value>, s: StateCode) {
    obj.insert("state".into(), s.state.name().into());
    if s.notify {
        obj.insert("notify".into(), true.into());
    }
}

/// The JSON form of a message to the global coordinator.
pub fn to_gc_json(m: &ToGc<'_>) -> Value {
    let mut o = Map::new();
    match m {
        ToGc::RequestOp(RequestOp { jobid, request }) => {
            o.insert("message".into(), "REQUEST_OP".into());
            o.insert("jobid".into(), (*jobid).into());
            o.insert("op_event".into(), request.op_event().name().into());
            match request {
                Request::Restart { seq_num, handle } => {
                    o.insert("seq_num".into(), (*seq_num).into());
                    o.insert("handle".into(), (*handle).into());
                }
                Request::Migrate(entries) => {
                    let list = entries
                        .iter()
                        .map(|e| {
                            json!({"vpid": e.vpid, "host": e.host, "vpid_pref": e.vpid_pref, "off_node": e.off_node})
                        })
                        .collect();
                    o.insert("entries".into(), Value::Array(list));
                }
                _ => {}
            }
        }
        ToGc::OrtedState(OrtedState { quick, state }) => {
            o.insert("message".into(), "ORTED_STATE".into());
            o.insert("quick".into(), (*quick).into());
            state_into(&mut o, *state);
        }
    }
    Value::Object(o)
}

/// The JSON form of a message from the global coordinator.
pub fn from_gc_json(m: &FromGc<'_>) -> Value {
    let mut o = Map::new();
    match m {
        FromGc::OpResponse(OpResponse { op_event, op_state }) => {
            o.insert("message".into(), "OP_RESPONSE".into());
            o.insert("op_event".into(), op_event.name().into());
            if let Some(s) = op_state {
                o.insert("op_state".into(), (*s).into());
            }
        }
        FromGc::FinAck => {
            o.insert("message".into(), "FIN_ACK".into());
        }
        FromGc::JobState(JobState {
            jobid,
            state,
            detail,
        }) => {
            o.insert("message".into(), "JOB_STATE".into());
            o.insert("quick".into(), detail.is_none().into());
            o.insert("jobid".into(), (*jobid).into());
            state_into(&mut o, *state);
            if let Some(d) = detail {
                o.insert("handle".into(), d.handle.into());
                o.insert("term".into(), d.options.term.into());
                o.insert("stop".into(), d.options.stop.into());
                o.insert("inc_prep_only".into(), d.options.inc_prep_only.into());
                o.insert("inc_recover_only".into(), d.options.inc_recover_only.into());
                o.insert("migrating".into(), d.migrating.is_some().into());
                if let Some(procs) = d.migrating {
                    o.insert("procs".into(), procs.iter().map(name_json).collect());
                }
            }
        }
    }
    Value::Object(o)
}

/// The JSON form of a message to the node daemon.
pub fn to_daemon_json(m: &ToDaemon) -> Value {
    match m {
        ToDaemon::LocalFinish(LocalFinish { cr_state }) => {
            json!({ "message": "LOCAL_FINISH", "cr_state": cr_state.name() })
        }
        ToDaemon::LocalUpdate(LocalUpdate { name, pid, debug }) => {
            let mut v = json!({ "message": "LOCAL_UPDATE", "name": name_json(*name), "pid": pid });
            if let (Some(flag), Value::Object(o)) = (debug, &mut v) {
                o.insert("debug".into(), (*flag).into());
            }
            v
        }
    }
}

/// The JSON form of a FIFO options frame.
pub fn options_json(f: &OptionsFrame) -> Value {
    let o = f.options;
    let mut v = json!({
        "frame": "OPTIONS",
        "all_migrating": o.all_migrating,
        "migrating": o.migrating,
        "term": o.term,
        "stop": o.stop,
        "inc_prep_only": o.inc_prep_only,
        "inc_recover_only": o.inc_recover_only,
    });
    if let Value::Object(m) = &mut v {
        if let Some(d) = o.debugger {
            m.insert("attach_debugger".into(), d.attach.into());
            m.insert("detach_debugger".into(), d.detach.into());
        }
        m.insert("handle".into(), f.handle.into());
    }
    v
}

// ---- JSON to messages ----

/// A JSON object being read: typed getters, and a check that no key was left unread.
struct Obj<'v> {
    map: &'v Map<String, Value>,
    used: BTreeSet<&'static str>,
}

impl<'v> Obj<'v> {
    fn new(v: &'v Value) -> Result<Self, JsonError> {
        match v {
            Value::Object(map) => Ok(Self {
                map,
                used: BTreeSet::new(),
            }),
            _ => err("expected a JSON object"),
        }
    }

    fn get(&mut self, key: &'static str) -> Option<&'v Value> {
        self.used.insert(key);
        self.map.get(key)
    }

    fn req(&mut self, key: &'static str) -> Result<&'v Value, JsonError> {
        self.get(key)
            .ok_or_else(|| JsonError(format!("missing field \"{key}\"")))
    }

    fn int<T: TryFrom<i64>>(&mut self, key: &'static str) -> Result<T, JsonError> {
        self.req(key)?
            .as_i64()
            .and_then(|v| T::try_from(v).ok())
            .ok_or_else(|| JsonError(format!("field \"{key}\" must be an integer in range")))
    }

    fn bool(&mut self, key: &'static str) -> Result<bool, JsonError> {
        self.req(key)?
            .as_bool()
            .ok_or_else(|| JsonError(format!("field \"{key}\" must be true or false")))
    }

    fn opt_bool(&mut self, key: &'static str) -> Result<Option<bool>, JsonError> {
        match self.get(key) {
            None => Ok(None),
            Some(_) => self.bool(key).map(Some),
        }
    }

    fn str(&mut self, key: &'static str) -> Result<&'v str, JsonError> {
        self.req(key)?
            .as_str()
            .ok_or_else(|| JsonError(format!("field \"{key}\" must be a string")))
    }

    fn nullable_str(&mut self, key: &'static str) -> Result<Option<&'v str>, JsonError> {
        match self.req(key)? {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            _ => err(format!("field \"{key}\" must be a string or null")),
        }
    }

    fn named<T>(&mut self, key: &'static str, from: fn(&str) -> Option<T>) -> Result<T, JsonError> {
        let s = self.str(key)?;
        from(s).ok_or_else(|| JsonError(format!("field \"{key}\": unknown value \"{s}\"")))
    }

    fn array(&mut self, key: &'static str) -> Result<&'v [Value], JsonError> {
        match self.req(key)? {
            Value::Array(a) => Ok(a),
            _ => err(format!("field \"{key}\" must be an array")),
        }
    }

    /// Fails if the object has a key no getter asked for.
    fn done(self) -> Result<(), JsonError> {
        match self.map.keys().find(|k| !self.used.contains(k.as_str())) {
            Some(k) => err(format!("unknown field \"{k}\"")),
            None => Ok(()),
        }
    }
}

fn name_from(v: &Value) -> Result<ProcessName, JsonError> {
    let mut o = Obj::new(v)?;
    let name = ProcessName {
        jobid: o.int("jobid")?,
        vpid: o.int("vpid")?,
    };
    o.done()?;
    Ok(name)
}

fn state_from(o: &mut Obj<'_>) -> Result<StateCode, JsonError> {
    let state = o.named("state", CkptState::from_name)?;
    let notify = o.opt_bool("notify")?.unwrap_or(false);
    Ok(StateCode { state, notify })
}

fn with_to_gc<R>(
    mut o: Obj<'_>,
    f: impl FnOnce(ToGc<'_>) -> Result<R, JsonError>,
) -> Result<R, JsonError> {
    match o.str("message")? {
        "REQUEST_OP" => {
            let jobid = o.int("jobid")?;
            let event = o.named("op_event", OpEvent::from_name)?;
            let mut entries = Vec::new();
            let request = match event {
                OpEvent::Restart => Request::Restart {
                    seq_num: o.int("seq_num")?,
                    handle: o.nullable_str("handle")?,
                },
                OpEvent::Migrate => {
                    for v in o.array("entries")? {
                        let mut e = Obj::new(v)?;
                        entries.push(MigrateEntry {
                            vpid: e.int("vpid")?,
                            host: e.nullable_str("host")?,
                            vpid_pref: e.int("vpid_pref")?,
                            off_node: e.bool("off_node")?,
                        });
                        e.done()?;
                    }
                    Request::Migrate(List::Items(&[]))
                }
                event => Request::without_args(event).unwrap_or(Request::None),
            };
            o.done()?;
            let request = match request {
                Request::Migrate(_) => Request::Migrate(List::Items(&entries)),
                other => other,
            };
            f(ToGc::RequestOp(RequestOp { jobid, request }))
        }
        "ORTED_STATE" => {
            let quick = o.bool("quick")?;
            let state = state_from(&mut o)?;
            o.done()?;
            f(ToGc::OrtedState(OrtedState { quick, state }))
        }
        other => err(format!(
            "message \"{other}\" is not carried on channel to-gc"
        )),
    }
}

fn with_from_gc<R>(
    mut o: Obj<'_>,
    f: impl FnOnce(FromGc<'_>) -> Result<R, JsonError>,
) -> Result<R, JsonError> {
    match o.str("message")? {
        "OP_RESPONSE" => {
            let op_event = o.named("op_event", OpEvent::from_name)?;
            if op_event == OpEvent::FinAck {
                return err("an OP_RESPONSE for FIN_ACK is written {\"message\":\"FIN_ACK\"}");
            }
            let op_state = if op_event.carries_op_state() {
                Some(o.int("op_state")?)
            } else {
                None
            };
            o.done()?;
            f(FromGc::OpResponse(OpResponse { op_event, op_state }))
        }
        "FIN_ACK" => {
            o.done()?;
            f(FromGc::FinAck)
        }
        "JOB_STATE" => {
            let quick = o.bool("quick")?;
            let jobid = o.int("jobid")?;
            let state = state_from(&mut o)?;
            let mut procs = Vec::new();
            let mut detail = None;
            if !quick {
                let handle = o.int("handle")?;
                let options = JobOptions {
                    term: o.bool("term")?,
                    stop: o.bool("stop")?,
                    inc_prep_only: o.bool("inc_prep_only")?,
                    inc_recover_only: o.bool("inc_recover_only")?,
                };
                let migrating = o.bool("migrating")?;
                if migrating {
                    procs = o
                        .array("procs")?
                        .iter()
                        .map(name_from)
                        .collect::<Result<_, _>>()?;
                }
                detail = Some((handle, options, migrating));
            }
            o.done()?;
            let detail = detail.map(|(handle, options, migrating)| JobDetail {
                handle,
                options,
                migrating: migrating.then_some(List::Items(&procs)),
            });
            f(FromGc::JobState(JobState {
                jobid,
                state,
                detail,
            }))
        }
        other => err(format!(
            "message \"{other}\" is not carried on channel from-gc"
        )),
    }
}

fn to_daemon_from(mut o: Obj<'_>) -> Result<ToDaemon, JsonError> {
    let m = match o.str("message")? {
        "LOCAL_FINISH" => ToDaemon::LocalFinish(LocalFinish {
            cr_state: o.named("cr_state", CrState::from_name)?,
        }),
        "LOCAL_UPDATE" => ToDaemon::LocalUpdate(LocalUpdate {
            name: name_from(o.req("name")?)?,
            pid: o.int("pid")?,
            debug: o.opt_bool("debug")?,
        }),
        other => {
            return err(format!(
                "message \"{other}\" is not carried on channel to-daemon"
            ));
        }
    };
    o.done()?;
    Ok(m)
}

fn options_from(mut o: Obj<'_>) -> Result<OptionsFrame, JsonError> {
    if o.str("frame")? != "OPTIONS" {
        return err("field \"frame\" must be \"OPTIONS\"");
    }
    let mut options = FifoOptions {
        all_migrating: o.bool("all_migrating")?,
        migrating: o.bool("migrating")?,
        term: o.bool("term")?,
        stop: o.bool("stop")?,
        inc_prep_only: o.bool("inc_prep_only")?,
        inc_recover_only: o.bool("inc_recover_only")?,
        debugger: None,
    };
    match (
        o.opt_bool("attach_debugger")?,
        o.opt_bool("detach_debugger")?,
    ) {
        (Some(attach), Some(detach)) => options.debugger = Some(Debugger { attach, detach }),
        (None, None) => {}
        _ => return err("attach_debugger and detach_debugger go together"),
    }
    let handle = o.int("handle")?;
    o.done()?;
    Ok(OptionsFrame { options, handle })
}
