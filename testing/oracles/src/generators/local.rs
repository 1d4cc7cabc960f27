//! Inputs to the local coordinator.

use arbitrary::Arbitrary;

/// Process slots of the fuzzed local coordinator.
pub const LC_SLOTS: usize = 4;
/// The job the local coordinator's processes belong to.
pub const LC_JOB: u32 = 7;

/// One input to the local coordinator, chosen by the fuzzer. A slot byte
/// below 0xC0 names the slot index's newest generation, from 0xC0 up an
/// earlier (maybe stale) one.
#[derive(Debug, Arbitrary)]
pub enum LocalInput {
    /// `add_process(vpid, pid)` (pid 0 is refused).
    Add(u8, u8),
    /// `remove_process(vpid)`.
    Remove(u8),
    /// `update_pid(vpid, pid)`, any pid.
    UpdatePid(u8, u32),
    /// LOCAL_UPDATE, through its encoding.
    LocalUpdate(u8, i32, Option<bool>),
    /// LOCAL_FINISH from a pid, through its encoding.
    LocalFinish(u8, u8),
    /// A JOB_STATE RUNNING (long form), through its encoding.
    Running {
        /// The sstore handle.
        handle: u32,
        /// term, stop, inc_prep_only, inc_recover_only.
        options: [bool; 4],
        /// The migrating processes' vpids.
        migrating: Option<Vec<u8>>,
    },
    /// A quick JOB_STATE with any state.
    Quick(u8, bool),
    /// A quick verdict: ESTABLISHED, INC_PREPED or ERROR.
    Verdict(u8),
    /// Raw bytes from the global coordinator.
    JobBytes(Vec<u8>),
    /// `handle_fifos_exist`.
    FifosExist(u8),
    /// `handle_opened`.
    Opened(u8),
    /// `handle_written`.
    Written(u8),
    /// `handle_read` with a 4-byte frame (value selector).
    Read(u8, u8),
    /// `handle_read` with raw bytes.
    ReadBytes(u8, Vec<u8>),
    /// `handle_stopped`.
    Stopped(u8),
    /// `handle_io_error` (EOF or other).
    IoError(u8, bool),
    /// The right answer to whatever the slot index waits for.
    Answer(u8),
    /// The right answer for every slot that waits.
    AnswerAll(bool),
    /// Time passes (microseconds), then the timer fires if due.
    Advance(u32),
}

/// The local coordinator's configuration and inputs, chosen by the fuzzer.
#[derive(Debug, Arbitrary)]
pub struct LocalScenario {
    /// The debugger fields (attach, detach), when the build carries them.
    pub debugger: Option<(bool, bool)>,
    /// Each deadline in milliseconds; `None` for the defaults.
    pub deadlines: Option<[u16; 8]>,
    /// Processes in the table at the start (vpids 0.., pids 100..).
    pub procs: u8,
    /// The inputs, in order.
    pub inputs: Vec<LocalInput>,
}
