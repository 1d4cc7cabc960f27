//! FIFO names of the handshake (docs/PROTOCOL.md §4).
//!
//! Handshake `n` of process `pid` uses `opal_cr_prog_read.<pid>_<n>` (the app
//! coordinator reads it) and `opal_cr_prog_write.<pid>_<n>` (it writes it),
//! both in the pipe directory; `pid` and `n` are decimal. When `n` advances is
//! the app coordinator's business; this module formats and parses names.

use super::error::{DecodeError, EmitError, ErrorKind};
use core::fmt::{self, Write as _};

/// The longest file name: the longer prefix, `.`, two 10-digit numbers and `_`.
pub const MAX_FILE_NAME_LEN: usize = 40;

/// A FIFO file name, without its directory.
pub type FileName = heapless::String<MAX_FILE_NAME_LEN>;

/// Which of the two FIFOs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FifoKind {
    /// The app coordinator reads it; the local coordinator writes it.
    ProgRead,
    /// The app coordinator writes it; the local coordinator reads it.
    ProgWrite,
}

impl FifoKind {
    /// The name's prefix, before the `.`.
    pub const fn prefix(self) -> &'static str {
        match self {
            Self::ProgRead => "opal_cr_prog_read",
            Self::ProgWrite => "opal_cr_prog_write",
        }
    }
}

/// One FIFO's name: kind, process id and handshake counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FifoName {
    /// Which FIFO.
    pub kind: FifoKind,
    /// The app coordinator's process id.
    pub pid: u32,
    /// The handshake counter.
    pub n: u32,
}

impl FifoName {
    /// The file name, without a directory.
    pub fn file_name(&self) -> FileName {
        let mut s = FileName::new();
        // MAX_FILE_NAME_LEN fits the longest name, so this cannot overflow.
        let _ = write!(s, "{self}");
        s
    }

    /// `dir/name` in a string of capacity `N`.
    pub fn path<const N: usize>(&self, dir: &str) -> Result<heapless::String<N>, EmitError> {
        let mut s = heapless::String::new();
        let sep = if dir.ends_with('/') { "" } else { "/" };
        write!(s, "{dir}{sep}{self}").map_err(|_| EmitError::TooSmall {
            needed: dir.len() + sep.len() + self.file_name().len(),
            available: N,
        })?;
        Ok(s)
    }

    /// Parses a file name, or a path whose last component is one.
    pub fn parse(name: &str) -> Result<Self, DecodeError> {
        let base_at = name.rfind('/').map_or(0, |i| i + 1);
        let base = name.get(base_at..).unwrap_or_default();
        let bad = |off: usize, kind| DecodeError::new(base_at + off, "fifo name", kind);
        let (kind, rest) = [FifoKind::ProgRead, FifoKind::ProgWrite]
            .into_iter()
            .find_map(|k| {
                base.strip_prefix(k.prefix())
                    .and_then(|r| r.strip_prefix('.'))
                    .map(|r| (k, r))
            })
            .ok_or(bad(0, ErrorKind::BadName))?;
        let rest_at = base.len() - rest.len();
        let (pid, n) = rest
            .split_once('_')
            .ok_or(bad(rest_at, ErrorKind::BadName))?;
        let pid = decimal(pid)
            .filter(|&p| p > 0)
            .ok_or(bad(rest_at, ErrorKind::BadNumber))?;
        let n = decimal(n).ok_or(bad(rest_at + pid_len(rest) + 1, ErrorKind::BadNumber))?;
        Ok(Self { kind, pid, n })
    }
}

fn pid_len(rest: &str) -> usize {
    rest.find('_').unwrap_or(rest.len())
}

/// A canonical decimal (no sign, no leading zero) within C `int` range, as `%d` prints it.
fn decimal(s: &str) -> Option<u32> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if !canonical {
        return None;
    }
    s.parse::<u32>().ok().filter(|&v| v <= i32::MAX as u32)
}

impl fmt::Display for FifoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}_{}", self.kind.prefix(), self.pid, self.n)
    }
}

/// The pair of FIFO names of one handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ChannelNames {
    /// The app coordinator's process id.
    pub pid: u32,
    /// The handshake counter.
    pub n: u32,
}

impl ChannelNames {
    /// The FIFO the app coordinator reads.
    pub const fn prog_read(&self) -> FifoName {
        FifoName {
            kind: FifoKind::ProgRead,
            pid: self.pid,
            n: self.n,
        }
    }

    /// The FIFO the app coordinator writes.
    pub const fn prog_write(&self) -> FifoName {
        FifoName {
            kind: FifoKind::ProgWrite,
            pid: self.pid,
            n: self.n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        let names = ChannelNames { pid: 4242, n: 3 };
        assert_eq!(
            names.prog_read().file_name().as_str(),
            "opal_cr_prog_read.4242_3"
        );
        assert_eq!(
            names.prog_write().file_name().as_str(),
            "opal_cr_prog_write.4242_3"
        );
        let p: heapless::String<64> = names.prog_write().path("/run/snapc/").unwrap();
        assert_eq!(p.as_str(), "/run/snapc/opal_cr_prog_write.4242_3");
        assert_eq!(FifoName::parse(&p), Ok(names.prog_write()));
        let longest = FifoName {
            kind: FifoKind::ProgWrite,
            pid: i32::MAX as u32,
            n: u32::MAX,
        };
        assert_eq!(longest.file_name().len(), MAX_FILE_NAME_LEN);
        assert!(longest.path::<16>("/tmp").is_err());
    }

    #[test]
    fn rejects_malformed_names() {
        for bad in [
            "",
            "opal_cr_prog_read",
            "opal_cr_prog_read.",
            "opal_cr_prog_read.12",
            "opal_cr_prog_read.12_",
            "opal_cr_prog_read._3",
            "opal_cr_prog_read.012_3",
            "opal_cr_prog_read.12_03",
            "opal_cr_prog_read.0_3",
            "opal_cr_prog_read.-1_3",
            "opal_cr_prog_read.+1_3",
            "opal_cr_prog_read.1_2_3",
            "opal_cr_prog_read.2147483648_0",
            "opal_cr_prog_reed.1_2",
            "opal_cr_prog_read.1_2/",
        ] {
            assert!(FifoName::parse(bad).is_err(), "{bad}");
        }
    }
}
