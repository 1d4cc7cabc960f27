//! libsnapc, the C ABI: the size of its libraries and the cost of its safe
//! point called from C, built as a C application would build it (the
//! install command, pkg-config, the system's cc) from bench/c/progress.c.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {} {}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn kib(path: &Path) -> Result<String, String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    Ok(format!("{:.0}", len as f64 / 1024.0))
}

/// Installs libsnapc (release) into a scratch prefix, measures, and writes
/// the section.
pub fn section(md: &mut String, root: &Path, scratch: &Path) -> Result<(), String> {
    let prefix = scratch.join("capi-prefix");
    run(
        Command::new("bash")
            .arg(root.join("adapters/c/install.sh"))
            .arg("--prefix")
            .arg(&prefix),
        "adapters/c/install.sh",
    )?;
    let lib = prefix.join("lib");
    let pc = lib.join("pkgconfig");
    let flags = run(
        Command::new("pkg-config")
            .args(["--cflags", "--libs", "snapc"])
            .env("PKG_CONFIG_PATH", &pc),
        "pkg-config",
    )?;
    let native = run(
        Command::new("pkg-config")
            .args(["--variable=native_libs", "snapc"])
            .env("PKG_CONFIG_PATH", &pc),
        "pkg-config",
    )?;
    let source = root.join("bench/c/progress.c");
    let shared = scratch.join("capi-progress");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    run(
        Command::new(&cc)
            .args(["-O2", "-std=c11"])
            .arg(&source)
            .args(flags.split_whitespace())
            .arg("-o")
            .arg(&shared),
        "cc progress.c (shared)",
    )?;
    let static_ = scratch.join("capi-progress-static");
    run(
        Command::new(&cc)
            .args(["-O2", "-std=c11"])
            .arg(&source)
            .arg(format!("-I{}", prefix.join("include").display()))
            .arg(lib.join("libsnapc.a"))
            .args(native.split_whitespace())
            .arg("-o")
            .arg(&static_),
        "cc progress.c (static)",
    )?;
    // Stripped copies, as a distribution would ship them.
    let stripped_a = scratch.join("libsnapc-stripped.a");
    let stripped_so = scratch.join("libsnapc-stripped.so");
    std::fs::copy(lib.join("libsnapc.a"), &stripped_a).map_err(|e| e.to_string())?;
    std::fs::copy(lib.join("libsnapc.so.1"), &stripped_so).map_err(|e| e.to_string())?;
    run(
        Command::new("strip").arg("--strip-debug").arg(&stripped_a),
        "strip libsnapc.a",
    )?;
    run(Command::new("strip").arg(&stripped_so), "strip libsnapc.so")?;

    let measure = |exe: &Path| -> Result<Vec<(String, f64)>, String> {
        let out = run(
            Command::new(exe)
                .env("SNAPC_PIPE_DIR", scratch.join("capi-pipes"))
                .env("SNAPC_STORE", scratch.join("capi-store"))
                .env_remove("SNAPC_DAEMON_SOCKET")
                .env_remove("SNAPC_RESTART_DIR"),
            "the C progress benchmark",
        )?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let (name, ns) = l.split_once(' ')?;
                Some((name.to_string(), ns.parse().ok()?))
            })
            .collect())
    };
    let dynamic = measure(&shared)?;
    let statik = measure(&static_)?;

    let _ = writeln!(md, "## libsnapc: the C ABI\n");
    let _ = writeln!(
        md,
        "Built by `adapters/c/install.sh` (release) and linked as a C application links it \
         (`cc -O2 progress.c $(pkg-config --cflags --libs snapc)`, and against `libsnapc.a` with \
         its `native_libs`). bench/c/progress.c calls each function 20,000,000 times a batch, \
         median of 9 batches, in a process started with `snapc_start` and no checkpoint pending.\n"
    );
    let _ = writeln!(
        md,
        "| call from C | shared ns | static ns |\n|---|---:|---:|"
    );
    for (name, ns) in &dynamic {
        let s = statik
            .iter()
            .find(|(n, _)| n == name)
            .map_or("n/a".into(), |(_, v)| format!("{v:.2}"));
        let what = match name.as_str() {
            "snapc_progress" => "`snapc_progress()`, nothing pending",
            "snapc_pending" => "`snapc_pending()`",
            "snapc_abi_version" => {
                "`snapc_abi_version()` (the cost of any call into the library, for scale)"
            }
            other => other,
        };
        let _ = writeln!(md, "| {what} | {ns:.2} | {s} |");
    }
    let _ = writeln!(
        md,
        "\n| library (x86_64, release) | KiB | stripped KiB |\n|---|---:|---:|\n\
         | `libsnapc.a` (with Rust's std; `strip --strip-debug`) | {} | {} |\n\
         | `libsnapc.so.1` (`strip`) | {} | {} |\n",
        kib(&lib.join("libsnapc.a"))?,
        kib(&stripped_a)?,
        kib(&lib.join("libsnapc.so.1"))?,
        kib(&stripped_so)?,
    );
    Ok(())
}
