//! Inputs to the app coordinator.

use arbitrary::Arbitrary;

/// One input to the app coordinator, chosen by the fuzzer.
#[derive(Debug, Arbitrary)]
pub enum AppInput {
    /// The signal handler sets the flag.
    Signal,
    /// The application's progress point.
    Progress,
    /// The FIFOs opened.
    Opened,
    /// A well-formed frame of the kind asked for, carrying `value`.
    Frame(i32, bool),
    /// Arbitrary bytes as the frame asked for.
    Bytes(Vec<u8>),
    /// A write finished.
    WriteDone,
    /// An I/O failure (peer gone, or other).
    IoError(bool),
    /// The prepare hook answered.
    Prepare(u8),
    /// The checkpointer answered.
    Checkpoint(u8, u32),
    /// The recover hook answered.
    Recovered(bool),
    /// An sstore operation answered.
    Sstore(bool),
    /// The global sequence number and reference.
    SstoreGlobal(Option<i32>, Option<String>),
    /// The teardown is done.
    TeardownDone,
    /// Bytes from the global coordinator.
    Gc(Vec<u8>),
    /// A well-formed answer from the global coordinator.
    GcAnswer(u8, i32),
    /// An application request.
    Request(u8, i32, Vec<(i32, Option<String>, i32, bool)>),
    /// Time passes (microseconds), then the timer fires if due.
    Advance(u32),
}

/// The app coordinator's configuration, chosen by the fuzzer.
#[derive(Debug, Arbitrary)]
pub struct AppScenario {
    /// Rank 0 (the leader).
    pub leader: bool,
    /// With a checkpointer.
    pub checkpointer: bool,
    /// With the debugger fields.
    pub debug: bool,
    /// The inputs, in order.
    pub inputs: Vec<AppInput>,
}
