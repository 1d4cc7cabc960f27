//! The Slurm test cluster (tests/cluster/) comes up with three nodes, each
//! with its own hostname; `srun` reaches every node; an MPI program started
//! by `srun --mpi=pmix` runs two ranks per node that talk across nodes; and
//! the cluster goes down again. Skips without root and Slurm (fails instead
//! with SNAPC_REQUIRE_SLURM=1).

use snapc_test_cluster::Cluster;

#[test]
fn three_nodes_run_srun_and_an_mpi_job() {
    let Some(c) = Cluster::up(3) else { return };
    let names: Vec<String> = c.nodes().to_vec();
    assert_eq!(names, ["node1", "node2", "node3"]);

    // Every node has its own UTS namespace: the hostname is the node name,
    // and Slurm agrees.
    let out = c.srun(&["-N3", "sh", "-c", "echo $(hostname) $SLURMD_NODENAME"]);
    out.expect_success("srun -N3 hostname");
    assert_eq!(
        out.sorted_lines(),
        ["node1 node1", "node2 node2", "node3 node3"],
        "{out:?}"
    );
    for node in &names {
        let out = c.run_on(node, "hostname");
        out.expect_success("hostname on a node");
        assert_eq!(out.stdout.trim(), node);
    }

    let Some(hello) = c.mpi_hello() else { return };
    let hello = hello.to_str().expect("utf-8 path");
    let out = c.srun_mpi(&["-N3", "--ntasks-per-node=2", "--mpi=pmix", hello]);
    out.expect_success("srun --mpi=pmix mpi_hello");
    // ranks 0..5, two per node in block order, each received from the rank
    // before it and saw the sum 0+1+..+5.
    let expected: Vec<String> = (0..6)
        .map(|r| {
            format!(
                "rank {r} of 6 on node{}: from {}, sum 15",
                r / 2 + 1,
                (r + 5) % 6
            )
        })
        .collect();
    assert_eq!(out.sorted_lines(), expected, "{out:?}");

    c.down();
}
