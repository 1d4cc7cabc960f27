//! The event trace: a 64-bit FNV-1a hash of every event delivered (always),
//! and its lines (with `--trace`).

/// A run's trace.
#[derive(Debug, Clone)]
pub struct Trace {
    hash: u64,
    lines: Option<Vec<String>>,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Trace {
    /// An empty trace; `keep` keeps the lines.
    pub fn new(keep: bool) -> Self {
        Self {
            hash: FNV_OFFSET,
            lines: keep.then(Vec::new),
        }
    }

    /// Whether lines are kept (callers format a line only then).
    pub fn keeps_lines(&self) -> bool {
        self.lines.is_some()
    }

    /// Hashes these bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.hash ^= u64::from(x);
            self.hash = self.hash.wrapping_mul(FNV_PRIME);
        }
    }

    /// Hashes a number, little-endian whatever the machine.
    pub fn word(&mut self, w: u64) {
        self.bytes(&w.to_le_bytes());
    }

    /// Keeps a line (when lines are kept) and hashes it.
    pub fn line(&mut self, f: impl FnOnce() -> String) {
        if let Some(lines) = self.lines.as_mut() {
            let l = f();
            lines.push(l);
        }
    }

    /// The hash so far.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// The lines kept.
    pub fn lines(&self) -> &[String] {
        self.lines.as_deref().unwrap_or(&[])
    }
}
