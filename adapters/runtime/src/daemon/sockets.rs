//! The ranks' socket (admission by SO_PEERCRED, framed messages) and the
//! control socket's connections.

use super::*;

pub(super) enum ConnKind {
    Rank(u32),
    Control,
}

pub(super) struct Conn {
    pub(super) stream: UnixStream,
    pub(super) kind: ConnKind,
    pub(super) frames: FrameReader,
    pub(super) line: Vec<u8>,
}

impl Daemon {
    pub(super) fn peer(&self, stream: &UnixStream) -> Option<(u32, u32)> {
        match getsockopt(stream, PeerCredentials) {
            Ok(c) => Some((u32::try_from(c.pid()).unwrap_or(0), c.uid())),
            Err(e) => {
                log::warn!("SO_PEERCRED: {e}");
                None
            }
        }
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
            },
        );
        id
    }

    pub(super) fn accept_ranks(&mut self) {
        while let Ok((stream, _)) = self.rank_listener.accept() {
            let _ = stream.set_nonblocking(false);
            let Some((pid, uid)) = self.peer(&stream) else {
                continue;
            };
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
                _ => self.log(format!(
                    "refused a connection from pid {pid} (uid {uid}): not a rank of job {}",
                    self.opts.job
                )),
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
        if let Err(e) = self.gc.handle_request(self.io.now(), 0, &init) {
            log::warn!("INIT: {e}");
        }
        self.log(format!("all {} ranks connected", self.opts.nranks));
    }

    pub(super) fn accept_controls(&mut self) {
        while let Ok((stream, _)) = self.ctl_listener.accept() {
            let _ = stream.set_nonblocking(false);
            match self.peer(&stream) {
                Some((_, uid)) if uid == self.euid => {
                    self.add_conn(stream, ConnKind::Control);
                }
                Some((pid, uid)) => self.log(format!(
                    "refused a control connection from pid {pid} (uid {uid})"
                )),
                None => {}
            }
        }
    }

    pub(super) fn conn_ready(&mut self, id: u64) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let mut chunk = [0u8; 4096];
        let n = match c.stream.read(&mut chunk) {
            Ok(0) | Err(_) => {
                self.drop_conn(id);
                return;
            }
            Ok(n) => n,
        };
        match c.kind {
            ConnKind::Rank(rank) => {
                c.frames.push(&chunk[..n]);
                let mut frames = Vec::new();
                let mut bad = false;
                while let Some(f) = c.frames.next_frame() {
                    match f {
                        Ok(f) => frames.push(f),
                        Err(e) => {
                            log::warn!("rank {rank}: {e}");
                            bad = true;
                            break;
                        }
                    }
                }
                for (tag, payload) in frames {
                    self.rank_message(rank, tag, &payload);
                }
                if bad {
                    self.drop_conn(id);
                }
            }
            ConnKind::Control => {
                c.line.extend_from_slice(&chunk[..n]);
                if let Some(pos) = c.line.iter().position(|&b| b == b'\n') {
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
                Ok(ToDaemon::LocalFinish(f)) => self.lc.handle_local_finish(now, pid, &f),
                Ok(ToDaemon::LocalUpdate(u)) => {
                    let own = u.name.vpid == rank
                        && u.name.jobid == self.jobid
                        && u32::try_from(u.pid).is_ok_and(|p| p == pid);
                    if !own {
                        self.log(format!(
                            "rank {rank}: LOCAL_UPDATE for {}.{} pid {} refused",
                            u.name.jobid, u.name.vpid, u.pid
                        ));
                    } else if let Err(e) = self.lc.handle_local_update(now, &u) {
                        log::warn!("rank {rank}: LOCAL_UPDATE: {e}");
                    } else if let Some(r) = self.ranks.get_mut(rank as usize) {
                        r.updated = true;
                    }
                }
                Err(e) => log::warn!("rank {rank}: {e}"),
            },
            Tag::SnapcFull => {
                if let Err(e) = self.gc.handle_request_bytes(now, rank, payload) {
                    self.log(format!("rank {rank}: request refused: {e}"));
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
