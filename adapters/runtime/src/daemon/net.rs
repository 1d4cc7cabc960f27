//! The TCP links between a job's coordinator and its node agents.
//!
//! Each side proves the job's secret without sending it, and every frame
//! after that is authenticated (HMAC-SHA256) under keys of that connection
//! alone, with an implicit sequence number: an altered, replayed,
//! reordered, dropped or foreign frame fails its check, and the link is
//! closed (the node counts as lost; a link is never resumed, so nothing is
//! delivered twice: the protocol's ORTED_STATE and JOB_STATE carry no
//! operation id, docs/PROTOCOL.md §8). The frames are not encrypted: they
//! hold process ids, states and snapshot names, nothing secret.
//!
//! ```text
//! coordinator -> agent  hello:  "snapc-node/1" | nonce_c (32 bytes)
//! agent -> coordinator  hello:  "snapc-node/1" | nonce_a (32) | name_len u8 | node name | proof_a (32)
//! coordinator -> agent  answer: 0 | proof_c (32)    or    1 | why (UTF-8)
//!   each of these as | len u16 BE | bytes |
//!   proof_a = HMAC(secret, "agent" | nonce_c | nonce_a | name)
//!   proof_c = HMAC(secret, "coordinator" | nonce_c | nonce_a | name)
//!   k = HMAC(secret, "keys" | nonce_c | nonce_a | name);
//!   k_up = HMAC(k, "up") (agent to coordinator), k_down = HMAC(k, "down")
//! then each frame:      | len u32 BE | payload | HMAC(k_dir, seq u64 BE | len | payload) |
//!   seq counts each direction's frames from 0; an empty payload is a heartbeat
//! ```
//!
//! Heartbeats go every [`HEARTBEAT`] on an otherwise quiet link; a link
//! silent for the job's node timeout counts as lost, and so does one whose
//! peer does not read (more than [`MAX_BACKLOG`] bytes queued).

use super::*;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use snapc_posix::join::Secret;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::BorrowedFd;

type HmacSha256 = Hmac<Sha256>;

const MAGIC: &[u8; 12] = b"snapc-node/1";
const NONCE_LEN: usize = 32;
const MAC_LEN: usize = 32;

/// How often a quiet link carries a heartbeat.
pub(super) const HEARTBEAT: Duration = Duration::from_secs(1);

/// How long a new connection has to prove the secret.
pub(super) const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// The largest frame (payload) accepted.
pub(super) const MAX_FRAME: usize = 1 << 20;

/// Bytes queued to a peer that does not read before it counts as lost.
pub(super) const MAX_BACKLOG: usize = 64 << 20;

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; MAC_LEN] {
    // HMAC takes a key of any length.
    let mut m = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; MAC_LEN],
    };
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Whether `tag` is the MAC of `parts` under `key` (in constant time).
fn verify(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    let Ok(mut m) = HmacSha256::new_from_slice(key) else {
        return false;
    };
    for p in parts {
        m.update(p);
    }
    m.verify_slice(tag).is_ok()
}

fn nonce() -> Result<[u8; NONCE_LEN], String> {
    let mut n = [0u8; NONCE_LEN];
    getrandom::fill(&mut n).map_err(|e| format!("no randomness: {e}"))?;
    Ok(n)
}

/// The two directions' keys of one connection.
struct Keys {
    up: [u8; MAC_LEN],
    down: [u8; MAC_LEN],
}

fn keys(secret: &[u8], nonce_c: &[u8], nonce_a: &[u8], name: &[u8]) -> Keys {
    let k = mac(secret, &[b"keys", nonce_c, nonce_a, name]);
    Keys {
        up: mac(&k, &[b"up"]),
        down: mac(&k, &[b"down"]),
    }
}

/// Why a link ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum LinkError {
    #[error("its connection closed")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("a frame failed authentication (altered, replayed or not from the job)")]
    Forged,
    #[error("a frame of {0} bytes (the limit is {MAX_FRAME})")]
    TooBig(usize),
    #[error("it does not read: {0} bytes are queued to it")]
    Backlog(usize),
}

