//! The shared library's soname: `libsnapc.so.<ABI version>`, so that
//! programs linked against one ABI never load another (install.sh installs
//! the file under that name with `libsnapc.so` pointing at it).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/runtime/mod.rs");
    let source = std::fs::read_to_string("src/runtime/mod.rs").expect("src/runtime/mod.rs");
    let version = source
        .lines()
        .find_map(|l| l.strip_prefix("pub const SNAPC_ABI_VERSION: u32 = "))
        .and_then(|v| v.strip_suffix(';'))
        .expect("SNAPC_ABI_VERSION in src/runtime/mod.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libsnapc.so.{version}");
    }
}
