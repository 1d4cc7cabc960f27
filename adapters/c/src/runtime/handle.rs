//! What the three machines' handles share: a header in the caller's
//! storage (a magic per kind first, then what no call borrows mutably, the
//! last refused input, the machine), and the calls on it. Each handle's
//! opaque type is its kind, so that a call names only the handle.

use super::{E_INVAL, E_PANIC, OK, guard, write_text};
use core::ffi::{c_char, c_int};
use snapc_core::MessageBuf;
use snapc_core::time::Instant;

/// A kind of machine kept behind an opaque handle: the handle's type.
pub(crate) trait Kind: Sized {
    /// Tells a live header of this kind from anything else.
    const MAGIC: u64;
    /// What the header holds besides the machine that calls only share
    /// (the app coordinator's flag, which a signal handler may use during
    /// any other call).
    type Shared: 'static;
    /// The machine.
    type Machine;
    /// Its input error.
    type Error: Copy + core::fmt::Display;
    /// The status for a refused input.
    fn status(e: Self::Error) -> c_int;
}

/// No live handle has this magic (a finished one, or one whose call panicked).
const DEAD: u64 = 0;

/// The header at the handle's address.
#[repr(C)]
pub(crate) struct Header<K: Kind> {
    pub magic: u64,
    pub shared: K::Shared,
    pub last_error: Option<K::Error>,
    pub machine: K::Machine,
}

/// The header behind a handle, if it is a live one of kind `K`.
pub(crate) fn header<K: Kind>(handle: *const K) -> Option<*mut Header<K>> {
    let h = handle.cast::<Header<K>>().cast_mut();
    if h.is_null() || !h.is_aligned() {
        return None;
    }
    // SAFETY: a non-NULL, aligned handle is the caller's promise of storage
    // that `snapc_*_init` filled; only the magic is read, which tells a live
    // header of this kind from another kind's or a finished one.
    (unsafe { core::ptr::addr_of!((*h).magic).read() } == K::MAGIC).then_some(h)
}

