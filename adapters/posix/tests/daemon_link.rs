//! The application API with a node daemon: the messages of docs/PROTOCOL.md §5 go
//! over the daemon socket, and a daemon that misbehaves or vanishes ends the
//! request with an error, never a hang. A fake daemon plays the other side.
//!
//! One test: the checkpoint signal's handler is process-wide, so the
//! scenarios run in sequence, each with its own `Snapc`.

use snapc_core::app::{CheckpointResult, Wait, WaitFailure as Failure};
use snapc_core::wire::{FromGc, Message, OpEvent, ProcessName, Request, ToDaemon, ToGc};
use snapc_posix::app::{ApiError, Config, Hooks, Snapc, Snapshot};
use snapc_posix::link::{FrameReader, Tag, encode_frame};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Noop;

impl Hooks for Noop {
    fn checkpoint(&mut self, _: &Snapshot) -> CheckpointResult {
        CheckpointResult::Continue
    }

    fn restart(&mut self, dir: &Path) -> Result<(), String> {
        std::fs::read(dir.join("state"))
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// The daemon's end of one connection.
struct Conn {
    stream: UnixStream,
    reader: FrameReader,
}

impl Conn {
    fn frame(&mut self) -> (Tag, Vec<u8>) {
        let mut chunk = [0u8; 256];
        loop {
            if let Some(f) = self.reader.next_frame() {
                return f.unwrap();
            }
            let n = self.stream.read(&mut chunk).unwrap();
            assert!(n > 0, "the rank closed the socket");
            self.reader.push(&chunk[..n]);
        }
    }

    fn send(&mut self, payload: &[u8]) {
        self.stream
            .write_all(&encode_frame(Tag::SnapcFull, payload).unwrap())
            .unwrap();
    }
}

fn config(dir: &Path, socket: PathBuf) -> Config {
    Config {
        pipe_dir: Some(dir.join("pipes")),
        store: dir.join("store"),
        daemon_socket: Some(socket),
        jobid: 7,
        rank: 0,
        request_timeout: Some(Duration::from_millis(300)),
        ..Config::default()
    }
}

/// A fake daemon on `socket` running `script` on the one connection.
fn daemon(
    socket: &Path,
    script: impl FnOnce(Conn) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let listener = UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        script(Conn {
            stream,
            reader: FrameReader::default(),
        });
    })
}

#[test]
fn requests_and_updates_go_through_the_daemon() {
    let t = tempfile::tempdir().unwrap();

    // Restart: the restart hook runs, then LOCAL_UPDATE carries the new pid.
    let snap = t.path().join("snap");
    std::fs::create_dir(&snap).unwrap();
    std::fs::write(snap.join("state"), b"1").unwrap();
    let sock = t.path().join("d1");
    let d = daemon(&sock, |mut s| {
        let (tag, bytes) = s.frame();
        assert_eq!(tag, Tag::Snapc);
        let ToDaemon::LocalUpdate(u) = ToDaemon::parse(&bytes).unwrap() else {
            panic!("not LOCAL_UPDATE")
        };
        assert_eq!(u.name, ProcessName { jobid: 7, vpid: 0 });
        assert_eq!(u.pid, std::process::id() as i32);
    });
    let mut c = config(t.path(), sock);
    c.restart_dir = Some(snap);
    let snapc = Snapc::start(c, Noop).unwrap();
    d.join().unwrap();
    drop(snapc);

    // INIT is sent and needs no answer; FIN waits for FIN_ACK.
    let sock = t.path().join("d2");
    let d = daemon(&sock, |mut s| {
        for expected in [OpEvent::Init, OpEvent::Fin] {
            let (tag, bytes) = s.frame();
            assert_eq!(tag, Tag::SnapcFull);
            let ToGc::RequestOp(r) = ToGc::parse(&bytes).unwrap() else {
                panic!("not REQUEST_OP")
            };
            assert_eq!((r.jobid, r.request.op_event()), (7, expected));
        }
        let mut ack = [0u8; 32];
        let n = FromGc::FinAck.emit(&mut ack).unwrap();
        s.send(&ack[..n]);
    });
    let mut snapc = Snapc::start(config(t.path(), sock), Noop).unwrap();
    let init = snapc.request(Request::Init).unwrap();
    assert_eq!((init.op, init.error), (OpEvent::Init, None));
    let fin = snapc.request(Request::Fin).unwrap();
    assert_eq!((fin.op, fin.error), (OpEvent::Fin, None));
    d.join().unwrap();
    drop(snapc);

    // A daemon that never answers: the request ends at its deadline.
    let sock = t.path().join("d3");
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let d = daemon(&sock, move |mut s| {
        let _ = s.frame();
        let _ = rx.recv_timeout(Duration::from_secs(10));
    });
    let mut snapc = Snapc::start(config(t.path(), sock), Noop).unwrap();
    let started = Instant::now();
    let fin = snapc.request(Request::Fin).unwrap();
    assert_eq!(
        fin.error.map(|e| (e.wait, e.failure)),
        Some((Wait::FinAck, Failure::Deadline))
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    tx.send(()).unwrap();
    d.join().unwrap();
    drop(snapc);

    // A daemon that goes away: the request fails at once, and the process
    // goes on standalone.
    let sock = t.path().join("d4");
    let d = daemon(&sock, |mut s| {
        let _ = s.frame();
    });
    let mut c = config(t.path(), sock);
    c.request_timeout = Some(Duration::from_secs(30));
    let mut snapc = Snapc::start(c, Noop).unwrap();
    let started = Instant::now();
    let fin = snapc.request(Request::Fin).unwrap();
    d.join().unwrap();
    assert_eq!(fin.error.map(|e| e.failure), Some(Failure::PeerGone));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not the 30 s deadline"
    );
    assert!(matches!(
        snapc.request(Request::Init),
        Err(ApiError::NoCoordinator)
    ));
    drop(snapc);

    // A garbage answer ends the request as malformed.
    let sock = t.path().join("d5");
    let d = daemon(&sock, |mut s| {
        let _ = s.frame();
        s.send(&[0, 0, 0, 1, 99]);
    });
    let mut snapc = Snapc::start(config(t.path(), sock), Noop).unwrap();
    let fin = snapc.request(Request::Fin).unwrap();
    assert!(matches!(
        fin.error.map(|e| e.failure),
        Some(Failure::Malformed(_))
    ));
    d.join().unwrap();
    drop(snapc);

    // No daemon listening: start-up fails with a clear error.
    let err = Snapc::start(config(t.path(), t.path().join("nobody")), Noop)
        .err()
        .unwrap();
    assert!(err.to_string().contains("nobody"), "{err}");
}
