//! include/snapc.h is what cbindgen makes of the crate's source with
//! cbindgen.toml: this test regenerates it and fails on any difference
//! (`SNAPC_WRITE_HEADER=1` writes it instead; adapters/c/gen-header.sh).

use std::path::Path;

#[test]
fn the_checked_in_header_is_generated_from_the_source() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("read cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let path = crate_dir.join("include/snapc.h");
    if std::env::var_os("SNAPC_WRITE_HEADER").is_some() {
        std::fs::write(&path, &fresh).expect("write include/snapc.h");
        return;
    }
    let checked_in = std::fs::read(&path).expect("read include/snapc.h");
    if checked_in != fresh {
        let old = String::from_utf8_lossy(&checked_in);
        let new = String::from_utf8_lossy(&fresh);
        let first = old
            .lines()
            .zip(new.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| old.lines().count().min(new.lines().count()));
        panic!(
            "adapters/c/include/snapc.h is out of date (first difference at line {}): \
             run adapters/c/gen-header.sh and commit it\n  checked in: {:?}\n  generated:  {:?}",
            first + 1,
            old.lines().nth(first),
            new.lines().nth(first)
        );
    }
}