/// Writes a live header into `at` (aligned, inside the caller's storage),
/// the machine built from a reference to the shared part.
///
/// # Safety
/// `at` must be valid for writes of a header and stay in place while the
/// handle is used.
pub(crate) unsafe fn init<K: Kind>(
    at: *mut Header<K>,
    shared: K::Shared,
    machine: impl FnOnce(&'static K::Shared) -> K::Machine,
) {
    // SAFETY: the caller's promise. The shared part is written first; the
    // machine may borrow it for as long as the storage holds the header.
    unsafe {
        core::ptr::addr_of_mut!((*at).magic).write(DEAD);
        core::ptr::addr_of_mut!((*at).shared).write(shared);
        core::ptr::addr_of_mut!((*at).last_error).write(None);
        let shared: &'static K::Shared = &*core::ptr::addr_of!((*at).shared);
        core::ptr::addr_of_mut!((*at).machine).write(machine(shared));
        core::ptr::addr_of_mut!((*at).magic).write(K::MAGIC);
    }
}

/// Runs `f` on the machine; a refused input is kept for `last_error`. Only
/// the machine and the last error are borrowed, never the shared part. A
/// caught panic makes the handle dead.
pub(crate) fn with<K: Kind>(
    handle: *mut K,
    f: impl FnOnce(&mut K::Machine) -> Result<c_int, K::Error>,
) -> c_int {
    let Some(h) = header(handle) else {
        return E_INVAL;
    };
    let r = guard(|| {
        // SAFETY: a live header (checked); fields borrowed apart; one
        // caller at a time (the ABI's rule).
        let (m, err) = unsafe {
            (
                &mut *core::ptr::addr_of_mut!((*h).machine),
                &mut *core::ptr::addr_of_mut!((*h).last_error),
            )
        };
        match f(m) {
            Ok(r) => r,
            Err(e) => {
                *err = Some(e);
                K::status(e)
            }
        }
    });
    if r == E_PANIC {
        // SAFETY: as above; the machine may be inconsistent: never used again.
        unsafe { core::ptr::addr_of_mut!((*h).magic).write(DEAD) };
    }
    r
}

/// Gives the machine one input: `OK` when it takes it, else the refusal's
/// status.
pub(crate) fn input<K: Kind>(
    handle: *mut K,
    f: impl FnOnce(&mut K::Machine) -> Result<(), K::Error>,
) -> c_int {
    with(handle, |m| f(m).map(|()| OK))
}

/// Gives the machine the caller's bytes (`len` at `bytes`, NULL when 0).
///
/// # Safety
/// `bytes` must be valid for `len` bytes if it is not NULL.
pub(crate) unsafe fn input_bytes<K: Kind>(
    handle: *mut K,
    bytes: *const u8,
    len: usize,
    f: impl FnOnce(&mut K::Machine, &[u8]) -> Result<(), K::Error>,
) -> c_int {
    // SAFETY: the caller's promise.
    match unsafe { super::bytes(bytes, len) } {
        Some(b) => input(handle, |m| f(m, b)),
        None => E_INVAL,
    }
}

/// Gives the machine an input it cannot refuse (time passing, a progress
/// point).
pub(crate) fn tell<K: Kind>(handle: *mut K, f: impl FnOnce(&mut K::Machine)) -> c_int {
    with(handle, |m| {
        f(m);
        Ok(OK)
    })
}

/// Runs `f` on the machine, reading only.
pub(crate) fn query<K: Kind>(handle: *const K, f: impl FnOnce(&K::Machine) -> c_int) -> c_int {
    match header(handle) {
        // SAFETY: a live header (checked).
        Some(h) => guard(|| f(unsafe { &*core::ptr::addr_of!((*h).machine) })),
        None => E_INVAL,
    }
}

/// Ends a handle: invalid from here on, its storage the caller's again.
pub(crate) fn fini<K: Kind>(handle: *mut K) -> c_int {
    match header(handle) {
        Some(h) => {
            // SAFETY: a live header; nothing in it needs dropping.
            unsafe { core::ptr::addr_of_mut!((*h).magic).write(DEAD) };
            OK
        }
        None => E_INVAL,
    }
}

/// The last refused input's reason, NUL-terminated into `buf` (`len`
/// bytes, cut if needed); its full length.
///
/// # Safety
/// `buf` must be valid for `len` bytes.
pub(crate) unsafe fn last_error<K: Kind>(handle: *const K, buf: *mut c_char, len: usize) -> c_int {
    if buf.is_null() || len == 0 || len > isize::MAX as usize {
        return E_INVAL;
    }
    match header(handle) {
        Some(h) => guard(|| {
            // SAFETY: the caller's promise for `len` bytes.
            let out = unsafe { core::slice::from_raw_parts_mut(buf, len) };
            // SAFETY: a live header (checked).
            let n = match unsafe { *core::ptr::addr_of!((*h).last_error) } {
                Some(e) => write_text(out, format_args!("{e}")),
                None => write_text(out, format_args!("")),
            };
            c_int::try_from(n).unwrap_or(c_int::MAX)
        }),
        None => E_INVAL,
    }
}

/// The machine's next deadline into `deadline_us`: 1, or 0 for none.
///
/// # Safety
/// `deadline_us` must be NULL or valid for a write.
pub(crate) unsafe fn poll_timeout<K: Kind>(
    handle: *const K,
    deadline_us: *mut u64,
    next: impl FnOnce(&K::Machine) -> Option<Instant>,
) -> c_int {
    if deadline_us.is_null() || !deadline_us.is_aligned() {
        return E_INVAL;
    }
    query(handle, |m| match next(m) {
        Some(t) => {
            // SAFETY: checked for NULL and alignment; the caller's promise.
            unsafe { deadline_us.write(t.as_micros()) };
            1
        }
        None => 0,
    })
}

/// The machine's next action, converted, into `action`: 1, or 0 for none.
/// A message goes into `out`.
///
/// # Safety
/// `action` must be NULL or valid for a write; `out` for `out_len` bytes.
pub(crate) unsafe fn poll_action<K: Kind, A, C>(
    handle: *mut K,
    action: *mut C,
    out: *mut u8,
    out_len: usize,
    poll: impl FnOnce(&mut K::Machine, &mut MessageBuf) -> Option<A>,
    convert: impl FnOnce(A) -> C,
) -> c_int {
    if action.is_null() || !action.is_aligned() {
        return E_INVAL;
    }
    // SAFETY: the caller's promise.
    let buf = match unsafe { super::message_buf(out, out_len) } {
        Ok(b) => b,
        Err(e) => return e,
    };
    with(handle, |m| {
        let Some(a) = poll(m, buf) else {
            return Ok(0);
        };
        // SAFETY: checked for NULL and alignment; the caller's promise.
        unsafe { action.write(convert(a)) };
        Ok(1)
    })
}
