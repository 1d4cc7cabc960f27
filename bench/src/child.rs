//! The processes the bench starts: its own executable run again in a role
//! (`snapc-bench __app ...`, `snapc-bench __floor ...`), and the handle the
//! bench keeps on each.
//!
//! Both roles compute in short slices and sleep between them with
//! `clock_nanosleep`, which the checkpoint signal interrupts (it is never
//! restarted after a handler, whatever SA_RESTART says), so an idle process
//! answers a signal at once without spinning. After each handshake a child
//! writes one byte to stdout (`c` done, `e` failed), so that the bench starts
//! the next one only when the child is ready for it; the bench never times
//! that byte.

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::stat::Mode;
use nix::unistd::{mkfifo, read, write};
use snapc_core::app::{CheckpointResult, Outcome};
use snapc_posix::app::{Config, Hooks, Snapc, Snapshot};
use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Steps of the computation between two safe points (a few microseconds).
const SLICE: u64 = 2_000;

/// The longest any child lives: every child ends by itself, even if the
/// bench dies without killing it.
pub const CHILD_LIFETIME: Duration = Duration::from_secs(600);

/// A no-op checkpoint: the hooks save nothing.
struct NoOp;

impl Hooks for NoOp {
    fn checkpoint(&mut self, _: &Snapshot) -> CheckpointResult {
        CheckpointResult::Continue
    }

    fn restart(&mut self, _: &Path) -> Result<(), String> {
        Ok(())
    }
}

/// The computation both roles run: counter's checksum fold.
#[derive(Default)]
struct Work {
    steps: u64,
    checksum: u64,
}

impl Work {
    fn slice(&mut self) {
        for _ in 0..SLICE {
            self.steps += 1;
            self.checksum =
                self.checksum.rotate_left(5) ^ self.steps.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
        black_box(self.checksum);
    }
}

/// Sleeps `d`, or less if a signal arrives. The checkpoint signal is
/// blocked outside these naps ([`block_checkpoint_signal`]) and let in only
/// for their length (`ppoll` with an empty mask): one sent while the
/// process works is delivered as the nap begins and ends it at once,
/// instead of landing just before the nap and waiting out its length.
pub fn nap(d: Duration) {
    let ts = nix::sys::time::TimeSpec::from_duration(d);
    let _ = nix::poll::ppoll(&mut [], Some(ts), Some(SigSet::empty()));
}

/// Blocks SIGUSR1 except during [`nap`].
pub fn block_checkpoint_signal() -> Result<(), String> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGUSR1);
    nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|e| format!("sigprocmask: {e}"))
}

/// Writes one byte to stdout (the bench reads it).
pub fn say(b: u8) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&[b]);
    let _ = out.flush();
}

/// Writes one byte to the FIFO at `path` (the bench holds its other end).
pub fn report(path: &Path, b: u8) -> Result<(), String> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(&[b]).map_err(|e| e.to_string())
}

/// A role's arguments.
pub struct Args(pub Vec<String>);

impl Args {
    fn value(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
    }

    fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }

    /// The path after `name`.
    pub fn path(&self, name: &str) -> Result<PathBuf, String> {
        self.value(name)
            .map(PathBuf::from)
            .ok_or_else(|| format!("{name} missing"))
    }

    /// The number after `name`.
    pub fn num<T: std::str::FromStr>(&self, name: &str) -> Result<T, String> {
        self.value(name)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{name}: a number is needed"))
    }

    fn nap(&self) -> Duration {
        Duration::from_micros(
            self.value("--nap-us")
                .and_then(|v| v.parse().ok())
                .unwrap_or(10_000),
        )
    }
}

/// Runs a child role if `args` names one; `None` for the bench itself.
pub fn dispatch(args: &[String]) -> Option<ExitCode> {
    let role = args.first()?;
    let rest = Args(args.get(1..).unwrap_or_default().to_vec());
    let result = match role.as_str() {
        "__app" => app(&rest),
        "__floor" => floor(&rest),
        "__busy" => busy(),
        "__rank" => crate::datapath::rank(&rest),
        "__writer" => crate::datapath::writer(&rest),
        "__reader" => crate::datapath::reader(&rest),
        "__daemon" => crate::datapath::daemon(&rest),
        _ => return None,
    };
    Some(match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("snapc-bench {role}: {e}");
            ExitCode::FAILURE
        }
    })
}

