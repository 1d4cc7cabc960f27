//! Encode and decode of every message kind, against Open MPI's `opal_dss`
//! packing the same messages (conformance/ompi_bench.c) in the same run.

use snapc_core::wire::{
    CkptState, CrState, FromGc, JobDetail, JobOptions, JobState, List, LocalFinish, LocalUpdate,
    Message, MigrateEntry, OpEvent, OpResponse, OrtedState, ProcessName, Request, RequestOp,
    StateCode, ToDaemon, ToGc,
};
use std::fmt::Write as _;
use std::hint::black_box;
use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

const JOBID: u32 = 0x1234_0001;
const PROCS: [ProcessName; 5] = [
    ProcessName {
        jobid: JOBID,
        vpid: 0,
    },
    ProcessName {
        jobid: JOBID,
        vpid: 1,
    },
    ProcessName {
        jobid: JOBID,
        vpid: 2,
    },
    ProcessName {
        jobid: JOBID,
        vpid: 3,
    },
    ProcessName {
        jobid: JOBID,
        vpid: 4,
    },
];
const ENTRIES: [MigrateEntry<'static>; 2] = [
    MigrateEntry {
        vpid: 0,
        host: Some("node-017"),
        vpid_pref: 1,
        off_node: false,
    },
    MigrateEntry {
        vpid: 1,
        host: Some("node-042"),
        vpid_pref: 0,
        off_node: true,
    },
];

