//! The ranks' socket (admission by SO_PEERCRED, framed messages) and the
//! control socket's connections.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConnKind {
    Rank(u32),
    Control,
    /// A process on the ranks' socket of a job whose ranks join; its hello
    /// is awaited ([`super::admission`]).
    Joining {
        pid: u32,
    },
}

pub(super) struct Conn {
    pub(super) stream: UnixStream,
    pub(super) kind: ConnKind,
    pub(super) frames: FrameReader,
    pub(super) line: Vec<u8>,
    /// When it was accepted.
    pub(super) since: Instant,
    /// A control connection sent its request line.
    pub(super) requested: bool,
}

/// The most control connections at once (fewer when the file limit leaves
/// less room beside the ranks, see [`Daemon::control_cap`]); past it the
/// oldest that has not sent its request yet makes room (or the newcomer is
/// refused).
pub(super) const MAX_CONTROL: usize = 32;

/// How long a control connection may take to send its request line.
pub(super) const CONTROL_LINE_DEADLINE: Duration = Duration::from_secs(5);

/// How long the listeners rest after the daemon ran out of descriptors.
pub(super) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What an `accept` gave.
enum Accepted {
    Stream(UnixStream),
    /// Nothing (more) to accept now, or the listener rests.
    Done,
}

impl Daemon {
    pub(super) fn peer(&mut self, stream: &UnixStream) -> Option<(u32, u32)> {
        match getsockopt(stream, PeerCredentials) {
            Ok(c) => Some((u32::try_from(c.pid()).unwrap_or(0), c.uid())),
            Err(e) => {
                self.warn_limited("peercred", format_args!("SO_PEERCRED: {e}"));
                None
            }
        }
    }

    /// Logs a warning a peer can cause at will, a few per window
    /// ([`crate::logging::Limiter`]).
    pub(super) fn warn_limited(&mut self, key: &'static str, msg: std::fmt::Arguments<'_>) {
        self.limits
            .entry(key)
            .or_default()
            .log(log::Level::Warn, msg);
    }

    pub(super) fn add_conn(&mut self, stream: UnixStream, kind: ConnKind) -> u64 {
        let id = self.next_conn;
        self.next_conn += 1;
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        self.conns.insert(
            id,
            Conn {
                stream,
                kind,
                frames: FrameReader::default(),
                line: Vec::new(),
                since: Instant::now(),
                requested: false,
            },
        );
        id
    }

