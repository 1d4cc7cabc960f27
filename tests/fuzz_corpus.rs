//! Replays every stored fuzz input (fuzz/corpus/<target>/*) through the same
//! checks the fuzz targets run, on stable Rust, so that `cargo test` guards
//! every crash ever found and every seed.

use snapc_oracles as checks;
use std::path::Path;

/// Targets whose oracle and replay live with the code they fuzz: libsnapc's
/// runtime entry points (adapters/c/src/runtime/fuzz.rs, replayed by
/// snapc-c's unit tests).
const REPLAYED_ELSEWHERE: &[&str] = &["capi_runtime"];

#[test]
fn every_fuzz_target_is_replayed() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml"))
            .unwrap();
    let bins: Vec<&str> = manifest
        .split("[[bin]]")
        .skip(1)
        .filter_map(|section| section.lines().find_map(|l| l.strip_prefix("name = ")))
        .map(|name| name.trim_matches('"'))
        .collect();
    assert!(bins.len() >= checks::TARGETS.len());
    for bin in bins.iter().filter(|b| !REPLAYED_ELSEWHERE.contains(b)) {
        assert!(
            checks::TARGETS.contains(bin),
            "fuzz target {bin} has no replay check"
        );
    }
}

#[test]
fn stored_inputs_pass_their_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut total = 0;
    for target in checks::TARGETS {
        let dir = root.join(target);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut n = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            assert!(checks::run(target, &data), "unknown target {target}");
            n += 1;
        }
        assert!(n > 0, "no seed inputs for {target}");
        total += n;
    }
    eprintln!("{total} stored fuzz inputs replayed");
}
