//! Encode and decode of every message kind, against Open MPI's `opal_dss`
//! packing the same messages (conformance/ompi_bench.c) in the same run.

use snapc_core::wire::{
    CkptState, CrState, FromGc, JobDetail, JobOptions, JobState, List, LocalFinish, LocalUpdate,
    Message, MigrateEntry, OpEvent, OpResponse, OrtedState, ProcessName, Request, RequestOp,
    StateCode, ToDaemon, ToGc,
};
use std::hint::black_box;
use std::path::Path;
use std::process::Command;
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
enum Msg {
    ToGc(ToGc<'static>),
    FromGc(FromGc<'static>),
    ToDaemon(ToDaemon),
}

/// The messages, named as ompi_bench.c names them, with the same values.
fn messages() -> Vec<(&'static str, Msg)> {
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
    let mut samples: Vec<f64> = (0..batches)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn encode(m: &Msg, buf: &mut [u8]) -> usize {
    match m {
        Msg::ToGc(x) => x.emit(buf),
        Msg::FromGc(x) => x.emit(buf),
        Msg::ToDaemon(x) => x.emit(buf),
    }
    .unwrap_or(0)
}

fn decode(m: &Msg, bytes: &[u8]) -> bool {
    match m {
        Msg::ToGc(_) => ToGc::parse(bytes).is_ok(),
        Msg::FromGc(_) => FromGc::parse(bytes).is_ok(),
        Msg::ToDaemon(_) => ToDaemon::parse(bytes).is_ok(),
    }
}

/// One message's figures.
pub struct Row {
    pub name: &'static str,
    pub bytes: usize,
    pub encode_ns: f64,
    pub decode_ns: f64,
    pub ompi: Option<(f64, f64, usize)>,
}

/// Runs ours, then Open MPI's (when libopen-pal is installed).
pub fn run(target_dir: &Path) -> Result<Vec<Row>, String> {
    let ompi = ompi(target_dir)?;
    let mut rows = Vec::new();
    for (name, msg) in messages() {
        let mut buf = [0u8; 512];
        let n = encode(&msg, &mut buf);
        let bytes = buf[..n].to_vec();
        assert!(decode(&msg, &bytes), "{name} does not decode");
        let encode_ns = median_ns(9, 200_000, || {
            black_box(encode(black_box(&msg), black_box(&mut buf)));
        });
        let decode_ns = median_ns(9, 200_000, || {
            black_box(decode(black_box(&msg), black_box(&bytes)));
        });
        let theirs = ompi
            .iter()
            .find(|(n, ..)| n == name)
            .map(|(_, p, u, l)| (*p, *u, *l));
        if let Some((_, _, len)) = theirs {
            assert_eq!(
                len, n,
                "{name}: our encoding is {n} bytes, Open MPI's {len}"
            );
        }
        rows.push(Row {
            name,
            bytes: n,
            encode_ns,
            decode_ns,
            ompi: theirs,
        });
    }
    Ok(rows)
}

type OmpiRow = (String, f64, f64, usize);

/// Builds and runs conformance/ompi_bench.c; empty without libopen-pal.
fn ompi(target_dir: &Path) -> Result<Vec<OmpiRow>, String> {
    let found = Command::new("pkg-config")
        .args(["--exists", "orte"])
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!(
            "libopen-pal not found (apt-get install libopenmpi-dev pkg-config): Open MPI columns left empty"
        );
        return Ok(Vec::new());
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
    let out = Command::new(&exe)
        .arg("20000")
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "ompi_bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            match c.as_slice() {
                [name, p, u, len] => Ok((
                    name.to_string(),
                    p.parse().map_err(|_| l.to_string())?,
                    u.parse().map_err(|_| l.to_string())?,
                    len.parse().map_err(|_| l.to_string())?,
                )),
                _ => Err(format!("unexpected ompi_bench line {l:?}")),
            }
        })
        .collect()
}
