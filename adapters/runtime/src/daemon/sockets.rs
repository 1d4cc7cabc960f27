//! The ranks' socket (the agent: admission by SO_PEERCRED, framed
//! messages) and the control socket's connections (the coordinator).

use super::msg::{Up, UpCtl};
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
    /// A process whose hello was good, awaiting the coordinator's word.
    Admitting {
        pid: u32,
        rejoin: bool,
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

impl Conn {
    fn new(stream: UnixStream, kind: ConnKind) -> Self {
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        Self {
            stream,
            kind,
            frames: FrameReader::default(),
            line: Vec::new(),
            since: Instant::now(),
            requested: false,
        }
    }
}

/// The connections on a socket by id. An id is never reused: a stale one
/// finds nothing rather than a newer connection.
#[derive(Default)]
pub(super) struct Conns {
    by_id: HashMap<u64, Conn>,
    next: u64,
}

impl Conns {
    pub(super) fn add(&mut self, stream: UnixStream, kind: ConnKind) -> u64 {
        let id = self.next;
        self.next += 1;
        self.by_id.insert(id, Conn::new(stream, kind));
        id
    }

    /// Reads what connection `id` has into `chunk`: the connection and how
    /// much came (0: it closed or failed); `None` when nothing came now or
    /// there is no such connection.
    pub(super) fn read(&mut self, id: u64, chunk: &mut [u8]) -> Option<(&mut Conn, usize)> {
        let c = self.by_id.get_mut(&id)?;
        let n = read_some(&mut c.stream, chunk)?;
        Some((c, n))
    }
}

impl std::ops::Deref for Conns {
    type Target = HashMap<u64, Conn>;
    fn deref(&self) -> &Self::Target {
        &self.by_id
    }
}

impl std::ops::DerefMut for Conns {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.by_id
    }
}

impl<'a> IntoIterator for &'a Conns {
    type Item = (&'a u64, &'a Conn);
    type IntoIter = std::collections::hash_map::Iter<'a, u64, Conn>;
    fn into_iter(self) -> Self::IntoIter {
        self.by_id.iter()
    }
}

/// The most control connections at once (fewer when the file limit leaves
/// less room beside the ranks, see [`Coordinator::control_cap`]); past it the
/// oldest that has not sent its request yet makes room (or the newcomer is
/// refused).
pub(super) const MAX_CONTROL: usize = 32;

/// How long a control connection may take to send its request line.
pub(super) const CONTROL_LINE_DEADLINE: Duration = Duration::from_secs(5);

/// How long the listeners rest after the daemon ran out of descriptors.
pub(super) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What an `accept` gave.
pub(super) enum Accepted {
    Stream(UnixStream),
    /// Nothing (more) to accept now, or the listener rests.
    Done,
    /// Out of descriptors, and the caller may make room.
    Full(std::io::Error),
}

/// The next connection on `listener`. Out of descriptors (EMFILE,
/// ENFILE) the caller is told, to make room or to give up.
pub(super) fn accept_one(listener: &UnixListener) -> Result<Accepted, std::io::Error> {
    match listener.accept() {
        Ok((stream, _)) => Ok(Accepted::Stream(stream)),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(Accepted::Done),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(Accepted::Done),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(nix::libc::EMFILE | nix::libc::ENFILE)
            ) =>
        {
            Ok(Accepted::Full(e))
        }
        Err(e) => Err(e),
    }
}

/// Whether a connection waits on `listener` (never blocks).
fn waiting(listener: &UnixListener) -> bool {
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0)
}

/// Out of descriptors: the reserve descriptor is given up to take the
/// waiting connection and close it at once (so that poll does not report
/// it again and again), and the listener rests for [`ACCEPT_BACKOFF`].
/// `farewell`, when given, is written first (never blocking), so that the
/// peer learns why instead of seeing a closed socket.
pub(super) fn shed(
    listener: &UnixListener,
    reserve: &mut Option<File>,
    rest_until: &mut Option<Instant>,
    farewell: Option<&[u8]>,
) {
    *reserve = None;
    if let Ok((mut stream, _)) = listener.accept() {
        if let Some(line) = farewell {
            let _ = stream.set_nonblocking(true);
            let _ = stream.write(line);
        }
        drop(stream);
    }
    *reserve = File::open("/dev/null").ok();
    *rest_until = Some(Instant::now() + ACCEPT_BACKOFF);
}

