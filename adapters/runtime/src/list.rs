//! `snapc list`: what a snapshot store holds, read without changing it.
//!
//! A path is one of three things, told apart by what it contains (the
//! layout in [`crate::snapstore`]): a job directory (numbered snapshot
//! directories, a daemon's `.staging-*`), a store (job directories and the
//! `standalone/` subtree of `snapc checkpoint --pid`), or one snapshot
//! (`snapshot.json` or `rank-*`). Each snapshot is reported with its
//! sequence number, time, reference, size, rank count and whether it is
//! complete: a numbered directory with metadata and every rank directory
//! the metadata names is; one without metadata or with ranks missing is
//! not; a snapshot being written is in a daemon's staging directory,
//! `in progress` while that daemon holds it, else left by a daemon that is
//! gone (removed by the job's next daemon).

use crate::snapstore::{self, METADATA, rank_dirs_mismatch, rank_of, ranks_in};
use serde_json::{Value, json};
use snapc_posix::app::STANDALONE_DIR;
use snapc_posix::store::PrivateDir;
use std::path::Path;

/// What `path` is.
enum Kind {
    Store,
    Job,
    Snapshot,
}

fn kind_of(dir: &PrivateDir) -> Kind {
    let entries = dir.entries().unwrap_or_default();
    if dir.is_file(METADATA) || entries.iter().any(|(n, _)| rank_of(n).is_some()) {
        return Kind::Snapshot;
    }
    let job = entries.iter().any(|(name, _)| {
        name.starts_with(".staging-")
            || name.starts_with(".trash-")
            || (snapstore::seq_of(name).is_some()
                && dir.open_sub(name, false).is_ok_and(|d| {
                    d.is_file(METADATA)
                        || d.entries()
                            .unwrap_or_default()
                            .iter()
                            .any(|(n, _)| rank_of(n).is_some())
                }))
    });
    if job { Kind::Job } else { Kind::Store }
}

/// One snapshot directory (`name` in `job`), as `list` reports it.
fn snapshot(job: &PrivateDir, name: &str) -> Value {
    let path = job.path().join(name);
    let seq = snapstore::seq_of(name);
    let Ok(dir) = job.open_sub(name, false) else {
        return json!({"seq": seq, "dir": path, "complete": false,
            "status": "unreadable (not a private directory of this user)"});
    };
    let ranks = ranks_in(&dir);
    if !dir.is_file(METADATA) {
        return json!({"seq": seq, "dir": path, "complete": false,
            "status": "incomplete (no snapshot.json)", "ranks": ranks.len(),
            "bytes": dir.tree_size()});
    }
    let meta = snapstore::metadata_in(&dir).unwrap_or(Value::Null);
    let nranks = meta["nranks"].as_u64();
    let damaged = match nranks {
        Some(n) => rank_dirs_mismatch(&dir, n),
        None => Some("the metadata has no rank count".into()),
    };
    let created = meta["created_unix_ms"].as_i64();
    json!({
        "seq": seq,
        "dir": path,
        "complete": damaged.is_none(),
        "status": damaged.map_or_else(|| "complete".to_string(), |d| format!("damaged: {d}")),
        "created_unix_ms": created,
        "time": created.and_then(rfc3339),
        "reference": meta["reference"],
        "bytes": meta["bytes"].as_u64().unwrap_or_else(|| dir.tree_size()),
        "ranks": nranks.unwrap_or(ranks.len() as u64),
    })
}

/// The snapshots a daemon's staging directory holds.
fn staged(job: &PrivateDir, name: &str) -> Vec<Value> {
    let Ok(dir) = job.open_sub(name, false) else {
        return Vec::new();
    };
    // A daemon holds its staging directory locked for its life.
    let live = matches!(dir.try_lock(), Ok(None));
    let status = if live {
        "in progress"
    } else {
        "incomplete (its daemon is gone; the job's next daemon removes it)"
    };
    dir.entries()
        .unwrap_or_default()
        .into_iter()
        .filter(|(n, _)| n.parse::<u32>().is_ok())
        .map(|(n, _)| {
            let sub = dir.open_sub(&n, false);
            json!({
                "seq": null, "handle": n.parse::<u32>().ok(), "dir": dir.path().join(&n),
                "complete": false, "status": status,
                "ranks": sub.as_ref().map_or(0, |d| ranks_in(d).len()),
                "bytes": sub.as_ref().map_or(0, PrivateDir::tree_size),
            })
        })
        .collect()
}

/// Every snapshot of the job directory `dir`, complete or not, by seq.
fn job(dir: &PrivateDir) -> Value {
    let mut snaps: Vec<Value> = Vec::new();
    let mut staging: Vec<Value> = Vec::new();
    for (name, _) in dir.entries().unwrap_or_default() {
        if snapstore::seq_of(&name).is_some() {
            snaps.push(snapshot(dir, &name));
        } else if name.starts_with(".staging-") {
            staging.extend(staged(dir, &name));
        }
    }
    snaps.sort_by_key(|s| s["seq"].as_u64());
    snaps.extend(staging);
    let name = dir
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    json!({"job": name, "dir": dir.path(), "snapshots": snaps})
}