/// One authenticated connection, either side.
pub(super) struct Link {
    stream: TcpStream,
    send_key: [u8; MAC_LEN],
    send_seq: u64,
    recv_key: [u8; MAC_LEN],
    recv_seq: u64,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    woff: usize,
    last_heard: Instant,
    last_sent: Instant,
}

impl Link {
    fn new(stream: TcpStream, send_key: [u8; 32], recv_key: [u8; 32]) -> Self {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_nonblocking(true);
        Self {
            stream,
            send_key,
            send_seq: 0,
            recv_key,
            recv_seq: 0,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            woff: 0,
            last_heard: Instant::now(),
            last_sent: Instant::now(),
        }
    }

    /// Queues `payload` as the next frame.
    pub(super) fn seal(&mut self, payload: &[u8]) -> Result<(), LinkError> {
        if payload.len() > MAX_FRAME {
            return Err(LinkError::TooBig(payload.len()));
        }
        let len = (payload.len() as u32).to_be_bytes();
        let seq = self.send_seq.to_be_bytes();
        let tag = mac(&self.send_key, &[&seq, &len, payload]);
        self.send_seq += 1;
        self.wbuf.extend_from_slice(&len);
        self.wbuf.extend_from_slice(payload);
        self.wbuf.extend_from_slice(&tag);
        self.last_sent = Instant::now();
        let queued = self.wbuf.len() - self.woff;
        if queued > MAX_BACKLOG {
            return Err(LinkError::Backlog(queued));
        }
        Ok(())
    }

