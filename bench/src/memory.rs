//! Resident size of the bench's application with snapc started and of the
//! same computation without it.

use crate::child::Proc;
use snapc_posix::fifo::PipeDir;
use snapc_runtime::direct::{self, DirectRequest};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// VmRSS and VmHWM of `pid`, in kB.
fn resident(pid: u32) -> Result<(u64, u64), String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or_else(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// Lets a freshly started child run a while before it is measured.
const SETTLE: Duration = Duration::from_millis(300);

/// Measures and writes the resident-size table.
pub fn section(md: &mut String) -> Result<(), String> {
    let t = tempfile::tempdir_in("/dev/shm").map_err(|e| e.to_string())?;
    let pipes = PipeDir::open(t.path().join("pipes")).map_err(|e| e.to_string())?;
    let pipes_s = pipes.path().to_string_lossy().into_owned();
    let store = t.path().join("store").to_string_lossy().into_owned();

    let plain = Proc::start("__app", &["--no-snapc"])?;
    let mut with = Proc::start("__app", &["--pipe-dir", &pipes_s, "--store", &store])?;
    std::thread::sleep(SETTLE);
    let plain_kb = resident(plain.pid())?;
    let started_kb = resident(with.pid())?;
    let mut checkpointed = 0;
    for handle in 1..=3 {
        let req = DirectRequest::new(vec![with.pid()], pipes.clone(), handle);
        let results = direct::checkpoint(req).map_err(|e| e.to_string())?;
        if results.iter().all(|r| r.completed()) {
            checkpointed += 1;
        }
        with.handshake_done(Instant::now() + Duration::from_secs(10))?;
    }
    let after_kb = resident(with.pid())?;
    let _ = writeln!(
        md,
        "### Resident size\n\n\
         The bench's application (`snapc-bench __app`, the computation of the `counter` example in slices with naps) \
         run twice from the same executable: with `--no-snapc` (the computation only) and with `Snapc::start` and \
         `progress()` at every safe point; the second measured again after {checkpointed} no-op checkpoints. VmRSS and \
         VmHWM from /proc/<pid>/status, {} ms after start. Both rows map the same executable, so the difference is \
         what snapc costs at run time (its machine, the signal handler, the checkpoint's buffers and files), not \
         the code linked in.\n\n\
         | process | VmRSS kB | VmHWM kB |\n|---|---:|---:|\n\
         | without snapc | {} | {} |\n\
         | with snapc started | {} | {} |\n\
         | with snapc, after {checkpointed} checkpoints | {} | {} |\n\n\
         snapc adds {} kB resident at start and {} kB at its high-water mark after checkpoints.\n",
        SETTLE.as_millis(),
        plain_kb.0,
        plain_kb.1,
        started_kb.0,
        started_kb.1,
        after_kb.0,
        after_kb.1,
        started_kb.0 as i64 - plain_kb.0 as i64,
        after_kb.1 as i64 - plain_kb.1 as i64,
    );
    Ok(())
}