/// What a connection had to read: `None` when nothing now, `Some(0)` when
/// it closed (or failed).
fn read_some(stream: &mut UnixStream, chunk: &mut [u8]) -> Option<usize> {
    match stream.read(chunk) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
            ) =>
        {
            None
        }
        Ok(n) => Some(n),
        Err(_) => Some(0),
    }
}

/// The peer's pid and uid.
pub(super) fn peer(stream: &UnixStream) -> Result<(u32, u32), nix::errno::Errno> {
    getsockopt(stream, PeerCredentials).map(|c| (u32::try_from(c.pid()).unwrap_or(0), c.uid()))
}

impl Agent {
    fn accept_rank(&mut self) -> Option<UnixStream> {
        match accept_one(&self.rank_listener) {
            Ok(Accepted::Stream(s)) => Some(s),
            Ok(Accepted::Done) => None,
            Ok(Accepted::Full(_)) if !waiting(&self.rank_listener) => None,
            Ok(Accepted::Full(e)) => {
                shed(
                    &self.rank_listener,
                    &mut self.reserve,
                    &mut self.accept_rest_until,
                    None,
                );
                self.warnings.warn(
                    "emfile",
                    format_args!(
                        "out of file descriptors: a connection to the ranks' socket was closed ({e}); \
                         the limit is {} (ulimit -n)",
                        crate::fds::limit()
                    ),
                );
                None
            }
            Err(e) => {
                self.warnings.warn("accept", format_args!("accept: {e}"));
                None
            }
        }
    }

