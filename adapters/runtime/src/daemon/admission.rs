//! Ranks that a launcher started (`snapc run --launcher -- mpirun ...`)
//! join the job: each connects to its node's ranks' socket, and its first
//! frame is a hello with its rank, its pid and the job's secret
//! ([`snapc_posix::join`]). The node's agent checks what it can see: this
//! user's process (SO_PEERCRED), holding the secret (compared in constant
//! time), saying the pid the kernel gives, a rank of the job that no other
//! process of this node holds; the coordinator, which sees every node,
//! then checks that no process elsewhere holds that rank and admits it.
//! Anything else is refused with the reason (sent to the process, and
//! logged once per process).

use super::msg::{DownCtl, UpCtl};
use super::sockets::ConnKind;
use super::*;
use snapc_posix::join::{Answer, Hello, Secret};
use subtle::ConstantTimeEq;

/// How long a connection on the ranks' socket may take to send its hello.
pub(super) const JOIN_DEADLINE: Duration = Duration::from_secs(5);

/// A new job secret: 32 bytes of the system's randomness, in hexadecimal
/// (an environment variable holds it).
pub(super) fn new_secret() -> Result<Secret, String> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| format!("the job's secret: no randomness: {e}"))?;
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    Secret::new(hex.into_bytes()).ok_or_else(|| "the job's secret".to_string())
}

impl Agent {
    /// A connection from this user's process `pid` on the ranks' socket of
    /// a job whose ranks join: it has [`JOIN_DEADLINE`] to say hello.
    pub(super) fn accept_joining(&mut self, stream: UnixStream, pid: u32) {
        self.conns.add(stream, ConnKind::Joining { pid });
    }

    /// The first frame of joining connection `id` (from `pid`).
    pub(super) fn hello(&mut self, id: u64, pid: u32, tag: Tag, payload: &[u8]) {
        let job = self.setup.job.clone();
        if tag != Tag::Join {
            return self.refuse(
                id,
                pid,
                format!("its first frame ({tag:?}) is not a hello with job {job}'s secret"),
            );
        }
        let hello = match Hello::parse(payload) {
            Ok(h) => h,
            Err(e) => return self.refuse(id, pid, format!("malformed hello: {e}")),
        };
        let holds = self
            .secret
            .as_ref()
            .is_some_and(|s| bool::from(s.as_bytes().ct_eq(hello.secret)));
        if !holds {
            return self.refuse(id, pid, format!("it does not hold job {job}'s secret"));
        }
        if hello.pid != pid {
            return self.refuse(
                id,
                pid,
                format!(
                    "its hello says pid {}, the kernel says pid {pid}: a rank must run in the daemon's pid namespace",
                    hello.pid
                ),
            );
        }
        let rank = hello.rank;
        let n = self.setup.nranks;
        if rank >= n {
            return self.refuse(
                id,
                pid,
                format!(
                    "rank {rank} is out of range: job {job} has {n} ranks (0 to {})",
                    n - 1
                ),
            );
        }
        let other = self
            .ranks
            .iter()
            .find(|(r, p)| p.pid == pid && p.state == RankState::Running && **r != rank)
            .map(|(&r, _)| r);
        if let Some(other) = other {
            return self.refuse(
                id,
                pid,
                format!("pid {pid} already joined job {job} as rank {other}"),
            );
        }
        // The same process again, after its link closed.
        let rejoin = self.ranks.get(&rank).is_some_and(|r| {
            r.state == RankState::Running && r.pid == pid && r.conn.is_none() && r.same_process()
        });
        if let Some(c) = self.conns.get_mut(&id) {
            c.kind = ConnKind::Admitting { pid, rejoin };
        }
        self.send(msg::Up::Ctl(UpCtl::Join {
            conn: id,
            vpid: rank,
            pid,
            rejoin,
        }));
    }

