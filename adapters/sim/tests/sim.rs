//! The simulator's own tests: small sweeps come out clean, a seed replays
//! byte-identically, and deliberately broken adapters are caught (the
//! simulator is not blind).

use snapc_sim::{FaultLevel, Mutation, Options, RunResult, run_seed};

fn opts(faults: FaultLevel, mutation: Mutation) -> Options {
    Options {
        faults,
        mutation,
        ..Options::default()
    }
}

fn sweep(seeds: std::ops::Range<u64>, o: &Options) -> Vec<RunResult> {
    seeds.map(|s| run_seed(s, o)).collect()
}

fn failing(results: &[RunResult]) -> Vec<(u64, String)> {
    results
        .iter()
        .filter(|r| !r.violations.is_empty())
        .map(|r| (r.seed, format!("{:?}", r.violations[0])))
        .collect()
}

#[test]
fn sweep_without_faults_is_clean() {
    let results = sweep(0..150, &opts(FaultLevel::None, Mutation::None));
    assert!(failing(&results).is_empty(), "{:?}", failing(&results));
    // Without faults the operations succeed.
    let failed: u64 = results.iter().map(|r| r.ops_failed).sum();
    let ok: u64 = results.iter().map(|r| r.ops_ok).sum();
    let established: u64 = results.iter().map(|r| r.established).sum();
    assert!(
        ok > 300 && established > 150,
        "ok {ok}, established {established}"
    );
    assert!(failed * 20 < ok, "failed {failed} of {ok}");
}

#[test]
fn sweep_with_faults_is_clean() {
    for level in [FaultLevel::Light, FaultLevel::Heavy] {
        let results = sweep(1000..1150, &opts(level, Mutation::None));
        assert!(
            failing(&results).is_empty(),
            "{level:?}: {:?}",
            failing(&results)
        );
        let failed: u64 = results.iter().map(|r| r.ops_failed).sum();
        assert!(failed > 0, "{level:?}: the faults made nothing fail");
    }
}

#[test]
fn a_seed_replays_byte_identically() {
    let o = Options {
        trace: true,
        ..opts(FaultLevel::Heavy, Mutation::None)
    };
    for seed in [3, 77, 4242] {
        let a = run_seed(seed, &o);
        let b = run_seed(seed, &o);
        assert!(!a.trace.is_empty());
        assert_eq!(a.trace, b.trace, "seed {seed}");
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
        assert_eq!(a.events, b.events);
        // Keeping the lines does not change the run.
        let quiet = run_seed(seed, &opts(FaultLevel::Heavy, Mutation::None));
        assert_eq!(quiet.trace_hash, a.trace_hash, "seed {seed}");
    }
    assert_ne!(run_seed(1, &o).trace_hash, run_seed(2, &o).trace_hash);
}

/// A sweep over a broken adapter finds a violation of the expected kind and
/// names its seed, and that seed replays to the same violation.
fn caught(mutation: Mutation, kind: &str) {
    let o = opts(FaultLevel::Light, mutation);
    let results = sweep(0..100, &o);
    let first = results
        .iter()
        .find(|r| r.violations.iter().any(|v| v.kind == kind))
        .unwrap_or_else(|| panic!("{mutation:?}: no {kind} violation in 100 seeds"));
    let again = run_seed(first.seed, &o);
    assert_eq!(again.violations, first.violations, "seed {}", first.seed);
    // The same seeds are clean without the defect.
    let clean = run_seed(first.seed, &opts(FaultLevel::Light, Mutation::None));
    assert!(clean.violations.is_empty(), "{:?}", clean.violations);
}

#[test]
fn skipping_the_unlink_is_caught() {
    caught(Mutation::SkipUnlink, "fifo");
}

#[test]
fn releasing_before_every_rank_reported_is_caught() {
    caught(Mutation::ForgeFinished, "established");
}

#[test]
fn running_the_application_while_prepared_is_caught() {
    caught(Mutation::RunWhilePrepared, "prepared");
}

#[test]
fn a_thousand_ranks_on_ten_nodes() {
    let o = Options {
        ranks: Some(1000),
        nodes: Some(10),
        ops: Some(2),
        ..Options::default()
    };
    let r = run_seed(5, &o);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!((r.nodes, r.ranks), (10, 1000));
    assert!(r.ops_ok >= 2, "{r:?}");
}
