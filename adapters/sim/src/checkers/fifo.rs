//! No FIFO names are left once a handshake ended: the application's
//! adapter unlinks them (the `skip-unlink` mutation shows this is seen).

/// At the end of rank `v`'s handshake on names `(pid, n)`.
pub fn handshake_ended(v: usize, names: (u32, u32), still_exist: bool) -> Result<(), String> {
    if still_exist {
        return Err(format!(
            "rank {v}: FIFO names {}_{} left after the handshake",
            names.0, names.1
        ));
    }
    Ok(())
}