    /// The coordinator's word on joining connection `id` as rank `rank`.
    pub(super) fn admit(&mut self, id: u64, rank: u32, refused: Option<String>) {
        let Some(ConnKind::Admitting { pid, rejoin }) = self.conns.get(&id).map(|c| c.kind) else {
            // It went away meanwhile.
            return;
        };
        if let Some(why) = refused {
            return self.refuse(id, pid, why);
        }
        if !rejoin {
            let name = ProcessName {
                jobid: self.setup.jobid,
                vpid: rank,
            };
            if let Err(e) = self.lc.add_process(name, pid) {
                return self.refuse(id, pid, format!("rank {rank}: {e}"));
            }
        }
        let admitted = encode_frame(Tag::Join, &Answer::Admitted.encode())
            .ok()
            .zip(self.conns.get_mut(&id))
            .is_some_and(|(frame, c)| c.stream.write_all(&frame).is_ok());
        if let Some(c) = self.conns.get_mut(&id) {
            c.kind = ConnKind::Rank(rank);
        }
        let start_time = snapc_posix::target::start_time(pid);
        let r = self.ranks.entry(rank).or_insert(RankProc {
            pid,
            child: None,
            start_time,
            state: RankState::Running,
            conn: None,
            updated: false,
            stopped: false,
        });
        r.pid = pid;
        r.state = RankState::Running;
        r.start_time = start_time;
        r.conn = Some(id);
        self.log(format!("rank {rank} joined (pid {pid})"));
        if !admitted {
            // Gone already: its link is closed, the reaping sees to it.
            self.drop_conn(id);
            self.report_rank(rank);
            return;
        }
        self.report_rank(rank);
        self.conn_backlog(id);
    }

    /// Refuses joining connection `id`: the reason goes to the process and
    /// to the log (a few lines per window), and the connection is closed.
    pub(super) fn refuse(&mut self, id: u64, pid: u32, why: String) {
        if let (Ok(frame), Some(c)) = (
            encode_frame(Tag::Join, &Answer::Refused(why.clone()).encode()),
            self.conns.get_mut(&id),
        ) {
            let _ = c.stream.write_all(&frame);
        }
        self.conns.remove(&id);
        self.refused(pid, &why);
    }

    /// Logs a process refused on the ranks' socket.
    pub(super) fn refused(&mut self, pid: u32, why: &str) {
        let job = self.setup.job.clone();
        let who = snapc_posix::target::who(pid);
        self.warnings.warn(
            "refused",
            format_args!("refused {who} on job {job}'s ranks' socket: {why}"),
        );
    }
}

impl Coordinator {
    /// Node `node` asks to admit `pid` as rank `vpid` (its hello was good
    /// there): refused when the job is ending or another process holds the
    /// rank.
    pub(super) fn on_join(&mut self, node: usize, conn: u64, vpid: u32, pid: u32, rejoin: bool) {
        let job = &self.opts.job;
        let refused = match self.ranks.get(vpid as usize) {
            None => Some(format!("rank {vpid} is out of range")),
            Some(_) if self.aborting => Some(format!("job {job} is ending")),
            Some(r) => {
                let same = r.pid == pid && r.node == Some(node);
                let again = rejoin && same && r.state == RankState::Running;
                if again || r.state == RankState::Waiting {
                    None
                } else {
                    let place = match (r.node, self.nodes.len()) {
                        (Some(n), l) if l > 1 && n != node => {
                            format!(" on node {}", self.node_name(n))
                        }
                        _ => String::new(),
                    };
                    Some(format!(
                        "rank {vpid} already joined job {job} (pid {}{place}, {})",
                        r.pid,
                        r.state.name()
                    ))
                }
            }
        };
        if refused.is_none()
            && let Some(r) = self.ranks.get_mut(vpid as usize)
        {
            // Held for this process from now: a second claim is refused
            // even before its node confirms.
            r.pid = pid;
            r.node = Some(node);
            r.state = RankState::Running;
            self.hosts_changed = true;
        }
        self.send_to(
            node,
            msg::Down::Ctl(DownCtl::Admit {
                conn,
                vpid,
                refused,
            }),
        );
    }
}
