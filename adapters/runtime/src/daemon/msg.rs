//! The messages between a job's coordinator (the global coordinator's
//! side) and its node agents (the local coordinators' side).
//!
//! The protocol's own messages travel as the encoded bytes the machines
//! produce and take (docs/PROTOCOL.md §5): JOB_STATE down, ORTED_STATE up,
//! a rank's REQUEST_OP up and the answers to it down. What the runtime adds
//! (the ranks' states, their handshake results, admissions, signals,
//! launches) is JSON. One process running both sides (`snapc run` on one
//! node) passes these frames through a queue; across nodes they go over an
//! authenticated TCP link ([`super::net`]), in order and without
//! duplicates, which the protocol needs (ORTED_STATE and JOB_STATE carry no
//! operation id: docs/PROTOCOL.md §8).
//!
//! ```text
//! | kind: u8 | body |
//! kind 1 JOB_STATE     body: the message's bytes
//! kind 2 ORTED_STATE   body: the message's bytes
//! kind 3 to a rank     body: vpid u32 BE | link tag u8 | the message's bytes
//! kind 4 to every rank body: link tag u8 | the message's bytes
//! kind 5 from a rank   body: vpid u32 BE | REQUEST_OP bytes
//! kind 6 runtime       body: one JSON object ([`Down`] or [`Up`])
//! ```

use super::supervise::RankState;
use serde::{Deserialize, Serialize};
use snapc_posix::link::Tag;
use std::path::PathBuf;

/// What a node agent is told once, when it joins the job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Setup {
    pub(super) job: String,
    pub(super) jobid: u32,
    pub(super) nranks: u32,
    /// Its index among the job's nodes (its local coordinator's).
    pub(super) index: usize,
    /// Its node's name.
    pub(super) node: String,
    /// The ranks are started by a launcher and join.
    pub(super) launcher: bool,
    pub(super) store: PathBuf,
    /// The ranks' `SNAPC_SNAPSHOT_ROOT`.
    pub(super) staging: PathBuf,
    pub(super) timeout_s: f64,
    pub(super) checkpoint_timeout_s: f64,
    /// How long a lost coordinator link may stay silent (node agents).
    pub(super) node_timeout_s: f64,
}

/// What one node's agent starts: its share of the ranks (none when a
/// launcher starts them), from a snapshot or not.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Launch {
    pub(super) ranks: Vec<u32>,
    pub(super) argv: Vec<String>,
    pub(super) cwd: Option<PathBuf>,
    pub(super) restart_from: Option<PathBuf>,
    pub(super) launcher: bool,
}

/// A rank's state as its node's agent sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct RankInfo {
    pub(super) vpid: u32,
    pub(super) pid: u32,
    pub(super) state: RankState,
    pub(super) connected: bool,
    pub(super) stopped: bool,
    /// It reported its pid with LOCAL_UPDATE (a restarted rank does).
    pub(super) updated: bool,
}

/// A rank's result in the local coordinator's operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct RankResult {
    pub(super) vpid: u32,
    pub(super) pid: u32,
    /// Its final state's name when it wrote one (CONTINUE, TERM, ...).
    pub(super) state: Option<String>,
    /// Why it failed, when it did.
    pub(super) failed: Option<String>,
    /// What the FIFO side knows beyond the machine (EMFILE, a stopped or
    /// exited process).
    pub(super) note: Option<String>,
    /// The handshake's number.
    pub(super) n: u32,
    /// Stage timings, milliseconds.
    pub(super) timings: serde_json::Value,
}

impl RankResult {
    /// It took part: CONTINUE or TERM.
    pub(super) fn complete(&self) -> bool {
        matches!(self.state.as_deref(), Some("CONTINUE" | "TERM"))
    }

    /// Its outcome as the operation's report names it.
    pub(super) fn outcome(&self) -> String {
        match (&self.state, &self.failed) {
            (Some(s), _) => s.clone(),
            (None, Some(f)) => format!("failed: {f}"),
            (None, None) => "unknown".into(),
        }
    }

    /// It failed, or ended with a state that fails the operation.
    pub(super) fn failing(&self) -> bool {
        !matches!(self.state.as_deref(), Some("CONTINUE" | "TERM" | "RUNNING"))
    }
}

/// The runtime's messages to an agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(super) enum DownCtl {
    Setup(Setup),
    Launch(Launch),
    /// The answer to [`UpCtl::Join`]: admitted, or refused with the reason.
    Admit {
        conn: u64,
        vpid: u32,
        refused: Option<String>,
    },
    /// A signal to every rank of the node (SIGTERM goes with SIGCONT);
    /// with `only_stopped`, to the stopped ones.
    Signal {
        sig: i32,
        only_stopped: bool,
    },
    /// These ranks move away (a migration): SIGKILL, and their end is
    /// no failure.
    Terminate {
        ranks: Vec<u32>,
    },
    /// These ranks move here (a migration): started beside the others.
    Start(Launch),
    /// The job ended: end what is left and exit.
    Shutdown,
}

/// The runtime's messages from an agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(super) enum UpCtl {
    /// Set up: its sockets are bound.
    Ready {
        node: String,
        pid: u32,
    },
    Rank(RankInfo),
    /// A process that holds the job's secret asks to join as `vpid`: the
    /// coordinator, which sees every node, decides.
    Join {
        conn: u64,
        vpid: u32,
        pid: u32,
        rejoin: bool,
    },
    Result(RankResult),
    /// Its launch failed: the job cannot run.
    Failed {
        why: String,
    },
}

