//! The loaded runs: the bench measures its sections a second time beside a
//! CPU-bound load it starts itself (one busy process per core, at the same
//! priority as the bench), so that the ratios can be checked to hold when
//! the machine is busy.

use crate::child::Proc;

/// The busy processes; they end when this is dropped.
pub struct Load(#[allow(dead_code)] Vec<Proc>);

impl Load {
    /// One busy process (`__busy`) per core.
    pub fn start() -> Result<Self, String> {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        (0..n)
            .map(|_| Proc::start("__busy", &[]))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

/// Which run a figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The machine as it is.
    Quiet,
    /// Beside [`Load`].
    Loaded,
}

impl Mode {
    /// Its name in the tables.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Quiet => "quiet",
            Mode::Loaded => "loaded",
        }
    }
}

/// The 1, 5 and 15 minute load averages (`/proc/loadavg`).
pub fn loadavg() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut f = text
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(f64::NAN));
    [(); 3].map(|()| f.next().unwrap_or(f64::NAN))
}

/// How far a loaded ratio may stray from the quiet one and still agree.
pub const AGREEMENT: f64 = 0.20;

/// Whether `loaded` agrees with `quiet` within [`AGREEMENT`]; the relative
/// difference.
pub fn agrees(quiet: f64, loaded: f64) -> (bool, f64) {
    let d = loaded / quiet - 1.0;
    (d.abs() <= AGREEMENT, d)
}

/// One line of the summary: a figure with a goal, as each run found it.
#[derive(Debug, Clone)]
pub struct Goal {
    /// What is measured.
    pub figure: String,
    /// The goal, in words.
    pub goal: String,
    /// The quiet run's figure, and whether it meets the goal.
    pub quiet: Option<(String, bool)>,
    /// The loaded run's figure, and whether it meets the goal.
    pub loaded: Option<(String, bool)>,
    /// For a ratio: whether the loaded run's agrees with the quiet run's
    /// (within [`AGREEMENT`]), and the relative difference.
    pub agreement: Option<(bool, f64)>,
}

impl Goal {
    /// A goal on a ratio `x` (`met` says whether a value meets it); both
    /// runs' values when there are two.
    pub fn ratio(
        figure: impl Into<String>,
        goal: impl Into<String>,
        values: &[(Mode, f64)],
        met: impl Fn(f64) -> bool,
    ) -> Self {
        let get = |m: Mode| values.iter().find(|(k, _)| *k == m).map(|(_, v)| *v);
        let show = |v: f64| (format!("{v:.2}x"), met(v));
        Self {
            figure: figure.into(),
            goal: goal.into(),
            quiet: get(Mode::Quiet).map(show),
            loaded: get(Mode::Loaded).map(show),
            agreement: get(Mode::Quiet)
                .zip(get(Mode::Loaded))
                .map(|(q, l)| agrees(q, l)),
        }
    }
}

/// The summary table of `goals`.
pub fn summary(goals: &[Goal]) -> String {
    use std::fmt::Write as _;
    let mut md = String::from(
        "| figure | goal | quiet | loaded | loaded against quiet |\n|---|---|---|---|---|\n",
    );
    let run = |r: &Option<(String, bool)>| match r {
        Some((v, true)) => format!("{v} (met)"),
        Some((v, false)) => format!("{v} (**missed**)"),
        None => "not run".into(),
    };
    for g in goals {
        let agree = match g.agreement {
            Some((true, d)) => format!("{:+.0}%, agrees", d * 100.0),
            Some((false, d)) => format!("{:+.0}%, **does not agree**", d * 100.0),
            None => "–".into(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {agree} |",
            g.figure,
            g.goal,
            run(&g.quiet),
            run(&g.loaded)
        );
    }
    md
}