    /// Writes what the socket takes now.
    pub(super) fn flush(&mut self) -> Result<(), LinkError> {
        while self.woff < self.wbuf.len() {
            match self.stream.write(&self.wbuf[self.woff..]) {
                Ok(0) => return Err(LinkError::Closed),
                Ok(n) => self.woff += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if self.woff == self.wbuf.len() {
            self.wbuf.clear();
            self.woff = 0;
        } else if self.woff > (1 << 20) {
            self.wbuf.drain(..self.woff);
            self.woff = 0;
        }
        Ok(())
    }

    /// Whether bytes wait to be written.
    pub(super) fn wants_write(&self) -> bool {
        self.woff < self.wbuf.len()
    }

    /// A heartbeat if nothing went for [`HEARTBEAT`].
    pub(super) fn heartbeat(&mut self) -> Result<(), LinkError> {
        if self.last_sent.elapsed() >= HEARTBEAT {
            self.seal(&[])?;
        }
        self.flush()
    }

    /// How long nothing came.
    pub(super) fn silent_for(&self) -> Duration {
        self.last_heard.elapsed()
    }

    /// Reads what came; the frames' payloads in order (heartbeats not
    /// included). A frame that fails its check ends the link.
    pub(super) fn read(&mut self) -> Result<Vec<Vec<u8>>, LinkError> {
        let mut chunk = [0u8; 16384];
        let mut closed = false;
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => {
                    self.rbuf.extend_from_slice(&chunk[..n]);
                    if self.rbuf.len() > MAX_FRAME * 2 {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let frames = self.frames()?;
        if closed {
            return Err(LinkError::Closed);
        }
        Ok(frames)
    }

    /// The whole frames in the read buffer, checked.
    fn frames(&mut self) -> Result<Vec<Vec<u8>>, LinkError> {
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            let rest = &self.rbuf[at..];
            let Some((len, body)) = rest.split_first_chunk::<4>() else {
                break;
            };
            let n = u32::from_be_bytes(*len) as usize;
            if n > MAX_FRAME {
                return Err(LinkError::TooBig(n));
            }
            if body.len() < n + MAC_LEN {
                break;
            }
            let (payload, tail) = body.split_at(n);
            let tag = &tail[..MAC_LEN];
            let seq = self.recv_seq.to_be_bytes();
            if !verify(&self.recv_key, &[&seq, len, payload], tag) {
                return Err(LinkError::Forged);
            }
            self.recv_seq += 1;
            self.last_heard = Instant::now();
            if !payload.is_empty() {
                out.push(payload.to_vec());
            }
            at += 4 + n + MAC_LEN;
        }
        self.rbuf.drain(..at);
        Ok(out)
    }

    /// A descriptor to poll, and for what.
    pub(super) fn poll_fd(&self) -> (BorrowedFd<'_>, PollFlags) {
        let mut flags = PollFlags::POLLIN;
        if self.wants_write() {
            flags |= PollFlags::POLLOUT;
        }
        (self.stream.as_fd(), flags)
    }

    /// Writes what is queued, for up to `within`.
    pub(super) fn drain(&mut self, within: Duration) {
        let until = Instant::now() + within;
        while self.wants_write() && Instant::now() < until {
            if self.flush().is_err() {
                return;
            }
            if self.wants_write() {
                let mut fds = [PollFd::new(self.stream.as_fd(), PollFlags::POLLOUT)];
                let _ = poll(&mut fds, PollTimeout::from(50u16));
            }
        }
    }
}

/// A short handshake message: `| len u16 BE | bytes |`.
fn short(bytes: &[u8]) -> Vec<u8> {
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    let mut v = len.to_be_bytes().to_vec();
    v.extend_from_slice(&bytes[..usize::from(len)]);
    v
}

/// A short message from `buf` if it holds a whole one: (it, bytes used).
fn take_short(buf: &[u8]) -> Option<(&[u8], usize)> {
    let (len, rest) = buf.split_first_chunk::<2>()?;
    let n = usize::from(u16::from_be_bytes(*len));
    rest.get(..n).map(|m| (m, n + 2))
}

/// An agent's hello, parsed.
struct AgentHello<'a> {
    nonce: &'a [u8],
    name: &'a [u8],
    proof: &'a [u8],
}

fn parse_agent_hello(m: &[u8]) -> Option<AgentHello<'_>> {
    let rest = m.strip_prefix(&MAGIC[..])?;
    let (nonce, rest) = rest.split_at_checked(NONCE_LEN)?;
    let (&n, rest) = rest.split_first()?;
    let (name, proof) = rest.split_at_checked(usize::from(n))?;
    (proof.len() == MAC_LEN).then_some(AgentHello { nonce, name, proof })
}

/// A connection to the coordinator that has not proved the secret yet.
struct Pending {
    id: u64,
    stream: TcpStream,
    peer: SocketAddr,
    nonce: [u8; NONCE_LEN],
    rbuf: Vec<u8>,
    since: Instant,
}

/// What the coordinator polls its network for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Src {
    Listener,
    Pending(u64),
    Link(usize),
}

/// The coordinator's side: its listener, the connections proving the
/// secret, one link per node.
pub(super) struct Hub {
    listener: TcpListener,
    /// `host:port` the agents connect to.
    pub(super) advertised: String,
    /// The agents' sockets and pipe directories, `{node}` for the node's
    /// name (what a launcher's ranks get).
    pub(super) agent_paths: JobPaths,
    secret: Secret,
    pending: Vec<Pending>,
    next_pending: u64,
    links: Vec<Option<Link>>,
    /// Peers refused for not proving the secret, each logged once.
    logged: HashSet<IpAddr>,
    /// Every agent must be up by then.
    pub(super) connect_by: Instant,
}

impl Hub {
    /// Listens on `bind` for `nodes` agents; they are told to connect to
    /// `host`.
    pub(super) fn bind(
        bind: &str,
        host: &str,
        secret: Secret,
        nodes: usize,
        connect_timeout: Duration,
        agent_run_dir: PathBuf,
        job: &str,
    ) -> Result<Self, RunError> {
        let listener = TcpListener::bind(bind)
            .map_err(io_err(format!("listening for node agents on {bind}")))?;
        listener
            .set_nonblocking(true)
            .map_err(io_err("node agents' listener"))?;
        let port = listener
            .local_addr()
            .map_err(io_err("node agents' listener"))?
            .port();
        let agent_paths = JobPaths::new(&agent_run_dir, &format!("{job}.{{node}}"));
        Ok(Self {
            listener,
            advertised: format!("{host}:{port}"),
            agent_paths,
            secret,
            pending: Vec::new(),
            next_pending: 0,
            links: (0..nodes).map(|_| None).collect(),
            logged: HashSet::new(),
            connect_by: Instant::now() + connect_timeout,
        })
    }

