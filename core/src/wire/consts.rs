//! The protocol's constants (docs/PROTOCOL.md §2) as enums.
//!
//! Each enum converts from its wire integer with `from_code` (`None` for a
//! code the protocol does not define; the decoders turn that into an error)
//! and to it with `code`, and has the protocol's upper-case name for logs and
//! JSON (`name`, `from_name`).

macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $repr:ty {
            $( $(#[$vmeta:meta])* $variant:ident = $value:expr => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        $vis enum $name {
            // The wire codes as discriminants make both conversions a
            // range check and a copy.
            $( $(#[$vmeta])* $variant = $value, )+
        }

        impl $name {
            /// Every value, in code order.
            pub const ALL: &'static [Self] = &[ $( Self::$variant, )+ ];

            /// The wire code.
            #[inline]
            pub const fn code(self) -> $repr {
                match self { $( Self::$variant => $value, )+ }
            }

            /// The value for a wire code, or `None` if the protocol defines no such code.
            #[inline]
            pub const fn from_code(code: $repr) -> Option<Self> {
                match code { $( $value => Some(Self::$variant), )+ _ => None }
            }

            /// The protocol's name for the value.
            pub const fn name(self) -> &'static str {
                match self { $( Self::$variant => $text, )+ }
            }

            /// The value with this protocol name (exact, upper case).
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $( $text => Some(Self::$variant), )+ _ => None }
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

wire_enum! {
    /// What the app coordinator answers when signalled (FIFO step 2).
    pub enum CkptResponse: i32 {
        /// The checkpoint starts.
        Start = 0 => "START",
        /// A checkpoint is already running in this process.
        InProgress = 1 => "IN_PROGRESS",
        /// This process cannot be checkpointed.
        Null = 2 => "NULL",
        /// An error prevents the checkpoint.
        Error = 3 => "ERROR",
    }
}

wire_enum! {
    /// Request status values inside the app coordinator; the same C enum as
    /// [`CkptResponse`], continued.
    pub enum RequestStatus: i32 {
        /// No request.
        None = 4 => "NONE",
        /// A request is pending.
        Requested = 5 => "REQUESTED",
        /// A checkpoint is running.
        Running = 6 => "RUNNING",
        /// The process is to terminate.
        Term = 7 => "TERM",
        /// The process continues.
        Continue = 8 => "CONTINUE",
        /// Before a restart.
        RestartPre = 9 => "RESTART_PRE",
        /// After a restart.
        RestartPost = 10 => "RESTART_POST",
    }
}

wire_enum! {
    /// Checkpoint/restart state of one process (`cr_state`).
    pub enum CrState: i32 {
        /// No state.
        None = 0 => "NONE",
        /// Checkpointing.
        Checkpoint = 1 => "CHECKPOINT",
        /// Before restart.
        RestartPre = 2 => "RESTART_PRE",
        /// This process is a restarted copy.
        Restart = 3 => "RESTART",
        /// The process continues after its checkpoint.
        Continue = 4 => "CONTINUE",
        /// The process terminates after its checkpoint.
        Term = 5 => "TERM",
        /// Running (prepared only; the handshake stays open).
        Running = 6 => "RUNNING",
        /// The checkpoint failed.
        Error = 7 => "ERROR",
    }
}

wire_enum! {
    /// Operation events: requests from the application to the global coordinator.
    pub enum OpEvent: i32 {
        /// No operation.
        None = 0 => "NONE",
        /// The job became checkpointable.
        Init = 1 => "INIT",
        /// The job is finishing.
        Fin = 2 => "FIN",
        /// The global coordinator acknowledges FIN.
        FinAck = 3 => "FIN_ACK",
        /// Checkpoint the job.
        Checkpoint = 4 => "CHECKPOINT",
        /// Restart the job from a snapshot.
        Restart = 5 => "RESTART",
        /// Migrate processes.
        Migrate = 6 => "MIGRATE",
        /// Quiesce: prepare every process and hold.
        QuiesceStart = 7 => "QUIESCE_START",
        /// Checkpoint while quiesced.
        QuiesceCheckpoint = 8 => "QUIESCE_CHECKPOINT",
        /// End the quiesced period.
        QuiesceEnd = 9 => "QUIESCE_END",
    }
}

impl OpEvent {
    /// Whether the global coordinator's answer to this event carries an `op_state`.
    #[inline]
    pub const fn carries_op_state(self) -> bool {
        // One bit test rather than two comparisons (a decoder's hot path).
        const CARRY: u16 = 1 << OpEvent::Checkpoint as u8 | 1 << OpEvent::Migrate as u8;
        CARRY >> self as u8 & 1 != 0
    }
}

wire_enum! {
    /// Command bytes under the SNAPC tag (to the node daemon).
    pub enum SnapcCmd: u8 {
        /// Global init.
        GlobalInit = 1 => "GLOBAL_INIT",
        /// Global term.
        GlobalTerm = 2 => "GLOBAL_TERM",
        /// Global update.
        GlobalUpdate = 3 => "GLOBAL_UPDATE",
        /// A restarted process reports its new pid.
        LocalUpdate = 4 => "LOCAL_UPDATE",
        /// A process finished its handshake.
        LocalFinish = 5 => "LOCAL_FINISH",
    }
}

wire_enum! {
    /// Command bytes under the SNAPC_FULL tag (to and from the global coordinator).
    pub enum FullCmd: u8 {
        /// Job state, long form.
        UpdateJobState = 1 => "UPDATE_JOB_STATE",
        /// Job state, quick form.
        UpdateJobStateQuick = 2 => "UPDATE_JOB_STATE_QUICK",
        /// Daemon state, long form.
        UpdateOrtedState = 3 => "UPDATE_ORTED_STATE",
        /// Daemon state, quick form.
        UpdateOrtedStateQuick = 4 => "UPDATE_ORTED_STATE_QUICK",
        /// Vpid association.
        VpidAssoc = 5 => "VPID_ASSOC",
        /// Establish directory.
        EstablishDir = 6 => "ESTABLISH_DIR",
        /// Restart process information.
        RestartProcInfo = 7 => "RESTART_PROC_INFO",
        /// An application request or its answer.
        RequestOp = 8 => "REQUEST_OP",
    }
}

wire_enum! {
    /// Job and daemon checkpoint states (local and global coordinator bookkeeping).
    pub enum CkptState: i32 {
        /// Failed.
        Error = 0 => "ERROR",
        /// Nothing running.
        None = 1 => "NONE",
        /// Requested.
        Request = 2 => "REQUEST",
        /// Pending.
        Pending = 3 => "PENDING",
        /// Running.
        Running = 4 => "RUNNING",
        /// Prepared (quiesced).
        IncPreped = 5 => "INC_PREPED",
        /// Stopped.
        Stopped = 6 => "STOPPED",
        /// Finished locally.
        FinishedLocal = 7 => "FINISHED_LOCAL",
        /// Migrating.
        Migrating = 8 => "MIGRATING",
        /// Established.
        Established = 9 => "ESTABLISHED",
        /// Recovered.
        Recovered = 10 => "RECOVERED",
        /// No checkpoint taken.
        NoCkpt = 11 => "NO_CKPT",
        /// No restart.
        NoRestart = 12 => "NO_RESTART",
    }
}

/// Offset at which a notification encodes a [`CkptState`].
pub const NOTIFY_BASE: i32 = 131_072;

wire_enum! {
    /// DSS type codes (docs/PROTOCOL.md §6); only a few appear on the wire as type bytes.
    pub enum DssType: u8 {
        /// Byte.
        Byte = 1 => "BYTE",
        /// Bool.
        Bool = 2 => "BOOL",
        /// String.
        String = 3 => "STRING",
        /// size_t.
        Size = 4 => "SIZE",
        /// pid_t.
        Pid = 5 => "PID",
        /// int.
        Int = 6 => "INT",
        /// int8.
        Int8 = 7 => "INT8",
        /// int16.
        Int16 = 8 => "INT16",
        /// int32.
        Int32 = 9 => "INT32",
        /// int64.
        Int64 = 10 => "INT64",
        /// unsigned.
        Uint = 11 => "UINT",
        /// uint8.
        Uint8 = 12 => "UINT8",
        /// uint16.
        Uint16 = 13 => "UINT16",
        /// uint32.
        Uint32 = 14 => "UINT32",
        /// uint64.
        Uint64 = 15 => "UINT64",
        /// Process name.
        Name = 29 => "NAME",
        /// Job id.
        Jobid = 30 => "JOBID",
        /// Vpid.
        Vpid = 31 => "VPID",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_round_trip() {
        for v in OpEvent::ALL {
            assert_eq!(OpEvent::from_code(v.code()), Some(*v));
            assert_eq!(OpEvent::from_name(v.name()), Some(*v));
        }
        for v in CkptState::ALL {
            assert_eq!(CkptState::from_code(v.code()), Some(*v));
        }
        assert_eq!(CrState::from_code(8), None);
        assert_eq!(CkptResponse::from_code(-1), None);
        assert_eq!(FullCmd::from_code(0), None);
        assert_eq!(CkptState::ALL.len(), 13);
        assert_eq!(DssType::Name.code(), 29);
    }
}