    /// The next connection on `rank` (else the control) listener. Out of
    /// descriptors (EMFILE, ENFILE), the reserve descriptor is given up to
    /// take the waiting connection and close it at once (so that poll does
    /// not report it again and again), the listeners rest for
    /// [`ACCEPT_BACKOFF`], and it is logged (a few times per window).
    fn accept_one(&mut self, rank: bool) -> Accepted {
        let listener = if rank {
            &self.rank_listener
        } else {
            &self.ctl_listener
        };
        match listener.accept() {
            Ok((stream, _)) => Accepted::Stream(stream),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Accepted::Done,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Accepted::Done,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(nix::libc::EMFILE | nix::libc::ENFILE)
                ) =>
            {
                // An idle control connection makes room first (the
                // newcomer may be the user's `snapc status`).
                if self.evict_idle_control() {
                    return self.accept_one(rank);
                }
                let listener = if rank {
                    &self.rank_listener
                } else {
                    &self.ctl_listener
                };
                self.reserve = None;
                if let Ok((stream, _)) = listener.accept() {
                    drop(stream);
                }
                self.reserve = File::open("/dev/null").ok();
                self.accept_rest_until = Some(Instant::now() + ACCEPT_BACKOFF);
                let which = if rank { "ranks'" } else { "control" };
                self.warn_limited(
                    "emfile",
                    format_args!(
                        "out of file descriptors: a connection to the {which} socket was closed ({e}); \
                         the limit is {} (ulimit -n)",
                        crate::fds::limit()
                    ),
                );
                Accepted::Done
            }
            Err(e) => {
                self.warn_limited("accept", format_args!("accept: {e}"));
                Accepted::Done
            }
        }
    }

    pub(super) fn accept_ranks(&mut self) {
        while let Accepted::Stream(stream) = self.accept_one(true) {
            let _ = stream.set_nonblocking(false);
            let Some((pid, uid)) = self.peer(&stream) else {
                continue;
            };
            if self.opts.launcher {
                if uid == self.euid {
                    self.accept_joining(stream, pid);
                } else {
                    self.refused(pid, &format!("uid {uid} is not this job's user"));
                }
                continue;
            }
            let rank = self
                .ranks
                .iter()
                .position(|r| r.pid == pid && r.state == RankState::Running && r.conn.is_none());
            match rank {
                Some(rank) if uid == self.euid => {
                    let id = self.add_conn(stream, ConnKind::Rank(rank as u32));
                    if let Some(r) = self.ranks.get_mut(rank) {
                        r.conn = Some(id);
                    }
                    self.maybe_init();
                }
                _ => {
                    let job = self.opts.job.clone();
                    self.warn_limited(
                        "refused",
                        format_args!(
                            "refused a connection from pid {pid} (uid {uid}): not a rank of job {job}"
                        ),
                    );
                }
            }
        }
    }

    pub(super) fn maybe_init(&mut self) {
        if self.initialized || self.ranks.iter().any(|r| r.conn.is_none()) {
            return;
        }
        self.initialized = true;
        let init = RequestOp {
            jobid: self.jobid,
            request: Request::Init,
        };
        // Rank 0's INIT, sent for the job once every rank is there.
        let mut buf: MessageBuf = [0; MAX_MESSAGE_LEN];
        let taken = init
            .emit(&mut buf)
            .map_err(|e| e.to_string())
            .and_then(|n| {
                self.gc
                    .handle_rank_message(self.io.now(), 0, &buf[..n])
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = taken {
            log::warn!("INIT: {e}");
        }
        let how = if self.opts.launcher {
            "joined"
        } else {
            "connected"
        };
        self.log(format!("all {} ranks {how}", self.opts.nranks));
    }

    pub(super) fn accept_controls(&mut self) {
        while let Accepted::Stream(stream) = self.accept_one(false) {
            // Never blocks the loop: a client that does not read its
            // answers is dropped instead.
            let _ = stream.set_nonblocking(true);
            match self.peer(&stream) {
                Some((_, uid)) if uid == self.euid => {
                    if self.control_count() >= self.control_cap() && !self.evict_idle_control() {
                        let mut s = &stream;
                        let _ = s.write_all(
                            b"{\"event\":\"error\",\"message\":\"too many control connections\"}\n",
                        );
                        self.warn_limited(
                            "control-cap",
                            format_args!(
                                "refused a control connection: {} are open and busy",
                                self.control_cap()
                            ),
                        );
                        continue;
                    }
                    self.add_conn(stream, ConnKind::Control);
                }
                Some((pid, uid)) => self.warn_limited(
                    "refused",
                    format_args!("refused a control connection from pid {pid} (uid {uid})"),
                ),
                None => {}
            }
        }
    }

    /// How many control connections fit beside the ranks in the file
    /// limit in force now, between [`super::MIN_CONTROL`] and [`MAX_CONTROL`].
    fn control_cap(&self) -> usize {
        let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(crate::fds::limit(), |(soft, _)| soft);
        let room = limit.saturating_sub(crate::fds::needed(self.opts.nranks, 0));
        usize::try_from(room)
            .unwrap_or(MAX_CONTROL)
            .clamp(super::MIN_CONTROL, MAX_CONTROL)
    }

    fn control_count(&self) -> usize {
        self.conns
            .values()
            .filter(|c| matches!(c.kind, ConnKind::Control))
            .count()
    }

    /// Drops the oldest control connection that has not sent its request;
    /// whether there was one.
    fn evict_idle_control(&mut self) -> bool {
        let oldest = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.kind, ConnKind::Control) && !c.requested)
            .min_by_key(|(_, c)| c.since)
            .map(|(id, _)| *id);
        match oldest {
            Some(id) => {
                self.drop_conn(id);
                true
            }
            None => false,
        }
    }

    /// Drops the control connections that did not send their request line
    /// in time, and refuses the processes that did not say hello in time
    /// on the ranks' socket; the earliest such deadline still to come.
    pub(super) fn expire_controls(&mut self) -> Option<Instant> {
        let now = Instant::now();
        let mut expired = Vec::new();
        let mut silent = Vec::new();
        let mut next: Option<Instant> = None;
        for (id, c) in &self.conns {
            let at = match c.kind {
                ConnKind::Control if !c.requested => c.since + CONTROL_LINE_DEADLINE,
                ConnKind::Joining { .. } => c.since + super::admission::JOIN_DEADLINE,
                _ => continue,
            };
            if at > now {
                next = Some(next.map_or(at, |n| n.min(at)));
            } else if let ConnKind::Joining { pid } = c.kind {
                silent.push((*id, pid));
            } else {
                expired.push(*id);
            }
        }
        for (id, pid) in silent {
            let within = super::admission::JOIN_DEADLINE;
            self.refuse(id, pid, format!("it sent no hello within {within:?}"));
        }
        if !expired.is_empty() {
            self.warn_limited(
                "control-deadline",
                format_args!(
                    "dropped {} control connection(s) that sent no request within {CONTROL_LINE_DEADLINE:?}",
                    expired.len()
                ),
            );
        }
        for id in expired {
            self.drop_conn(id);
        }
        next
    }

    pub(super) fn conn_ready(&mut self, id: u64) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let mut chunk = [0u8; 4096];
        let n = match c.stream.read(&mut chunk) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) =>
            {
                return;
            }
            Ok(0) | Err(_) => {
                if let ConnKind::Joining { pid } = c.kind {
                    self.conns.remove(&id);
                    self.refused(pid, "it closed its connection without a hello");
                    return;
                }
                self.drop_conn(id);
                return;
            }
            Ok(n) => n,
        };
        match c.kind {
            ConnKind::Rank(_) | ConnKind::Joining { .. } => {
                c.frames.push(&chunk[..n]);
                // Frame by frame: a hello admits the connection as a rank,
                // and what follows it is that rank's.
                loop {
                    let Some(c) = self.conns.get_mut(&id) else {
                        return;
                    };
                    let kind = c.kind;
                    let frame = match c.frames.next_frame() {
                        None => return,
                        Some(f) => f,
                    };
                    match (kind, frame) {
                        (ConnKind::Rank(rank), Ok((tag, payload))) => {
                            self.rank_message(rank, tag, &payload);
                        }
                        (ConnKind::Joining { pid }, Ok((tag, payload))) => {
                            self.hello(id, pid, tag, &payload);
                        }
                        (ConnKind::Joining { pid }, Err(e)) => {
                            return self.refuse(id, pid, format!("not a snapc rank: {e}"));
                        }
                        (_, Err(e)) => {
                            self.warn_limited("frame", format_args!("{kind:?}: {e}"));
                            return self.drop_conn(id);
                        }
                        (ConnKind::Control, Ok(_)) => return,
                    }
                }
            }
            ConnKind::Control => {
                if c.requested {
                    // One request per connection: the rest is ignored.
                    return;
                }
                c.line.extend_from_slice(&chunk[..n]);
                if let Some(pos) = c.line.iter().position(|&b| b == b'\n') {
                    c.requested = true;
                    let line: Vec<u8> = c.line.drain(..=pos).collect();
                    self.control(id, &line);
                } else if c.line.len() > 65536 {
                    self.drop_conn(id);
                }
            }
        }
    }

    pub(super) fn drop_conn(&mut self, id: u64) {
        if let Some(Conn {
            kind: ConnKind::Rank(rank),
            ..
        }) = self.conns.remove(&id)
            && let Some(r) = self.ranks.get_mut(rank as usize)
            && r.conn == Some(id)
        {
            r.conn = None;
        }
        if let Some(op) = self.op.as_mut() {
            op.waiters.retain(|w| *w != id);
        }
    }

    pub(super) fn rank_message(&mut self, rank: u32, tag: Tag, payload: &[u8]) {
        let now = self.io.now();
        let Some(pid) = self.ranks.get(rank as usize).map(|r| r.pid) else {
            return;
        };
        match tag {
            Tag::Snapc => match ToDaemon::parse(payload) {
                Ok(ToDaemon::LocalFinish(_)) => {
                    let _ = self.lc.handle_process_message(now, pid, payload);
                }
                Ok(ToDaemon::LocalUpdate(u)) => {
                    let own = u.name.vpid == rank
                        && u.name.jobid == self.jobid
                        && u32::try_from(u.pid).is_ok_and(|p| p == pid);
                    if !own {
                        self.warn_limited(
                            "rank-message",
                            format_args!(
                                "rank {rank}: LOCAL_UPDATE for {}.{} pid {} refused",
                                u.name.jobid, u.name.vpid, u.pid
                            ),
                        );
                    } else if let Err(e) = self.lc.handle_process_message(now, pid, payload) {
                        self.warn_limited(
                            "rank-message",
                            format_args!("rank {rank}: LOCAL_UPDATE: {e}"),
                        );
                    } else if let Some(r) = self.ranks.get_mut(rank as usize) {
                        r.updated = true;
                    }
                }
                Err(e) => self.warn_limited("rank-message", format_args!("rank {rank}: {e}")),
            },
            // A rank this daemon started, admitted by its pid, that says
            // hello anyway (it has a secret from elsewhere): it is in.
            Tag::Join if !self.opts.launcher => {
                let admitted = snapc_posix::join::Answer::Admitted.encode();
                self.send_rank(rank, Tag::Join, &admitted);
            }
            Tag::Join => self.warn_limited(
                "rank-message",
                format_args!("rank {rank}: a hello after joining, ignored"),
            ),
            Tag::SnapcFull => {
                if let Err(e) = self.gc.handle_rank_message(now, rank, payload) {
                    self.warn_limited(
                        "rank-message",
                        format_args!("rank {rank}: request refused: {e}"),
                    );
                }
            }
        }
        self.pump();
    }

    pub(super) fn send_rank(&mut self, vpid: u32, tag: Tag, payload: &[u8]) {
        let Some(id) = self.ranks.get(vpid as usize).and_then(|r| r.conn) else {
            log::warn!("rank {vpid} is not connected: message dropped");
            return;
        };
        let ok = match (encode_frame(tag, payload), self.conns.get_mut(&id)) {
            (Ok(frame), Some(c)) => c.stream.write_all(&frame).is_ok(),
            _ => false,
        };
        if !ok {
            self.drop_conn(id);
        }
    }

    pub(super) fn send_all_ranks(&mut self, tag: Tag, payload: &[u8]) {
        for vpid in 0..self.opts.nranks {
            self.send_rank(vpid, tag, payload);
        }
    }
}