/// `__app --pipe-dir P --store S [--nap-us U] [--no-snapc]`: the bench's
/// application. With snapc: `Snapc::start` with no-op hooks, `progress()`
/// after every slice. With `--no-snapc`: the same computation and naps,
/// nothing else. Writes `r` once started.
fn app(args: &Args) -> Result<(), String> {
    let nap_for = args.nap();
    // Before snapc starts (any thread it starts keeps the mask).
    block_checkpoint_signal()?;
    let mut snapc = if args.flag("--no-snapc") {
        None
    } else {
        let config = Config {
            pipe_dir: Some(args.path("--pipe-dir")?),
            store: args.path("--store")?,
            ..Config::default()
        };
        Some(Snapc::start(config, NoOp).map_err(|e| e.to_string())?)
    };
    let mut work = Work::default();
    say(b'r');
    let end = Instant::now() + CHILD_LIFETIME;
    while Instant::now() < end {
        work.slice();
        if let Some(outcome) = snapc.as_mut().and_then(Snapc::progress) {
            let ok = matches!(&outcome, Outcome::Handshake(r) if r.error.is_none());
            say(if ok { b'c' } else { b'e' });
        }
        nap(nap_for);
    }
    Ok(())
}

static FLOOR_SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn floor_signal(_: nix::libc::c_int) {
    FLOOR_SIGNALLED.store(true, Ordering::Release);
}

/// Size of each frame of the handshake, in order: options and handle (LC to
/// app), response (app to LC), go-ahead (LC), final state (app), release (LC).
pub const FRAMES: [usize; 5] = [28, 4, 4, 4, 4];

/// The floor's FIFO names for handshake `n` of `pid`.
pub fn floor_names(dir: &Path, pid: u32, n: u32) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("floor-{pid}-{n}-r")),
        dir.join(format!("floor-{pid}-{n}-w")),
    )
}

/// First pause between two attempts to open a FIFO whose other end is not
/// open yet; doubled at each retry up to [`OPEN_PAUSE_MAX`]. The same
/// backoff as snapc's coordinator (`snapc_posix::fifo`).
const OPEN_PAUSE_MIN: Duration = Duration::from_micros(2);
const OPEN_PAUSE_MAX: Duration = Duration::from_millis(1);

/// Opens `path` (non-blocking, close-on-exec), retrying with snapc's
/// backoff while it has no reader (ENXIO), or, given `cue`, waiting for
/// `cue` to become readable (at most 1 ms at a time) as snapc's
/// application side does.
pub fn open_waiting(
    path: &Path,
    flags: OFlag,
    deadline: Instant,
    mut cue: Option<&OwnedFd>,
) -> Result<OwnedFd, String> {
    let flags = flags | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let mut pause = OPEN_PAUSE_MIN;
    loop {
        match open(path, flags, Mode::empty()) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENXIO | Errno::EINTR) if Instant::now() < deadline => match cue {
                Some(c) => {
                    let mut fds = [PollFd::new(c.as_fd(), PollFlags::POLLIN)];
                    if let Ok(1) = poll(&mut fds, PollTimeout::from(1u8)) {
                        cue = None;
                    }
                }
                None => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(OPEN_PAUSE_MAX);
                }
            },
            Err(e) => return Err(format!("open {}: {e}", path.display())),
        }
    }
}