/// One message, on its channel.
pub enum Msg {
    ToGc(ToGc<'static>),
    FromGc(FromGc<'static>),
    ToDaemon(ToDaemon),
}

/// The messages, named as ompi_bench.c names them, with the same values.
pub fn messages() -> Vec<(&'static str, Msg)> {
    let req = |request| {
        Msg::ToGc(ToGc::RequestOp(RequestOp {
            jobid: JOBID,
            request,
        }))
    };
    vec![
        ("REQUEST_OP(INIT)", req(Request::Init)),
        (
            "REQUEST_OP(RESTART)",
            req(Request::Restart {
                seq_num: 3,
                handle: Some("snapc_global_snapshot_7_3"),
            }),
        ),
        (
            "REQUEST_OP(MIGRATE, 2 entries)",
            req(Request::Migrate(List::Items(&ENTRIES))),
        ),
        (
            "OP_RESPONSE(CHECKPOINT)",
            Msg::FromGc(FromGc::OpResponse(OpResponse {
                op_event: OpEvent::Checkpoint,
                op_state: Some(0),
            })),
        ),
        ("FIN_ACK", Msg::FromGc(FromGc::FinAck)),
        (
            "JOB_STATE(quick)",
            Msg::FromGc(FromGc::JobState(JobState {
                jobid: JOBID,
                state: StateCode::plain(CkptState::Running),
                detail: None,
            })),
        ),
        (
            "JOB_STATE(long, 5 procs)",
            Msg::FromGc(FromGc::JobState(JobState {
                jobid: JOBID,
                state: StateCode::plain(CkptState::Running),
                detail: Some(JobDetail {
                    handle: 7,
                    options: JobOptions {
                        term: true,
                        ..JobOptions::default()
                    },
                    migrating: Some(List::Items(&PROCS)),
                }),
            })),
        ),
        (
            "ORTED_STATE(quick)",
            Msg::ToGc(ToGc::OrtedState(OrtedState {
                quick: true,
                state: StateCode::plain(CkptState::FinishedLocal),
            })),
        ),
        (
            "LOCAL_FINISH",
            Msg::ToDaemon(ToDaemon::LocalFinish(LocalFinish {
                cr_state: CrState::Continue,
            })),
        ),
        (
            "LOCAL_UPDATE",
            Msg::ToDaemon(ToDaemon::LocalUpdate(LocalUpdate {
                name: ProcessName {
                    jobid: JOBID,
                    vpid: 3,
                },
                pid: 4242,
                debug: None,
            })),
        ),
    ]
}

/// Median nanoseconds per call of `f` over `batches` batches of `iters` calls.
pub fn median_ns(batches: usize, iters: u64, mut f: impl FnMut()) -> f64 {
    median((0..batches).map(|_| batch_ns(iters, &mut f)).collect())
}

/// Nanoseconds per call of `f` over one batch of `iters` calls.
fn batch_ns(iters: u64, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

fn median(samples: Vec<f64>) -> f64 {
    percentile(samples, 50)
}

/// The `p`-th percentile (nearest rank at or below) of `samples`.
fn percentile(mut samples: Vec<f64>, p: usize) -> f64 {
    samples.sort_by(f64::total_cmp);
    let rank = samples.len().saturating_sub(1) * p / 100;
    samples.get(rank).copied().unwrap_or(f64::NAN)
}

/// One timed encode: the message, the buffer and the result are opaque to
/// the compiler, so nothing is hoisted out of the loop or left undone.
#[inline(always)]
pub fn encode_once<'a, M: Message<'a>>(m: &M, buf: &mut [u8]) {
    let _ = black_box(black_box(m).emit(black_box(buf)));
}

/// One timed decode: the input is opaque, and so is the whole decoded value
/// (a caller reads its fields, as Open MPI's side adds up the values it
/// unpacked).
#[inline(always)]
pub fn decode_once<'a, M: Message<'a>>(bytes: &'a [u8]) {
    black_box(&M::parse(black_box(bytes)));
}

/// `iters` encodes of `msg`, in nanoseconds per call. The channel is picked
/// outside the loop, as a caller knows the type it encodes.
pub fn encode_batch(msg: &Msg, buf: &mut [u8], iters: u64) -> f64 {
    match msg {
        Msg::ToGc(m) => batch_ns(iters, || encode_once(m, buf)),
        Msg::FromGc(m) => batch_ns(iters, || encode_once(m, buf)),
        Msg::ToDaemon(m) => batch_ns(iters, || encode_once(m, buf)),
    }
}

/// `iters` decodes of `bytes` on `msg`'s channel, in nanoseconds per call.
pub fn decode_batch(msg: &Msg, bytes: &[u8], iters: u64) -> f64 {
    match msg {
        Msg::ToGc(_) => batch_ns(iters, || decode_once::<ToGc>(bytes)),
        Msg::FromGc(_) => batch_ns(iters, || decode_once::<FromGc>(bytes)),
        Msg::ToDaemon(_) => batch_ns(iters, || decode_once::<ToDaemon>(bytes)),
    }
}

/// `msg` encoded into `buf`; its length.
pub fn encode(msg: &Msg, buf: &mut [u8]) -> Result<usize, String> {
    match msg {
        Msg::ToGc(x) => x.emit(buf),
        Msg::FromGc(x) => x.emit(buf),
        Msg::ToDaemon(x) => x.emit(buf),
    }
    .map_err(|e| e.to_string())
}

/// Whether `bytes` decodes on `msg`'s channel to `msg`.
pub fn decodes_to(msg: &Msg, bytes: &[u8]) -> bool {
    match msg {
        Msg::ToGc(x) => ToGc::parse(bytes).as_ref() == Ok(x),
        Msg::FromGc(x) => FromGc::parse(bytes).as_ref() == Ok(x),
        Msg::ToDaemon(x) => ToDaemon::parse(bytes).as_ref() == Ok(x),
    }
}

/// Rounds of batches per message: each round times a batch of ours (encode,
/// decode) and then a batch of Open MPI's (pack, unpack), so that both sides
/// run on the same machine at the same moments, busy or not.
const ROUNDS: usize = 101;
/// The length of every batch, ours and Open MPI's alike: short enough that
/// most batches run without being preempted on a busy machine.
const BATCH_NS: f64 = 250_000.0;
/// Which round each figure is: preemption, interrupts and cache disturbance
/// only ever add time, so a low percentile measures the code rather than the
/// neighbours, without resting on a single batch.
const PERCENTILE: usize = 10;

/// Calls for one batch of [`BATCH_NS`] at `ns` per call.
fn calls_for(ns: f64) -> u64 {
    (BATCH_NS / ns.max(0.1)).clamp(100.0, 10_000_000.0) as u64
}

/// One message's figures.
pub struct Row {
    pub name: &'static str,
    pub bytes: usize,
    pub encode_ns: f64,
    pub decode_ns: f64,
    /// Open MPI's pack and unpack ns, when libopen-pal is installed.
    pub ompi: Option<(f64, f64)>,
}

/// Times every message, ours and Open MPI's in turn (Open MPI's only when
/// libopen-pal is installed).
pub fn run(target_dir: &Path) -> Result<Vec<Row>, String> {
    /// One message's inputs and samples.
    struct Timed {
        name: &'static str,
        msg: Msg,
        bytes: Vec<u8>,
        enc_calls: u64,
        dec_calls: u64,
        theirs: Option<(usize, u64)>,
        samples: [Vec<f64>; 4],
    }
    let mut ompi = Ompi::start(target_dir)?;
    let mut timed = Vec::new();
    for (name, msg) in messages() {
        let mut buf = [0u8; 512];
        let n = encode(&msg, &mut buf)?;
        let bytes = buf[..n].to_vec();
        if !decodes_to(&msg, &bytes) {
            return Err(format!("{name} does not decode to itself"));
        }
        // Batch sizes from a first, untimed batch of each.
        let enc_calls = calls_for(encode_batch(&msg, &mut buf, 10_000));
        let dec_calls = calls_for(decode_batch(&msg, &bytes, 10_000));
        let theirs = match &mut ompi {
            Some(o) => {
                let k = o.index(name)?;
                let (p, u, len) = o.batch(k, 1_000)?;
                if len != n {
                    return Err(format!(
                        "{name}: our encoding is {n} bytes, Open MPI's {len}"
                    ));
                }
                Some((k, calls_for(p.max(u))))
            }
            None => None,
        };
        timed.push(Timed {
            name,
            msg,
            bytes,
            enc_calls,
            dec_calls,
            theirs,
            samples: Default::default(),
        });
    }
    // Each round visits every message, so that a busy spell of the machine
    // touches all of them a little rather than one of them throughout.
    let mut buf = [0u8; 512];
    for _ in 0..ROUNDS {
        for t in &mut timed {
            let [enc, dec, pack, unpack] = &mut t.samples;
            enc.push(encode_batch(&t.msg, &mut buf, t.enc_calls));
            dec.push(decode_batch(&t.msg, &t.bytes, t.dec_calls));
            if let (Some(o), Some((k, calls))) = (&mut ompi, t.theirs) {
                let (p, u, _) = o.batch(k, calls)?;
                pack.push(p);
                unpack.push(u);
            }
        }
    }
    Ok(timed
        .into_iter()
        .map(|t| {
            let [enc, dec, pack, unpack] = t.samples;
            Row {
                name: t.name,
                bytes: t.bytes.len(),
                encode_ns: percentile(enc, PERCENTILE),
                decode_ns: percentile(dec, PERCENTILE),
                ompi: t
                    .theirs
                    .map(|_| (percentile(pack, PERCENTILE), percentile(unpack, PERCENTILE))),
            }
        })
        .collect())
}

/// The BENCHMARKS.md section for `rows`.
pub fn section(rows: &[Row]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "## Codec: snapc against Open MPI's opal_dss\n");
    let _ = writeln!(
        md,
        "snapc encodes into a caller's buffer and decodes borrowing from the input (`Message::emit`, \
         `Message::parse` of the message's channel type; the decoded value is handed whole to `black_box`). \
         Open MPI's figures are what a sender and a receiver do with `opal_dss` for the same message and \
         values (conformance/ompi_bench.c): pack = construct a buffer, one `pack` per field, unload; \
         unpack = construct, load a copy, one `unpack` per field. The two sides take turns, so that both \
         run on the same machine at the same moments: {ROUNDS} rounds of one batch of ours then one of \
         Open MPI's for every message in turn, every batch about {batch_us} µs long (its number of calls set from a \
         first batch); each figure is the {PERCENTILE}th-percentile round (preemption and cache disturbance only ever add time). \
         Both sides produce the same bytes (checked). Goal: at least 20 times faster for every message.\n",
        batch_us = BATCH_NS / 1000.0
    );
    let _ = writeln!(
        md,
        "| message | bytes | snapc encode ns | opal pack ns | ratio | snapc decode ns | opal unpack ns | ratio |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut worst: Option<f64> = None;
    for r in rows {
        let (pack, unpack) = match r.ompi {
            Some((p, u)) => {
                let (rp, ru) = (p / r.encode_ns, u / r.decode_ns);
                worst = Some(worst.map_or(rp.min(ru), |w: f64| w.min(rp).min(ru)));
                (format!("{p:.1} | {rp:.0}x"), format!("{u:.1} | {ru:.0}x"))
            }
            None => ("n/a | n/a".into(), "n/a | n/a".into()),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {pack} | {:.1} | {unpack} |",
            r.name, r.bytes, r.encode_ns, r.decode_ns
        );
    }
    match worst {
        Some(w) => {
            let verdict = if w >= 20.0 { "met" } else { "missed" };
            let _ = writeln!(md, "\nSmallest ratio: {w:.0}x (goal 20x: {verdict}).");
            let below: Vec<String> = rows
                .iter()
                .filter_map(|r| r.ompi.map(|(p, u)| (r, p / r.encode_ns, u / r.decode_ns)))
                .flat_map(|(r, e, d)| [(r.name, "encode", e), (r.name, "decode", d)])
                .filter(|(_, _, x)| *x < 20.0)
                .map(|(name, what, x)| format!("{name} {what} {x:.0}x"))
                .collect();
            if !below.is_empty() {
                let _ = writeln!(
                    md,
                    "Below the goal: {}. These are the messages with strings: a decoded string is a \
                     `&str`, checked by `core::str::from_utf8` (90 to 110 instructions for each of these \
                     short strings, about a third of the whole decode), and an encoded one is searched \
                     for a NUL and copied.",
                    below.join(", ")
                );
            }
            let _ = writeln!(md);
        }
        None => {
            let _ = writeln!(
                md,
                "\nOpen MPI's libopen-pal was not installed: no ratios in this run.\n"
            );
        }
    }
    md
}

/// conformance/ompi_bench.c running in `--serve` mode: one batch per request.
struct Ompi {
    child: Child,
    input: Option<ChildStdin>,
    output: BufReader<ChildStdout>,
    names: Vec<String>,
}

impl Ompi {
    /// Builds and starts ompi_bench; `None` without libopen-pal.
    fn start(target_dir: &Path) -> Result<Option<Self>, String> {
        let found = Command::new("pkg-config")
            .args(["--exists", "orte"])
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            eprintln!(
                "libopen-pal not found (apt-get install libopenmpi-dev pkg-config): Open MPI columns left empty"
            );
            return Ok(None);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let exe = target_dir.join("ompi_bench");
        let flags = Command::new("pkg-config")
            .args(["--cflags", "--libs", "orte"])
            .output()
            .map_err(|e| e.to_string())?;
        let flags = String::from_utf8_lossy(&flags.stdout).into_owned();
        let status = Command::new("cc")
            .args(["-O2", "-o"])
            .arg(&exe)
            .arg(root.join("conformance/ompi_bench.c"))
            .args(flags.split_whitespace())
            .arg("-lopen-pal")
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err("building conformance/ompi_bench.c failed".into());
        }
        let mut child = Command::new(&exe)
            .arg("--serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting ompi_bench: {e}"))?;
        let (Some(input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("ompi_bench without pipes".into());
        };
        let mut output = BufReader::new(output);
        let mut names = Vec::new();
        loop {
            let mut line = String::new();
            match output.read_line(&mut line) {
                Ok(0) | Err(_) => return Err("ompi_bench ended before its message list".into()),
                Ok(_) if line.trim().is_empty() => break,
                Ok(_) => names.push(line.trim_end().to_string()),
            }
        }
        Ok(Some(Self {
            child,
            input: Some(input),
            output,
            names,
        }))
    }

    fn index(&self, name: &str) -> Result<usize, String> {
        self.names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| format!("ompi_bench has no message {name}"))
    }

    /// One batch of `calls` packs and unpacks of message `k`: ns per pack,
    /// ns per unpack, encoded length.
    fn batch(&mut self, k: usize, calls: u64) -> Result<(f64, f64, usize), String> {
        let input = self.input.as_mut().ok_or("ompi_bench closed")?;
        writeln!(input, "{k} {calls}")
            .and_then(|()| input.flush())
            .map_err(|e| format!("ompi_bench: {e}"))?;
        let mut line = String::new();
        if self
            .output
            .read_line(&mut line)
            .map_err(|e| e.to_string())?
            == 0
        {
            return Err("ompi_bench ended".into());
        }
        let bad = || format!("unexpected ompi_bench line {line:?}");
        let c: Vec<&str> = line.trim_end().split('\t').collect();
        match c.as_slice() {
            [p, u, len] => Ok((
                p.parse().map_err(|_| bad())?,
                u.parse().map_err(|_| bad())?,
                len.parse().map_err(|_| bad())?,
            )),
            _ => Err(bad()),
        }
    }
}

impl Drop for Ompi {
    fn drop(&mut self) {
        // The end of its input ends the server.
        drop(self.input.take());
        let _ = self.child.wait();
    }
}