    pub(super) fn accept_ranks(&mut self) {
        while let Some(stream) = self.accept_rank() {
            let _ = stream.set_nonblocking(false);
            let (pid, uid) = match peer(&stream) {
                Ok(p) => p,
                Err(e) => {
                    self.warnings
                        .warn("peercred", format_args!("SO_PEERCRED: {e}"));
                    continue;
                }
            };
            if self.setup.launcher {
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
                .find(|(_, r)| r.pid == pid && r.state == RankState::Running && r.conn.is_none())
                .map(|(&rank, _)| rank);
            match rank {
                Some(rank) if uid == self.euid => {
                    let id = self.conns.add(stream, ConnKind::Rank(rank));
                    if let Some(r) = self.ranks.get_mut(&rank) {
                        r.conn = Some(id);
                    }
                    self.report_rank(rank);
                }
                _ => {
                    let job = self.setup.job.clone();
                    self.warnings.warn(
                        "refused",
                        format_args!(
                            "refused a connection from pid {pid} (uid {uid}): not a rank of job {job}"
                        ),
                    );
                }
            }
        }
    }

    /// Refuses the processes that did not say hello in time on the ranks'
    /// socket; the earliest such deadline still to come.
    pub(super) fn expire_joining(&mut self) -> Option<Instant> {
        let now = Instant::now();
        let mut silent = Vec::new();
        let mut next: Option<Instant> = None;
        for (id, c) in &self.conns {
            let ConnKind::Joining { pid } = c.kind else {
                continue;
            };
            let at = c.since + super::admission::JOIN_DEADLINE;
            if at > now {
                next = Some(next.map_or(at, |n| n.min(at)));
            } else {
                silent.push((*id, pid));
            }
        }
        for (id, pid) in silent {
            let within = super::admission::JOIN_DEADLINE;
            self.refuse(id, pid, format!("it sent no hello within {within:?}"));
        }
        next
    }

    pub(super) fn conn_ready(&mut self, id: u64) {
        let mut chunk = [0u8; 4096];
        let Some((c, n)) = self.conns.read(id, &mut chunk) else {
            return;
        };
        if n == 0 {
            if let ConnKind::Joining { pid } | ConnKind::Admitting { pid, .. } = c.kind {
                self.conns.remove(&id);
                self.refused(pid, "it closed its connection without a hello");
                return;
            }
            self.drop_conn(id);
            return;
        }
        c.frames.push(&chunk[..n]);
        // Frame by frame: a hello admits the connection as a rank, and what
        // follows it is that rank's.
        loop {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            let kind = c.kind;
            if let ConnKind::Admitting { .. } = kind {
                // The rest waits for the coordinator's word.
                return;
            }
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
                    self.warnings.warn("frame", format_args!("{kind:?}: {e}"));
                    return self.drop_conn(id);
                }
                (ConnKind::Control | ConnKind::Admitting { .. }, Ok(_)) => return,
            }
        }
    }

    /// The frames a connection sent while it awaited admission.
    pub(super) fn conn_backlog(&mut self, id: u64) {
        loop {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            let ConnKind::Rank(rank) = c.kind else {
                return;
            };
            match c.frames.next_frame() {
                None => return,
                Some(Ok((tag, payload))) => self.rank_message(rank, tag, &payload),
                Some(Err(e)) => {
                    self.warnings
                        .warn("frame", format_args!("rank {rank}: {e}"));
                    return self.drop_conn(id);
                }
            }
        }
    }

    pub(super) fn drop_conn(&mut self, id: u64) {
        if let Some(Conn {
            kind: ConnKind::Rank(rank),
            ..
        }) = self.conns.remove(&id)
            && let Some(r) = self.ranks.get_mut(&rank)
            && r.conn == Some(id)
        {
            r.conn = None;
            self.report_rank(rank);
        }
    }

    pub(super) fn rank_message(&mut self, rank: u32, tag: Tag, payload: &[u8]) {
        let now = self.io.now();
        let Some(pid) = self.ranks.get(&rank).map(|r| r.pid) else {
            return;
        };
        match tag {
            Tag::Snapc => match ToDaemon::parse(payload) {
                Ok(ToDaemon::LocalFinish(_)) => {
                    let _ = self.lc.handle_process_message(now, pid, payload);
                }
                Ok(ToDaemon::LocalUpdate(u)) => {
                    let own = u.name.vpid == rank
                        && u.name.jobid == self.setup.jobid
                        && u32::try_from(u.pid).is_ok_and(|p| p == pid);
                    if !own {
                        self.warnings.warn(
                            "rank-message",
                            format_args!(
                                "rank {rank}: LOCAL_UPDATE for {}.{} pid {} refused",
                                u.name.jobid, u.name.vpid, u.pid
                            ),
                        );
                    } else if let Err(e) = self.lc.handle_process_message(now, pid, payload) {
                        self.warnings.warn(
                            "rank-message",
                            format_args!("rank {rank}: LOCAL_UPDATE: {e}"),
                        );
                    } else if let Some(r) = self.ranks.get_mut(&rank) {
                        r.updated = true;
                        self.report_rank(rank);
                    }
                }
                Err(e) => self
                    .warnings
                    .warn("rank-message", format_args!("rank {rank}: {e}")),
            },
            // A rank this agent started, admitted by its pid, that says
            // hello anyway (it has a secret from elsewhere): it is in.
            Tag::Join if !self.setup.launcher => {
                let admitted = snapc_posix::join::Answer::Admitted.encode();
                self.send_rank(rank, Tag::Join, &admitted);
            }
            Tag::Join => self.warnings.warn(
                "rank-message",
                format_args!("rank {rank}: a hello after joining, ignored"),
            ),
            // For the coordinator, which checks it.
            Tag::SnapcFull => self.send(Up::RankRequest {
                vpid: rank,
                bytes: payload.to_vec(),
            }),
        }
    }

    pub(super) fn send_rank(&mut self, vpid: u32, tag: Tag, payload: &[u8]) {
        let Some(id) = self.ranks.get(&vpid).and_then(|r| r.conn) else {
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

    /// Tells the coordinator the agent is set up.
    pub(super) fn ready(&mut self) {
        self.send(Up::Ctl(UpCtl::Ready {
            node: self.setup.node.clone(),
            pid: std::process::id(),
        }));
    }
}

impl Coordinator {
    fn accept_control(&mut self) -> Option<UnixStream> {
        loop {
            match accept_one(&self.ctl_listener) {
                Ok(Accepted::Stream(s)) => return Some(s),
                Ok(Accepted::Done) => return None,
                Ok(Accepted::Full(e)) => {
                    // accept fails at the limit whether or not anyone
                    // waits: with no one waiting there is nothing to do
                    // (and the connection just taken must not be evicted
                    // before it could speak).
                    if !waiting(&self.ctl_listener) {
                        return None;
                    }
                    // An idle control connection makes room first (the
                    // newcomer may be the user's `snapc status`).
                    if self.evict_idle_control() {
                        continue;
                    }
                    let why = format!(
                        "out of file descriptors ({e}); the limit is {} (ulimit -n)",
                        crate::fds::limit()
                    );
                    let mut farewell =
                        serde_json::json!({"event": "error", "message": format!("the daemon is {why}")})
                            .to_string();
                    farewell.push('\n');
                    shed(
                        &self.ctl_listener,
                        &mut self.reserve,
                        &mut self.accept_rest_until,
                        Some(farewell.as_bytes()),
                    );
                    self.warnings.warn(
                        "emfile",
                        format_args!("{why}: a connection to the control socket was closed"),
                    );
                    return None;
                }
                Err(e) => {
                    self.warnings.warn("accept", format_args!("accept: {e}"));
                    return None;
                }
            }
        }
    }

    pub(super) fn accept_controls(&mut self) {
        while let Some(stream) = self.accept_control() {
            // Never blocks the loop: a client that does not read its
            // answers is dropped instead.
            let _ = stream.set_nonblocking(true);
            match peer(&stream) {
                Ok((_, uid)) if uid == self.euid => {
                    if self.control_count() >= self.control_cap() && !self.evict_idle_control() {
                        let mut s = &stream;
                        let _ = s.write_all(
                            b"{\"event\":\"error\",\"message\":\"too many control connections\"}\n",
                        );
                        self.warnings.warn(
                            "control-cap",
                            format_args!(
                                "refused a control connection: {} are open and busy",
                                self.control_cap()
                            ),
                        );
                        continue;
                    }
                    self.conns.add(stream, ConnKind::Control);
                }
                Ok((pid, uid)) => self.warnings.warn(
                    "refused",
                    format_args!("refused a control connection from pid {pid} (uid {uid})"),
                ),
                Err(e) => self
                    .warnings
                    .warn("peercred", format_args!("SO_PEERCRED: {e}")),
            }
        }
    }

    /// How many control connections fit beside the ranks in the file
    /// limit in force now, between [`super::MIN_CONTROL`] and [`MAX_CONTROL`].
    fn control_cap(&self) -> usize {
        let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(crate::fds::limit(), |(soft, _)| soft);
        let local = if self.embedded { self.opts.nranks } else { 0 };
        let room = limit.saturating_sub(crate::fds::needed(local, 0));
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
    /// in time; the earliest such deadline still to come.
    pub(super) fn expire_controls(&mut self) -> Option<Instant> {
        let now = Instant::now();
        let mut expired = Vec::new();
        let mut next: Option<Instant> = None;
        for (id, c) in &self.conns {
            if c.requested {
                continue;
            }
            let at = c.since + CONTROL_LINE_DEADLINE;
            if at > now {
                next = Some(next.map_or(at, |n| n.min(at)));
            } else {
                expired.push(*id);
            }
        }
        if !expired.is_empty() {
            self.warnings.warn(
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
        let mut chunk = [0u8; 4096];
        let Some((c, n)) = self.conns.read(id, &mut chunk) else {
            return;
        };
        if n == 0 {
            self.drop_conn(id);
            return;
        }
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

    pub(super) fn drop_conn(&mut self, id: u64) {
        self.conns.remove(&id);
        if let Some(op) = self.op.as_mut() {
            op.waiters.retain(|w| *w != id);
        }
    }
}