/// The standalone snapshots of a store (`standalone/<handle>/pid-<pid>/`).
fn standalone(store: &PrivateDir) -> Vec<Value> {
    let Ok(dir) = store.open_sub(STANDALONE_DIR, false) else {
        return Vec::new();
    };
    let mut v: Vec<(u32, Value)> = dir
        .entries()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(n, _)| {
            let handle = n.parse::<u32>().ok()?;
            let sub = dir.open_sub(&n, false).ok()?;
            let mut pids: Vec<u32> = sub
                .entries()
                .unwrap_or_default()
                .iter()
                .filter_map(|(p, _)| p.strip_prefix("pid-")?.parse().ok())
                .collect();
            pids.sort_unstable();
            Some((
                handle,
                json!({"handle": handle, "dir": sub.path(), "pids": pids,
                    "bytes": sub.tree_size()}),
            ))
        })
        .collect();
    v.sort_by_key(|(h, _)| *h);
    v.into_iter().map(|(_, s)| s).collect()
}

/// What `path` holds: `{"store", "jobs": [{"job", "dir", "snapshots"}],
/// "standalone": [...]}` (docs/cli-json.md).
pub fn list(path: &Path) -> Result<Value, String> {
    let dir = PrivateDir::open(path, false).map_err(|e| e.to_string())?;
    Ok(match kind_of(&dir) {
        Kind::Job => json!({"store": path.parent(), "jobs": [job(&dir)], "standalone": []}),
        Kind::Snapshot => {
            let parent = path.parent().ok_or("a snapshot has a job directory")?;
            let job_dir = PrivateDir::open(parent, false).map_err(|e| e.to_string())?;
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or("not a snapshot directory")?;
            json!({"store": parent.parent(), "jobs": [{
                "job": parent.file_name().map(|n| n.to_string_lossy().into_owned()),
                "dir": parent, "snapshots": [snapshot(&job_dir, name)],
            }], "standalone": []})
        }
        Kind::Store => {
            let mut names: Vec<String> = dir
                .entries()
                .unwrap_or_default()
                .into_iter()
                .map(|(n, _)| n)
                .filter(|n| n != STANDALONE_DIR && snapstore::valid_job_name(n))
                .collect();
            names.sort();
            let jobs: Vec<Value> = names
                .iter()
                .filter_map(|n| dir.open_sub(n, false).ok())
                .map(|d| job(&d))
                .collect();
            json!({"store": path, "jobs": jobs, "standalone": standalone(&dir)})
        }
    })
}

/// `ms` since the epoch as RFC 3339 in UTC.
fn rfc3339(ms: i64) -> Option<String> {
    jiff::Timestamp::from_millisecond(ms)
        .ok()
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// Bytes for people: 512 B, 1.5 KiB, 3.2 MiB.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The text form of [`list`]'s result.
pub fn print(v: &Value) {
    let jobs = v["jobs"].as_array().map_or(&[][..], Vec::as_slice);
    let standalone = v["standalone"].as_array().map_or(&[][..], Vec::as_slice);
    if jobs.is_empty() && standalone.is_empty() {
        crate::outln!("no snapshots in {}", v["store"].as_str().unwrap_or("?"));
    }
    for j in jobs {
        let snaps = j["snapshots"].as_array().map_or(&[][..], Vec::as_slice);
        crate::outln!(
            "job {} ({}): {} snapshot{}",
            j["job"].as_str().unwrap_or("?"),
            j["dir"].as_str().unwrap_or("?"),
            snaps.len(),
            if snaps.len() == 1 { "" } else { "s" }
        );
        if snaps.is_empty() {
            continue;
        }
        crate::outln!(
            "  {:>6}  {:<20}  {:>5}  {:>10}  {:<11}  reference",
            "seq",
            "time (UTC)",
            "ranks",
            "size",
            "status"
        );
        for s in snaps {
            let seq = s["seq"]
                .as_u64()
                .map_or_else(|| format!("(h{})", s["handle"]), |n| n.to_string());
            let status = s["status"].as_str().unwrap_or("?");
            let (word, rest) = match status.split_once(' ') {
                _ if status == "in progress" => (status, ""),
                Some((w, r)) => (w.trim_end_matches(':'), r),
                None => (status, ""),
            };
            crate::outln!(
                "  {seq:>6}  {:<20}  {:>5}  {:>10}  {:<11}  {}{}",
                s["time"].as_str().unwrap_or("-"),
                s["ranks"].to_string(),
                human_bytes(s["bytes"].as_u64().unwrap_or(0)),
                word,
                s["reference"].as_str().unwrap_or("-"),
                if rest.is_empty() {
                    String::new()
                } else {
                    format!("  {rest}")
                }
            );
        }
    }
    if !standalone.is_empty() {
        crate::outln!("standalone snapshots (checkpoint --pid):");
        for s in standalone {
            let pids: Vec<String> = s["pids"]
                .as_array()
                .into_iter()
                .flatten()
                .map(Value::to_string)
                .collect();
            crate::outln!(
                "  handle {}: pids {} ({}) {}",
                s["handle"],
                pids.join(", "),
                human_bytes(s["bytes"].as_u64().unwrap_or(0)),
                s["dir"].as_str().unwrap_or("?")
            );
        }
    }
}
