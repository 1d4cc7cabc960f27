//! Open MPI for the tests: `mpirun` (Debian's `openmpi-bin`), as root in CI.
//! Without it the tests that need it say they skip; with
//! `SNAPC_REQUIRE_OMPI=1` (set by `.ci/run`) they fail instead.

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

/// Whether `mpirun` works; if not, says why the test skips.
pub fn available(test: &str) -> bool {
    let works = Command::new("mpirun")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !works {
        skip(test, "no working mpirun");
    }
    works
}

/// The heat stencil (`adapters/runtime/mpi/heat.c`) built with `mpicc`
/// against libsnapc installed by `adapters/c/install.sh` into a prefix of
/// the test run's own, and that prefix's pkg-config directory; `None`
/// after saying why the test skips (no mpirun, mpicc or pkg-config).
pub fn heat(test: &str) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    use std::path::{Path, PathBuf};
    use std::sync::OnceLock;
    static BUILT: OnceLock<Result<(PathBuf, PathBuf), String>> = OnceLock::new();
    if !available(test) {
        return None;
    }
    for tool in ["mpicc", "pkg-config"] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            skip(test, &format!("no {tool}"));
            return None;
        }
    }
    let built = BUILT.get_or_init(|| {
        // Kept for the test binary's life: the programs run from it.
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?.keep();
        let prefix = dir.join("prefix");
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut install = Command::new("bash");
        install
            .arg(manifest.join("../c/install.sh"))
            .arg("--prefix")
            .arg(&prefix);
        let release = Path::new(env!("CARGO_BIN_EXE_snapc"))
            .parent()
            .is_some_and(|d| d.ends_with("release"));
        if !release {
            install.arg("--debug");
        }
        let out = install.output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "adapters/c/install.sh: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let pc = prefix.join("lib/pkgconfig");
        let heat = snapc_runtime::mpi_demo::build_heat(&dir, Some(&pc))?;
        Ok((heat, pc))
    });
    match built {
        Ok(b) => Some(b.clone()),
        Err(e) => panic!("building the heat stencil: {e}"),
    }
}

/// The iteration at which every one of `ranks` ranks recorded its part of
/// snapshot `seq` in `dir`: one for all of them, and later than `previous`.
pub fn snapshot_iteration(dir: &std::path::Path, ranks: u32, seq: u64, previous: u64) -> u64 {
    let at = snapc_runtime::mpi_demo::snapshot_iterations(dir, ranks);
    let first = at[0].expect("rank 0 recorded its iteration");
    assert!(
        at.iter().all(|a| *a == Some(first)),
        "snapshot {seq}: ranks at iterations {at:?}"
    );
    assert!(
        first > previous,
        "snapshot {seq} at {first}, after {previous}"
    );
    first
}
