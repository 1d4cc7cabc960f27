//! Open MPI for the tests: `mpirun` (Debian's `openmpi-bin`), as root in CI.
//! Without it the tests that need it say they skip; with
//! `SNAPC_REQUIRE_OMPI=1` (set by `.ci/run`) they fail instead.

use std::collections::BTreeMap;
use std::process::Command;

/// Says that `test` skips because `why`, or fails when Open MPI is required.
pub fn skip(test: &str, why: &str) {
    assert!(
        std::env::var_os("SNAPC_REQUIRE_OMPI").is_none_or(|v| v != "1"),
        "{test}: {why} (SNAPC_REQUIRE_OMPI=1; apt-get install openmpi-bin libopenmpi-dev)"
    );
    // Straight to the terminal: the harness captures eprintln! of passing tests.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {test}: {why} (apt-get install openmpi-bin libopenmpi-dev)"
    );
}

/// `mpirun` and the options every test gives it (root allowed, more ranks
/// than cores, each output line tagged with its rank), or `None` after
/// saying why the test skips.
pub fn mpirun(test: &str) -> Option<Vec<String>> {
    let works = Command::new("mpirun")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !works {
        skip(test, "no working mpirun");
        return None;
    }
    Some(
        [
            "mpirun",
            "--allow-run-as-root",
            "--oversubscribe",
            "--tag-output",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
}

/// `rank -> text` of the lines mpirun tagged as stdout (`[1,3]<stdout>:text`)
/// that start with `prefix`, the prefix removed; the last one of each rank.
pub fn tagged(lines: &[String], prefix: &str) -> BTreeMap<u32, String> {
    lines
        .iter()
        .filter_map(|l| {
            let (tag, text) = l.strip_prefix('[')?.split_once("]<stdout>:")?;
            let rank = tag.split_once(',')?.1.parse().ok()?;
            Some((rank, text.strip_prefix(prefix)?.to_string()))
        })
        .collect()
}