/// Reads exactly `buf.len()` bytes from a non-blocking fd before `deadline`,
/// sleeping in `poll` until bytes come (a FIFO whose writer has not opened
/// yet reads as end of file: poll first, as snapc does).
pub fn read_exact(fd: &OwnedFd, buf: &mut [u8], deadline: Instant) -> Result<(), String> {
    let mut done = 0;
    while done < buf.len() {
        let ms = deadline
            .saturating_duration_since(Instant::now())
            .as_millis();
        if ms == 0 {
            return Err("read timed out".into());
        }
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::from(u16::try_from(ms).unwrap_or(u16::MAX)),
        ) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        match read(fd, &mut buf[done..]) {
            Ok(0) => return Err("peer closed".into()),
            Ok(n) => done += n,
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    Ok(())
}

/// Writes one frame (smaller than PIPE_BUF: all or nothing) to a FIFO whose
/// reader is open.
pub fn write_frame(fd: &OwnedFd, bytes: &[u8]) -> Result<(), String> {
    match write(fd, bytes) {
        Ok(n) if n == bytes.len() => Ok(()),
        Ok(n) => Err(format!("short write {n}")),
        Err(e) => Err(format!("write: {e}")),
    }
}

/// `__floor --dir D [--nap-us U]`: the floor's process side. The same
/// computation and naps as the app; on the signal it does what snapc's
/// application side does with its FIFOs and nothing else: creates both,
/// opens the one it reads read-write and the one it writes write-only once
/// the options arrive (the same cue and retries), reads and writes the
/// frames, closes both and removes both names.
fn floor(args: &Args) -> Result<(), String> {
    let dir = args.path("--dir")?;
    let nap_for = args.nap();
    let action = SigAction::new(
        SigHandler::Handler(floor_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic.
    unsafe { sigaction(Signal::SIGUSR1, &action) }.map_err(|e| e.to_string())?;
    block_checkpoint_signal()?;
    let pid = std::process::id();
    let mut work = Work::default();
    let mut n = 0;
    say(b'r');
    let end = Instant::now() + CHILD_LIFETIME;
    while Instant::now() < end {
        work.slice();
        if FLOOR_SIGNALLED.swap(false, Ordering::AcqRel) {
            let deadline = Instant::now() + Duration::from_secs(10);
            let ok = floor_once(&dir, pid, n, deadline).is_ok();
            n += 1;
            say(if ok { b'c' } else { b'e' });
        }
        nap(nap_for);
    }
    Ok(())
}

fn floor_once(dir: &Path, pid: u32, n: u32, deadline: Instant) -> Result<(), String> {
    let (r, w) = floor_names(dir, pid, n);
    let mode = Mode::S_IRUSR | Mode::S_IWUSR;
    let result = (|| {
        mkfifo(&r, mode).map_err(|e| e.to_string())?;
        mkfifo(&w, mode).map_err(|e| e.to_string())?;
        let rx = open_waiting(&r, OFlag::O_RDWR, deadline, None)?;
        let tx = open_waiting(&w, OFlag::O_WRONLY, deadline, Some(&rx))?;
        let mut buf = [0u8; 28];
        for (i, len) in FRAMES.iter().enumerate() {
            if i % 2 == 0 {
                read_exact(&rx, &mut buf[..*len], deadline)?;
            } else {
                write_frame(&tx, &buf[..*len])?;
            }
        }
        Ok(())
    })();
    let _ = nix::unistd::unlink(&r);
    let _ = nix::unistd::unlink(&w);
    result
}

/// `__busy`: one CPU-bound process of the loaded runs: computes without
/// pause until killed (or [`CHILD_LIFETIME`] passes).
fn busy() -> Result<(), String> {
    let mut work = Work::default();
    say(b'r');
    let end = Instant::now() + CHILD_LIFETIME;
    while Instant::now() < end {
        for _ in 0..1000 {
            work.slice();
        }
    }
    Ok(())
}

/// A child the bench started; killed and reaped when dropped.
pub struct Proc {
    child: Child,
    out: ChildStdout,
}

impl Proc {
    /// Starts this executable in `role` with `args`, and waits (up to 10 s)
    /// for it to say it is ready.
    pub fn start(role: &str, args: &[&str]) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .arg(role)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env_remove("RUST_LOG")
            .spawn()
            .map_err(|e| format!("starting {role}: {e}"))?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let mut p = Self { child, out };
        match p.next_byte(Instant::now() + Duration::from_secs(10))? {
            b'r' => Ok(p),
            b => Err(format!("{role}: said {:?} instead of ready", b as char)),
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn alive(&self) -> bool {
        // Not reaped here: /proc says whether it exited.
        snapc_posix::target::state(self.pid()) != snapc_posix::target::State::Gone
            && snapc_posix::target::state(self.pid()) != snapc_posix::target::State::Exited
    }

    /// The next byte the child writes, before `deadline`.
    pub fn next_byte(&mut self, deadline: Instant) -> Result<u8, String> {
        let ms = deadline
            .saturating_duration_since(Instant::now())
            .as_millis();
        let mut fds = [PollFd::new(self.out.as_fd(), PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::from(u16::try_from(ms).unwrap_or(u16::MAX)),
        ) {
            Ok(1) => {}
            Ok(_) => return Err(format!("pid {}: no answer in time", self.pid())),
            Err(e) => return Err(format!("poll: {e}")),
        }
        let mut b = [0u8; 1];
        match self.out.read(&mut b) {
            Ok(1) => Ok(b[0]),
            Ok(_) => Err(format!("pid {} exited", self.pid())),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Waits for the child's report of a handshake: Ok if it completed.
    pub fn handshake_done(&mut self, deadline: Instant) -> Result<(), String> {
        match self.next_byte(deadline)? {
            b'c' => Ok(()),
            b => Err(format!(
                "pid {}: handshake ended {:?}",
                self.pid(),
                b as char
            )),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first: a child run under a profiler writes its profile
        // as it ends; SIGKILL if it is still there a moment later.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
