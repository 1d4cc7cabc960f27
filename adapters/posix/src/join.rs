//! Ranks that join their node daemon: snapc's own extension of the
//! rank-to-daemon link (docs/PROTOCOL.md §10), for ranks that a launcher
//! (`mpirun`, `srun`) started rather than the daemon.
//!
//! A daemon that forks its ranks knows their pids and admits a connection
//! by its `SO_PEERCRED` pid. Ranks started by a launcher are not its
//! children: the daemon puts a random job secret in the launcher's
//! environment ([`SECRET_VAR`]; never on a command line), the launcher
//! passes its environment on to the ranks, and each rank, right after it
//! connected, sends one JOIN frame (tag 3, [`crate::link::Tag::Join`]) with
//! its rank, its pid and the secret. The daemon answers with one JOIN
//! frame: admitted, or refused with the reason, after which it closes the
//! connection. Nothing else may come first on such a link.
//!
//! ```text
//! hello  (rank to daemon)  | version u8 = 1 | rank u32 BE | pid u32 BE | secret: 1 to 256 bytes |
//! answer (daemon to rank)  | status u8: 0 admitted, 1 refused | reason: UTF-8, empty when admitted |
//! ```
//!
//! A rank learns its rank from [`RANK_VARS`], the first one set:
//! `SNAPC_RANK`, else what the launcher gives each rank (Open MPI's
//! `OMPI_COMM_WORLD_RANK`, PMIx's `PMIX_RANK`, Slurm's `SLURM_PROCID`,
//! PMI's `PMI_RANK`). A restarted job's launcher cannot give each rank its
//! own snapshot directory, so the daemon names the snapshot
//! ([`RESTART_SNAPSHOT_VAR`]) and each rank restarts from its own
//! `rank-<r>/` in it.

use crate::link::{DaemonLink, LinkError, Tag};
use std::time::Instant;

/// The environment variable holding the job's secret.
pub const SECRET_VAR: &str = "SNAPC_JOB_SECRET";

/// The environment variable naming the snapshot a launched job restarts
/// from; each rank reads `<snapshot>/rank-<rank>/`.
pub const RESTART_SNAPSHOT_VAR: &str = "SNAPC_RESTART_SNAPSHOT";

/// Where a rank's rank comes from, in this order: snapc's own, then the
/// launchers' (Open MPI, PMIx, Slurm, PMI).
pub const RANK_VARS: [&str; 5] = [
    "SNAPC_RANK",
    "OMPI_COMM_WORLD_RANK",
    "PMIX_RANK",
    "SLURM_PROCID",
    "PMI_RANK",
];

/// The version of the hello frame.
pub const VERSION: u8 = 1;

/// The longest secret a hello carries.
pub const MAX_SECRET: usize = 256;

/// The rank from the first of [`RANK_VARS`] that is set, with the
/// variable's name; `Ok(None)` when none is. A value that is not a
/// non-negative integer is an error naming the variable and the value.
pub fn rank_from(
    get: impl Fn(&str) -> Option<String>,
) -> Result<Option<(u32, &'static str)>, (&'static str, String)> {
    for var in RANK_VARS {
        if let Some(v) = get(var) {
            return match v.trim().parse() {
                Ok(rank) => Ok(Some((rank, var))),
                Err(_) => Err((var, v)),
            };
        }
    }
    Ok(None)
}

/// A job's secret. Its `Debug` shows nothing of it, so that it never
/// reaches a log through a configuration printed whole.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A secret of these bytes (1 to [`MAX_SECRET`]).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Option<Self> {
        let bytes = bytes.into();
        (!bytes.is_empty() && bytes.len() <= MAX_SECRET).then_some(Self(bytes))
    }

    /// Its bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A rank's hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello<'a> {
    /// The rank it claims.
    pub rank: u32,
    /// Its pid as it sees it (the daemon checks it against `SO_PEERCRED`).
    pub pid: u32,
    /// The job's secret as it holds it.
    pub secret: &'a [u8],
}

/// Why a hello (or an answer) does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// Shorter than its fixed part.
    #[error("a hello is at least 10 bytes, this one {0}")]
    Short(usize),
    /// Another version of the frame.
    #[error("hello version {0}, this daemon speaks {VERSION}")]
    Version(u8),
    /// No secret, or one too long.
    #[error("a secret of {0} bytes (1 to {MAX_SECRET})")]
    SecretLength(usize),
    /// An answer that is neither admitted nor refused.
    #[error("join answer with status {0}")]
    Status(u8),
    /// An answer that is empty.
    #[error("empty join answer")]
    Empty,
}