/// Messages to an agent.
#[derive(Debug, Clone)]
pub(super) enum Down {
    JobState(Vec<u8>),
    ToRank { vpid: u32, tag: Tag, bytes: Vec<u8> },
    ToAllRanks { tag: Tag, bytes: Vec<u8> },
    Ctl(DownCtl),
}

/// Messages from an agent.
#[derive(Debug, Clone)]
pub(super) enum Up {
    OrtedState(Vec<u8>),
    RankRequest { vpid: u32, bytes: Vec<u8> },
    Ctl(UpCtl),
}

const JOB_STATE: u8 = 1;
const ORTED_STATE: u8 = 2;
const TO_RANK: u8 = 3;
const TO_ALL_RANKS: u8 = 4;
const RANK_REQUEST: u8 = 5;
const CTL: u8 = 6;

fn tag_of(b: u8) -> Option<Tag> {
    match b {
        1 => Some(Tag::Snapc),
        2 => Some(Tag::SnapcFull),
        3 => Some(Tag::Join),
        _ => None,
    }
}

/// A runtime message's frame.
fn ctl_frame(c: &impl Serialize) -> Vec<u8> {
    let mut v = vec![CTL];
    // Plain data: serializing cannot fail.
    let _ = serde_json::to_writer(&mut v, c);
    v
}

/// A runtime message from a frame's body.
fn ctl_of<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("a malformed message: {e}"))
}

fn split_u32(b: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = b.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*head), rest))
}

impl Down {
    pub(super) fn encode(&self) -> Vec<u8> {
        match self {
            Self::JobState(b) => [&[JOB_STATE][..], b].concat(),
            Self::ToRank { vpid, tag, bytes } => {
                [&[TO_RANK][..], &vpid.to_be_bytes(), &[*tag as u8], bytes].concat()
            }
            Self::ToAllRanks { tag, bytes } => [&[TO_ALL_RANKS, *tag as u8][..], bytes].concat(),
            Self::Ctl(c) => ctl_frame(c),
        }
    }

    /// Any bytes give a message or an error, never a panic.
    pub(super) fn decode(frame: &[u8]) -> Result<Self, String> {
        let (&kind, body) = frame.split_first().ok_or("an empty frame")?;
        match kind {
            JOB_STATE => Ok(Self::JobState(body.to_vec())),
            TO_RANK => {
                let (vpid, rest) = split_u32(body).ok_or("a short frame to a rank")?;
                let (&t, bytes) = rest
                    .split_first()
                    .ok_or("a frame to a rank without a tag")?;
                let tag = tag_of(t).ok_or_else(|| format!("link tag {t}"))?;
                Ok(Self::ToRank {
                    vpid,
                    tag,
                    bytes: bytes.to_vec(),
                })
            }
            TO_ALL_RANKS => {
                let (&t, bytes) = body
                    .split_first()
                    .ok_or("a frame to the ranks without a tag")?;
                let tag = tag_of(t).ok_or_else(|| format!("link tag {t}"))?;
                Ok(Self::ToAllRanks {
                    tag,
                    bytes: bytes.to_vec(),
                })
            }
            CTL => ctl_of(body).map(Self::Ctl),
            k => Err(format!("a frame of kind {k} from the coordinator")),
        }
    }
}

impl Up {
    pub(super) fn encode(&self) -> Vec<u8> {
        match self {
            Self::OrtedState(b) => [&[ORTED_STATE][..], b].concat(),
            Self::RankRequest { vpid, bytes } => {
                [&[RANK_REQUEST][..], &vpid.to_be_bytes(), bytes].concat()
            }
            Self::Ctl(c) => ctl_frame(c),
        }
    }

    /// Any bytes give a message or an error, never a panic.
    pub(super) fn decode(frame: &[u8]) -> Result<Self, String> {
        let (&kind, body) = frame.split_first().ok_or("an empty frame")?;
        match kind {
            ORTED_STATE => Ok(Self::OrtedState(body.to_vec())),
            RANK_REQUEST => {
                let (vpid, bytes) = split_u32(body).ok_or("a short request frame")?;
                Ok(Self::RankRequest {
                    vpid,
                    bytes: bytes.to_vec(),
                })
            }
            CTL => ctl_of(body).map(Self::Ctl),
            k => Err(format!("a frame of kind {k} from a node agent")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_garbage_is_an_error() {
        let downs = [
            Down::JobState(vec![0, 0, 0, 1, 7]),
            Down::ToRank {
                vpid: 7,
                tag: Tag::SnapcFull,
                bytes: vec![1, 2, 3],
            },
            Down::ToAllRanks {
                tag: Tag::Snapc,
                bytes: vec![9],
            },
            Down::Ctl(DownCtl::Signal {
                sig: 15,
                only_stopped: false,
            }),
        ];
        for d in downs {
            let again = Down::decode(&d.encode()).unwrap();
            assert_eq!(again.encode(), d.encode());
        }
        let ups = [
            Up::OrtedState(vec![4, 5]),
            Up::RankRequest {
                vpid: 3,
                bytes: vec![8],
            },
            Up::Ctl(UpCtl::Rank(RankInfo {
                vpid: 1,
                pid: 42,
                state: RankState::Signalled(9),
                connected: true,
                stopped: false,
                updated: false,
            })),
        ];
        for u in ups {
            let again = Up::decode(&u.encode()).unwrap();
            assert_eq!(again.encode(), u.encode());
        }
        for bad in [&[][..], &[3, 0, 0], &[3, 0, 0, 0, 1, 9], &[6, b'{'], &[77]] {
            assert!(Down::decode(bad).is_err(), "{bad:?}");
        }
        for bad in [&[][..], &[5, 0], &[6, b'x'], &[1, 2]] {
            assert!(Up::decode(bad).is_err(), "{bad:?}");
        }
    }
}
