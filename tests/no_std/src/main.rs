//! Links snapc-core into a `no_std`, `no_main` program and uses its wire
//! layer, so the build fails if anything in the dependency tree needs std.
#![no_std]
#![no_main]

use core::panic::PanicInfo;
use snapc_core::wire::{CrState, LocalFinish, Message, ToDaemon};

// libc supplies the program's start-up code, memcpy and memset; nothing of std.
#[link(name = "c")]
unsafe extern "C" {}

#[panic_handler]
fn panic(_: &PanicInfo<'_>) -> ! {
    loop {}
}

/// The host's prebuilt libcore refers to the unwinding personality routine;
/// with `panic = "abort"` nothing unwinds, so it is never called.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}

/// The C entry point: encode LOCAL_FINISH(CONTINUE), decode it back, and
/// return 0 when the round trip holds.
#[unsafe(no_mangle)]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    let msg = ToDaemon::LocalFinish(LocalFinish { cr_state: CrState::Continue });
    let mut buf = [0u8; 32];
    match msg.emit(&mut buf) {
        Ok(n) => match buf.get(..n).map(ToDaemon::parse) {
            Some(Ok(back)) if back == msg => 0,
            _ => 1,
        },
        Err(_) => 2,
    }
}