impl<'a> Hello<'a> {
    /// The frame's payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.secret.len());
        out.push(VERSION);
        out.extend_from_slice(&self.rank.to_be_bytes());
        out.extend_from_slice(&self.pid.to_be_bytes());
        out.extend_from_slice(self.secret);
        out
    }

    /// Parses a payload; never panics.
    pub fn parse(payload: &'a [u8]) -> Result<Self, JoinError> {
        let (head, secret) = payload
            .split_first_chunk::<9>()
            .ok_or(JoinError::Short(payload.len()))?;
        let [version, r0, r1, r2, r3, p0, p1, p2, p3] = *head;
        if version != VERSION {
            return Err(JoinError::Version(version));
        }
        if secret.is_empty() || secret.len() > MAX_SECRET {
            return Err(JoinError::SecretLength(secret.len()));
        }
        Ok(Self {
            rank: u32::from_be_bytes([r0, r1, r2, r3]),
            pid: u32::from_be_bytes([p0, p1, p2, p3]),
            secret,
        })
    }
}

/// The daemon's answer to a hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The rank is part of the job.
    Admitted,
    /// Refused, and why (the daemon closes the connection).
    Refused(String),
}

impl Answer {
    /// The frame's payload.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Admitted => vec![0],
            Self::Refused(why) => {
                let mut out = vec![1];
                out.extend_from_slice(why.as_bytes());
                out
            }
        }
    }

    /// Parses a payload; never panics.
    pub fn parse(payload: &[u8]) -> Result<Self, JoinError> {
        match payload.split_first() {
            Some((0, _)) => Ok(Self::Admitted),
            Some((1, why)) => Ok(Self::Refused(String::from_utf8_lossy(why).into_owned())),
            Some((s, _)) => Err(JoinError::Status(*s)),
            None => Err(JoinError::Empty),
        }
    }
}

/// Sends `hello` on a fresh link and waits until `deadline` for the
/// daemon's answer; a refusal is [`LinkError::Refused`] with the
/// daemon's reason.
pub fn join(link: &mut DaemonLink, hello: &Hello<'_>, deadline: Instant) -> Result<(), LinkError> {
    link.send(Tag::Join, &hello.encode(), deadline)?;
    loop {
        match link.recv(deadline)? {
            Some((Tag::Join, payload)) => {
                return match Answer::parse(&payload) {
                    Ok(Answer::Admitted) => Ok(()),
                    Ok(Answer::Refused(why)) => Err(LinkError::Refused(why)),
                    Err(e) => Err(LinkError::Malformed(e.to_string())),
                };
            }
            Some((tag, _)) => {
                return Err(LinkError::Malformed(format!(
                    "a {tag:?} frame before the answer to the hello"
                )));
            }
            // A signal cut the wait short: wait on until the deadline.
            None if Instant::now() < deadline => {}
            None => {
                return Err(LinkError::Timeout(
                    deadline.saturating_duration_since(Instant::now()),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trip_and_damage() {
        let h = Hello {
            rank: 3,
            pid: 4242,
            secret: b"s3cret",
        };
        let bytes = h.encode();
        assert_eq!(&bytes[..9], &[1, 0, 0, 0, 3, 0, 0, 0x10, 0x92]);
        assert_eq!(Hello::parse(&bytes), Ok(h));
        for n in 0..9 {
            assert_eq!(Hello::parse(&bytes[..n]), Err(JoinError::Short(n)));
        }
        assert_eq!(Hello::parse(&bytes[..9]), Err(JoinError::SecretLength(0)));
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert_eq!(Hello::parse(&v2), Err(JoinError::Version(2)));
        let long = [7u8; MAX_SECRET + 1];
        let too_long = Hello { secret: &long, ..h }.encode();
        assert_eq!(
            Hello::parse(&too_long),
            Err(JoinError::SecretLength(MAX_SECRET + 1))
        );
    }

    #[test]
    fn answer_round_trip_and_damage() {
        for a in [
            Answer::Admitted,
            Answer::Refused("rank 2 already joined".into()),
        ] {
            assert_eq!(Answer::parse(&a.encode()), Ok(a));
        }
        assert_eq!(Answer::parse(&[]), Err(JoinError::Empty));
        assert_eq!(Answer::parse(&[9]), Err(JoinError::Status(9)));
    }

    #[test]
    fn the_rank_comes_from_snapc_then_the_launchers() {
        let vars = |set: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                set.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(rank_from(vars(&[])), Ok(None));
        assert_eq!(
            rank_from(vars(&[("PMI_RANK", "7"), ("SLURM_PROCID", "5")])),
            Ok(Some((5, "SLURM_PROCID")))
        );
        assert_eq!(
            rank_from(vars(&[("OMPI_COMM_WORLD_RANK", "2"), ("SNAPC_RANK", "1")])),
            Ok(Some((1, "SNAPC_RANK")))
        );
        assert_eq!(
            rank_from(vars(&[("PMIX_RANK", "-1")])),
            Err(("PMIX_RANK", "-1".to_string()))
        );
    }

    #[test]
    fn a_secret_never_shows_in_debug() {
        let s = Secret::new(b"topsecret".to_vec()).unwrap();
        assert!(!format!("{s:?}").contains("topsecret"));
        assert!(Secret::new(Vec::new()).is_none());
        assert!(Secret::new(vec![1; MAX_SECRET + 1]).is_none());
    }
}
