//! Every byte string a machine emits decodes on its channel before it
//! travels: the machines and the wire layer agree.

use snapc_core::app::FrameKind;
use snapc_core::wire::fifo::{self, OptionsFrame};
use snapc_core::wire::{CrState, FromGc, Message, OrtedState, Request, RequestOp, ToDaemon};

/// A rank's REQUEST_OP decodes back to the request made.
pub fn request_op(bytes: &[u8], req: Request<'_>) -> Result<(), String> {
    match RequestOp::parse(bytes) {
        Ok(p) if p.request == req => Ok(()),
        other => Err(format!("REQUEST_OP does not decode back: {other:?}")),
    }
}

/// A frame the application writes; a state frame's state.
pub fn app_frame(frame: FrameKind, bytes: &[u8]) -> Result<Option<CrState>, String> {
    match frame {
        FrameKind::Response => fifo::parse_response(bytes).map(|_| None),
        _ => fifo::parse_cr_state(bytes).map(Some),
    }
    .map_err(|e| format!("FIFO frame {frame:?}: {e:?}"))
}

/// A frame the local coordinator writes: options, go-ahead or release.
pub fn lc_frame(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() == OptionsFrame::LEN {
        OptionsFrame::parse(bytes, false).map(|_| ())
    } else {
        fifo::parse_release(bytes).map(|_| ())
    }
    .map_err(|e| format!("FIFO frame: {e:?}"))
}

/// LOCAL_FINISH or LOCAL_UPDATE.
pub fn to_daemon(bytes: &[u8]) -> Result<(), String> {
    ToDaemon::parse(bytes)
        .map(|_| ())
        .map_err(|e| format!("{bytes:02x?}: {e:?}"))
}

/// ORTED_STATE.
pub fn orted_state(bytes: &[u8]) -> Result<OrtedState, String> {
    OrtedState::parse(bytes).map_err(|e| format!("ORTED_STATE: {e:?}"))
}

/// The global coordinator's answer to a rank: an OP response or FIN_ACK.
pub fn gc_answer(bytes: &[u8]) -> Result<FromGc<'_>, String> {
    match FromGc::parse(bytes) {
        Ok(m @ (FromGc::OpResponse(_) | FromGc::FinAck)) => Ok(m),
        other => Err(format!(
            "GC answer does not decode: {bytes:02x?}: {other:?}"
        )),
    }
}