    /// What to poll.
    pub(super) fn poll_fds(&self) -> Vec<(Src, BorrowedFd<'_>, PollFlags)> {
        let mut v = vec![(Src::Listener, self.listener.as_fd(), PollFlags::POLLIN)];
        for p in &self.pending {
            v.push((Src::Pending(p.id), p.stream.as_fd(), PollFlags::POLLIN));
        }
        for (i, l) in self.links.iter().enumerate() {
            if let Some(l) = l {
                let (fd, flags) = l.poll_fd();
                v.push((Src::Link(i), fd, flags));
            }
        }
        v
    }

    /// The longest the loop may sleep for the network.
    pub(super) fn cap(&self) -> Duration {
        let mut cap = HEARTBEAT;
        for p in &self.pending {
            cap = cap.min((p.since + HANDSHAKE_DEADLINE).saturating_duration_since(Instant::now()));
        }
        cap
    }

    /// Every node's link.
    pub(super) fn links_mut(&mut self) -> impl Iterator<Item = &mut Link> {
        self.links.iter_mut().flatten()
    }

    /// Whether node `i` has its link.
    pub(super) fn linked(&self, i: usize) -> bool {
        self.links.get(i).is_some_and(Option::is_some)
    }

    /// Logs a refused peer (once per address).
    fn refused(&mut self, peer: SocketAddr, job: &str, why: &str) {
        if self.logged.insert(peer.ip()) {
            log::warn!(
                target: crate::logging::TARGET,
                "refused a node agent connection from {peer}: {why} (job {job}; logged once per address)"
            );
        }
    }
}

impl Coordinator {
    /// Something to read or write on the network.
    pub(super) fn net_ready(&mut self, src: Src) {
        match src {
            Src::Listener => self.net_accept(),
            Src::Pending(id) => self.net_hello(id),
            Src::Link(i) => {
                let got = match self.hub.as_mut().and_then(|h| h.links.get_mut(i)) {
                    Some(Some(l)) => l.read().and_then(|f| l.flush().map(|()| f)),
                    _ => return,
                };
                match got {
                    Ok(frames) => {
                        for f in frames {
                            self.deliver(i, &f);
                        }
                    }
                    Err(e) => self.link_failed(i, e),
                }
            }
        }
    }

    fn link_failed(&mut self, node: usize, e: LinkError) {
        if let Some(h) = self.hub.as_mut()
            && let Some(slot) = h.links.get_mut(node)
        {
            *slot = None;
        }
        self.node_lost(node, e.to_string());
    }

