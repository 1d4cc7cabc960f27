//! Early writeback of a snapshot while the checkpoint hook writes it.
//!
//! snapc makes what the hooks wrote durable at its sync step (an fsync of
//! every file), which waits for the whole snapshot to reach the disk after
//! the hook returned. For a large snapshot the disk is idle while the hook
//! fills the page cache, then the application waits for all of it. A
//! [`Flusher`] starts the writeback of the snapshot's files while the hook
//! is still writing (`sync_file_range(SYNC_FILE_RANGE_WRITE)` every
//! [`PERIOD`], from [`DELAY`] into the hook), so that the sync step finds
//! most of it written. It changes nothing the sync step does: it only
//! starts, early, writes the sync step would start itself.
//!
//! One thread per process, started at the first checkpoint and parked
//! between checkpoints; a hook that returns within [`DELAY`] never meets
//! it. It blocks every signal (the checkpoint signal is the application's
//! thread's business), reaches the files through the snapshot directory's
//! descriptor without following symlinks, and starts writeback of regular
//! files only.

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

/// How long a hook runs before its snapshot's writeback starts.
pub const DELAY: Duration = Duration::from_millis(10);
/// How often the writeback is started again while the hook runs.
pub const PERIOD: Duration = Duration::from_millis(25);
/// The most files one pass looks at (the sync step does the rest).
const MAX_FILES: usize = 4096;
/// How deep one pass goes into subdirectories.
const MAX_DEPTH: u32 = 8;

#[derive(Default)]
struct State {
    /// The snapshot directory being written (the application's descriptor,
    /// valid until [`Flusher::end`] returns), and which checkpoint.
    dir: Option<(RawFd, u64)>,
    generation: u64,
    quit: bool,
}

type Shared = Arc<(Mutex<State>, Condvar)>;

/// The early-writeback thread of a process (see the module's documentation).
#[derive(Default)]
pub struct Flusher {
    shared: Shared,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    /// The hook is about to write into `dir`: its files' writeback starts
    /// [`DELAY`] from now, until the returned guard is dropped (`dir`
    /// outlives it).
    pub fn begin<'a>(&'a mut self, dir: BorrowedFd<'a>) -> Active<'a> {
        self.start(dir);
        Active(self)
    }

    fn start(&mut self, dir: BorrowedFd<'_>) {
        if self.thread.is_none() {
            let shared = Arc::clone(&self.shared);
            match std::thread::Builder::new()
                .name("snapc-flush".into())
                .spawn(move || run(&shared))
            {
                Ok(t) => self.thread = Some(t),
                Err(e) => {
                    log::debug!("no early writeback: {e}");
                    return;
                }
            }
        }
        let (lock, wake) = &*self.shared;
        let mut st = lock.lock().unwrap_or_else(PoisonError::into_inner);
        st.generation += 1;
        st.dir = Some((dir.as_raw_fd(), st.generation));
        wake.notify_one();
    }

    /// The hook returned: no pass starts after this returns (one under way
    /// works on a descriptor of its own).
    fn end(&mut self) {
        let (lock, _) = &*self.shared;
        lock.lock().unwrap_or_else(PoisonError::into_inner).dir = None;
    }
}

/// A snapshot being written back early; ends when dropped (also when the
/// hook unwinds), before its directory may be closed.
pub struct Active<'a>(&'a mut Flusher);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.end();
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        let (lock, wake) = &*self.shared;
        {
            let mut st = lock.lock().unwrap_or_else(PoisonError::into_inner);
            st.quit = true;
            st.dir = None;
        }
        wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: &Shared) {
    // Every signal goes to the application's threads.
    let _ = nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_BLOCK,
        Some(&nix::sys::signal::SigSet::all()),
        None,
    );
    let (lock, wake) = &**shared;
    let mut st = lock.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        while st.dir.is_none() && !st.quit {
            st = wake.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        if st.quit {
            return;
        }
        let Some((_, generation)) = st.dir else {
            continue;
        };
        // A hook that returns within the delay is never met.
        let mut wait = DELAY;
        loop {
            st = wake
                .wait_timeout(st, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            let fd = match st.dir {
                Some((fd, g)) if g == generation && !st.quit => fd,
                _ => break,
            };
            // The application keeps `fd` open until `end`, which waits for
            // this lock: a descriptor of our own outlives it.
            // SAFETY: `fd` is open (see above) for the length of this call.
            let own = nix::unistd::dup(unsafe { BorrowedFd::borrow_raw(fd) });
            drop(st);
            if let Ok(own) = own {
                let mut budget = MAX_FILES;
                write_back(own.as_fd(), 0, &mut budget);
            }
            st = lock.lock().unwrap_or_else(PoisonError::into_inner);
            wait = PERIOD;
        }
    }
}

/// Starts the writeback of every regular file under `dir`.
fn write_back(dir: BorrowedFd<'_>, depth: u32, budget: &mut usize) {
    use rustix::fs::FileType;
    let Ok(own) = openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    let Ok(mut entries) = rustix::fs::Dir::new(own) else {
        return;
    };
    while let Some(Ok(entry)) = entries.read() {
        if *budget == 0 {
            return;
        }
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        match entry.file_type() {
            FileType::RegularFile => {
                *budget -= 1;
                if let Ok(f) = openat(dir, name, flags, Mode::empty()) {
                    start_writeback(&f);
                }
            }
            FileType::Directory if depth < MAX_DEPTH => {
                if let Ok(d) = openat(dir, name, flags | OFlag::O_DIRECTORY, Mode::empty()) {
                    write_back(d.as_fd(), depth + 1, budget);
                }
            }
            _ => {}
        }
    }
}

fn start_writeback(f: &OwnedFd) {
    // SAFETY: a plain system call on an open descriptor; no memory is passed.
    unsafe {
        nix::libc::sync_file_range(f.as_raw_fd(), 0, 0, nix::libc::SYNC_FILE_RANGE_WRITE);
    }
}
