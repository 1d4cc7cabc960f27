//! The node a process runs on, by name, and paths that carry it.
//!
//! A job across nodes has one node agent per node; the nodes may share a
//! file system, so each agent's socket and pipe directory carry its node's
//! name. A launcher (`srun`, `mpirun`) gives every rank the same
//! environment, so the paths it passes on hold `{node}` ([`PLACEHOLDER`])
//! where each rank puts the name of the node it runs on: the same name its
//! node's agent uses.

/// What [`expand`] replaces with the node's name.
pub const PLACEHOLDER: &str = "{node}";

/// This node's name: `SNAPC_NODE`, else Slurm's `SLURMD_NODENAME`, else
/// the host name (up to its first dot, as Slurm names nodes).
pub fn name() -> String {
    name_from(|k| std::env::var(k).ok())
}

/// [`name`] with `get` standing for the environment.
pub fn name_from(get: impl Fn(&str) -> Option<String>) -> String {
    ["SNAPC_NODE", "SLURMD_NODENAME"]
        .iter()
        .find_map(|k| get(k).filter(|v| !v.is_empty()))
        .unwrap_or_else(|| {
            let host = nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".into());
            host.split('.').next().unwrap_or(&host).to_string()
        })
}

/// `path` with every [`PLACEHOLDER`] replaced by `node`.
pub fn expand(path: &str, node: &str) -> String {
    path.replace(PLACEHOLDER, node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_comes_from_snapc_then_slurm_and_fills_paths() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            name_from(env(&[("SNAPC_NODE", "a"), ("SLURMD_NODENAME", "b")])),
            "a"
        );
        assert_eq!(name_from(env(&[("SLURMD_NODENAME", "node3")])), "node3");
        assert!(!name_from(env(&[])).is_empty());
        assert_eq!(
            expand("/tmp/r/job.{node}.sock", "node2"),
            "/tmp/r/job.node2.sock"
        );
        assert_eq!(expand("/tmp/plain.sock", "node2"), "/tmp/plain.sock");
    }
}