    fn net_accept(&mut self) {
        let Some(hub) = self.hub.as_mut() else {
            return;
        };
        loop {
            match hub.listener.accept() {
                Ok((stream, peer)) => {
                    let Ok(n) = nonce() else {
                        continue;
                    };
                    let _ = stream.set_nonblocking(true);
                    let _ = stream.set_nodelay(true);
                    let hello = short(&[&MAGIC[..], &n].concat());
                    if (&stream).write_all(&hello).is_err() {
                        continue;
                    }
                    let id = hub.next_pending;
                    hub.next_pending += 1;
                    hub.pending.push(Pending {
                        id,
                        stream,
                        peer,
                        nonce: n,
                        rbuf: Vec::new(),
                        since: Instant::now(),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.warnings
                        .warn("accept", format_args!("node agents' listener: {e}"));
                    return;
                }
            }
        }
    }

    /// An agent's hello on pending connection `id`.
    fn net_hello(&mut self, id: u64) {
        let job = self.opts.job.clone();
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        let Some(hub) = self.hub.as_mut() else {
            return;
        };
        let Some(at) = hub.pending.iter().position(|p| p.id == id) else {
            return;
        };
        let mut chunk = [0u8; 1024];
        let p = &mut hub.pending[at];
        let closed = match p.stream.read(&mut chunk) {
            Ok(0) => true,
            Ok(n) => {
                p.rbuf.extend_from_slice(&chunk[..n]);
                false
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(_) => true,
        };
        let Some((m, _)) = take_short(&p.rbuf) else {
            if closed || p.rbuf.len() > 2 + u16::MAX as usize {
                let p = hub.pending.remove(at);
                hub.refused(p.peer, &job, "it closed its connection without a hello");
            }
            return;
        };
        let m = m.to_vec();
        let p = hub.pending.remove(at);
        let secret = hub.secret.as_bytes().to_vec();
        let answer_no = |s: &TcpStream, why: &str| {
            let _ = (&*s).write_all(&short(&[&[1u8][..], why.as_bytes()].concat()));
        };
        let Some(hello) = parse_agent_hello(&m) else {
            answer_no(&p.stream, "not a snapc node agent's hello");
            hub.refused(p.peer, &job, "not a snapc node agent's hello");
            return;
        };
        if !verify(
            &secret,
            &[b"agent", &p.nonce, hello.nonce, hello.name],
            hello.proof,
        ) {
            answer_no(&p.stream, "it does not prove the job's secret");
            hub.refused(p.peer, &job, "it does not prove the job's secret");
            return;
        }
        let name = String::from_utf8_lossy(hello.name).into_owned();
        let Some(index) = names.iter().position(|n| *n == name) else {
            let why = format!("{name} is not a node of job {job}");
            answer_no(&p.stream, &why);
            hub.refused(p.peer, &job, &why);
            return;
        };
        if hub.linked(index) || self.nodes[index].lost.is_some() {
            let why = format!("node {name} already has its agent");
            answer_no(&p.stream, &why);
            hub.refused(p.peer, &job, &why);
            return;
        }
        let proof = mac(
            &secret,
            &[b"coordinator", &p.nonce, hello.nonce, hello.name],
        );
        if (&p.stream)
            .write_all(&short(&[&[0u8][..], &proof].concat()))
            .is_err()
        {
            return;
        }
        let k = keys(&secret, &p.nonce, hello.nonce, hello.name);
        let peer = p.peer.to_string();
        let rest = p.rbuf[m.len() + 2..].to_vec();
        let mut link = Link::new(p.stream, k.down, k.up);
        link.rbuf = rest;
        hub.links[index] = Some(link);
        self.nodes[index].peer = Some(peer.clone());
        log::debug!(target: crate::logging::TARGET, "node {name}: agent connected from {peer}");
        let setup = self.setup_for(index);
        self.send_to(index, msg::Down::Ctl(msg::DownCtl::Setup(setup)));
        self.flush_nodes();
    }

    /// Moves every node's queued frames into its link, and writes.
    pub(super) fn flush_nodes(&mut self) {
        let mut failed = Vec::new();
        if let Some(hub) = self.hub.as_mut() {
            for (i, n) in self.nodes.iter_mut().enumerate() {
                let Some(Some(l)) = hub.links.get_mut(i) else {
                    continue;
                };
                let mut r = Ok(());
                while let Some(f) = n.outbox.pop_front() {
                    r = l.seal(&f);
                    if r.is_err() {
                        break;
                    }
                }
                if let Err(e) = r.and_then(|()| l.flush()) {
                    failed.push((i, e));
                }
            }
        }
        for (i, e) in failed {
            self.link_failed(i, e);
        }
    }

    /// Heartbeats, silent links, handshakes and agents that are late; the
    /// launch once every agent is set up.
    pub(super) fn net_tick(&mut self) {
        let Some(hub) = self.hub.as_mut() else {
            return;
        };
        let job = self.opts.job.clone();
        let late: Vec<Pending> = {
            let (late, keep) = std::mem::take(&mut hub.pending)
                .into_iter()
                .partition(|p| p.since.elapsed() >= HANDSHAKE_DEADLINE);
            hub.pending = keep;
            late
        };
        for p in late {
            hub.refused(p.peer, &job, "it sent no hello in time");
        }
        let timeout = self.opts.node_timeout;
        let mut failed = Vec::new();
        for (i, l) in hub.links.iter_mut().enumerate() {
            let Some(l) = l else {
                continue;
            };
            if l.silent_for() > timeout {
                failed.push((
                    i,
                    format!("silent for {:.1} s", l.silent_for().as_secs_f64()),
                ));
            } else if let Err(e) = l.heartbeat() {
                failed.push((i, e.to_string()));
            }
        }
        let connect_by = hub.connect_by;
        for (i, why) in failed {
            if let Some(h) = self.hub.as_mut() {
                h.links[i] = None;
            }
            self.node_lost(i, why);
        }
        if self.launched || self.aborting {
            return;
        }
        if self.nodes.iter().all(|n| n.ready) {
            let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
            self.log(format!(
                "node agents up on {} ({})",
                names.join(", "),
                self.hub.as_ref().map_or("", |h| h.advertised.as_str())
            ));
            if let Err(e) = self.launch(false) {
                log::error!(target: crate::logging::TARGET, "{e}");
                self.first_failure.get_or_insert(1);
                self.end_job("the job could not start", None);
            }
        } else if Instant::now() >= connect_by {
            let missing: Vec<&str> = self
                .nodes
                .iter()
                .filter(|n| !n.ready)
                .map(|n| n.name.as_str())
                .collect();
            let why = format!(
                "no node agent on {} within {:.0} s (--connect-timeout): see the agents' output above",
                missing.join(", "),
                self.opts.connect_timeout.as_secs_f64()
            );
            log::error!(target: crate::logging::TARGET, "{why}");
            self.launched = true;
            self.first_failure.get_or_insert(1);
            self.end_job("the node agents did not start", None);
        }
    }
}

/// A node agent's link to its coordinator.
pub(super) struct Uplink {
    link: Option<Link>,
    /// Why the link ended, once it did.
    pub(super) lost: Option<String>,
    timeout: Duration,
}

impl Uplink {
    /// Connects to the coordinator at `addr` as node `name`, proving the
    /// job's secret, within `deadline` (a refused connection is tried
    /// again: the coordinator may not listen yet).
    pub(super) fn connect(
        addr: &str,
        name: &str,
        secret: &Secret,
        within: Duration,
    ) -> Result<Self, String> {
        let deadline = Instant::now() + within;
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| format!("the coordinator's address {addr}: {e}"))?
            .collect();
        let mut stream = loop {
            let mut last = None;
            let mut got = None;
            for a in &addrs {
                let left = deadline.saturating_duration_since(Instant::now());
                match TcpStream::connect_timeout(a, left.max(Duration::from_millis(10))) {
                    Ok(s) => {
                        got = Some(s);
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            if let Some(s) = got {
                break s;
            }
            if Instant::now() >= deadline {
                return Err(match last {
                    Some(e) => format!("connecting to the coordinator at {addr}: {e}"),
                    None => format!("no address for the coordinator at {addr}"),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let left = || {
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        };
        let read_short = |s: &mut TcpStream| -> Result<Vec<u8>, String> {
            let mut len = [0u8; 2];
            s.set_read_timeout(Some(left()))
                .map_err(|e| e.to_string())?;
            s.read_exact(&mut len)
                .map_err(|e| format!("the coordinator's handshake: {e}"))?;
            let mut m = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut m)
                .map_err(|e| format!("the coordinator's handshake: {e}"))?;
            Ok(m)
        };
        let hello = read_short(&mut stream)?;
        let nonce_c = hello
            .strip_prefix(&MAGIC[..])
            .filter(|n| n.len() == NONCE_LEN)
            .ok_or_else(|| format!("{addr} is not a snapc coordinator"))?
            .to_vec();
        let nonce_a = nonce()?;
        let name_b = name.as_bytes();
        let n =
            u8::try_from(name_b.len()).map_err(|_| format!("node name {name:?} is too long"))?;
        let proof = mac(secret.as_bytes(), &[b"agent", &nonce_c, &nonce_a, name_b]);
        let mine = [&MAGIC[..], &nonce_a, &[n], name_b, &proof].concat();
        stream
            .set_write_timeout(Some(left()))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(&short(&mine))
            .map_err(|e| format!("the handshake with the coordinator: {e}"))?;
        let answer = read_short(&mut stream)?;
        match answer.split_first() {
            Some((0, p))
                if verify(
                    secret.as_bytes(),
                    &[b"coordinator", &nonce_c, &nonce_a, name_b],
                    p,
                ) => {}
            Some((0, _)) => {
                return Err(format!(
                    "the coordinator at {addr} does not prove the job's secret: refused"
                ));
            }
            Some((_, why)) => {
                return Err(format!(
                    "the coordinator at {addr} refused this agent: {}",
                    String::from_utf8_lossy(why)
                ));
            }
            None => return Err("an empty answer from the coordinator".into()),
        }
        let _ = stream.set_read_timeout(None);
        let _ = stream.set_write_timeout(None);
        let k = keys(secret.as_bytes(), &nonce_c, &nonce_a, name_b);
        Ok(Self {
            link: Some(Link::new(stream, k.up, k.down)),
            lost: None,
            timeout: DEFAULT_NODE_TIMEOUT,
        })
    }

    /// The coordinator's bound on silence (from the job's setup).
    pub(super) fn set_timeout(&mut self, t: Duration) {
        self.timeout = t;
    }

    /// Waits for the first frame (the setup), until `within`.
    pub(super) fn first(&mut self, within: Duration) -> Result<Vec<u8>, String> {
        let until = Instant::now() + within;
        loop {
            let Some(l) = self.link.as_mut() else {
                return Err("no link".into());
            };
            match l.read() {
                Ok(mut frames) if !frames.is_empty() => return Ok(frames.remove(0)),
                Ok(_) => {}
                Err(e) => return Err(format!("the coordinator's link: {e}")),
            }
            if Instant::now() >= until {
                return Err(format!("no word from the coordinator within {within:?}"));
            }
            let mut fds = [PollFd::new(l.stream.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(100u16));
        }
    }

    fn fail(&mut self, why: String) {
        if self.lost.is_none() {
            log::error!(target: crate::logging::TARGET, "the coordinator's link: {why}");
            self.lost = Some(why);
        }
        self.link = None;
    }

    /// Seals and sends the frames of `outbox`; heartbeats; a silent link
    /// counts as lost.
    pub(super) fn queue_all(&mut self, outbox: &mut VecDeque<Vec<u8>>) {
        let Some(l) = self.link.as_mut() else {
            outbox.clear();
            return;
        };
        let mut r = Ok(());
        while let Some(f) = outbox.pop_front() {
            r = l.seal(&f);
            if r.is_err() {
                break;
            }
        }
        let silent = l.silent_for();
        let r = r.and_then(|()| l.heartbeat());
        if let Err(e) = r {
            self.fail(e.to_string());
        } else if silent > self.timeout {
            self.fail(format!("silent for {:.1} s", silent.as_secs_f64()));
        }
    }

    /// The frames that came.
    pub(super) fn ready(&mut self) -> Vec<Vec<u8>> {
        let Some(l) = self.link.as_mut() else {
            return Vec::new();
        };
        match l.read().and_then(|f| l.flush().map(|()| f)) {
            Ok(f) => f,
            Err(e) => {
                self.fail(e.to_string());
                Vec::new()
            }
        }
    }

    pub(super) fn poll_fd(&self) -> Option<(BorrowedFd<'_>, PollFlags)> {
        self.link.as_ref().map(Link::poll_fd)
    }

    pub(super) fn cap(&self) -> Duration {
        HEARTBEAT
    }

    /// Writes what is left, briefly, and closes.
    pub(super) fn close(&mut self) {
        if let Some(l) = self.link.as_mut() {
            l.drain(Duration::from_secs(2));
        }
        self.link = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    fn linked() -> (Link, Link) {
        let (a, b) = pair();
        let k = keys(b"secret", &[1; 32], &[2; 32], b"node1");
        (Link::new(a, k.up, k.down), Link::new(b, k.down, k.up))
    }

    fn settle(l: &mut Link) -> Result<Vec<Vec<u8>>, LinkError> {
        let mut got = Vec::new();
        for _ in 0..50 {
            got.extend(l.read()?);
            if !got.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(got)
    }

    #[test]
    fn frames_pass_in_order_and_heartbeats_are_not_delivered() {
        let (mut a, mut b) = linked();
        a.seal(b"one").unwrap();
        a.seal(&[]).unwrap();
        a.seal(b"two").unwrap();
        a.flush().unwrap();
        let mut got = Vec::new();
        while got.len() < 2 {
            got.extend(settle(&mut b).unwrap());
        }
        assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
    }

    /// A frame altered on the way, a frame replayed, a frame dropped (the
    /// next one out of sequence) and a frame under another connection's
    /// keys: each fails its check and ends the link.
    #[test]
    fn altered_replayed_dropped_and_foreign_frames_are_refused() {
        let seal = |l: &mut Link, payloads: &[&[u8]]| -> Vec<Vec<u8>> {
            payloads
                .iter()
                .map(|p| {
                    l.seal(p).unwrap();
                    let f = l.wbuf[l.woff..].to_vec();
                    l.wbuf.clear();
                    l.woff = 0;
                    f
                })
                .collect()
        };
        let (mut a, _) = linked();
        let frames = seal(&mut a, &[b"first", b"second"]);
        let k = keys(b"secret", &[1; 32], &[2; 32], b"node1");
        let receiver = || {
            let (x, _y) = pair();
            let mut l = Link::new(x, k.down, k.up);
            l.recv_key = k.up;
            l
        };
        // Untouched, in order: both taken.
        let mut r = receiver();
        r.rbuf = [frames[0].clone(), frames[1].clone()].concat();
        assert_eq!(r.frames().unwrap().len(), 2);
        // One bit flipped in the payload, or in the MAC.
        for at in [6, frames[0].len() - 1] {
            let mut bad = frames[0].clone();
            bad[at] ^= 1;
            let mut r = receiver();
            r.rbuf = bad;
            assert!(matches!(r.frames(), Err(LinkError::Forged)), "byte {at}");
        }
        // Replayed: the first frame twice.
        let mut r = receiver();
        r.rbuf = [frames[0].clone(), frames[0].clone()].concat();
        assert!(matches!(r.frames(), Err(LinkError::Forged)));
        // Dropped: the second frame alone.
        let mut r = receiver();
        r.rbuf = frames[1].clone();
        assert!(matches!(r.frames(), Err(LinkError::Forged)));
        // Another connection's keys (other nonces): refused.
        let other = keys(b"secret", &[3; 32], &[2; 32], b"node1");
        let mut r = receiver();
        r.recv_key = other.up;
        r.rbuf = frames[0].clone();
        assert!(matches!(r.frames(), Err(LinkError::Forged)));
        // A length past the limit is refused before anything is buffered.
        let mut r = receiver();
        r.rbuf = ((MAX_FRAME as u32) + 1).to_be_bytes().to_vec();
        assert!(matches!(r.frames(), Err(LinkError::TooBig(_))));
    }

    #[test]
    fn hellos_parse_only_whole() {
        let name = b"node2";
        let m = [&MAGIC[..], &[7; 32], &[name.len() as u8], name, &[9; 32]].concat();
        let h = parse_agent_hello(&m).unwrap();
        assert_eq!(h.name, name);
        for cut in 0..m.len() {
            assert!(parse_agent_hello(&m[..cut]).is_none(), "{cut}");
        }
        assert!(parse_agent_hello(&[&m[..], &[0]].concat()).is_none());
        assert_eq!(take_short(&short(b"abc")), Some((&b"abc"[..], 5)));
        assert_eq!(take_short(&[0, 4, 1]), None);
    }
}
