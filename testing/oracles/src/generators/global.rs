//! Inputs to the global coordinator.

use arbitrary::Arbitrary;

/// Local coordinators of the fuzzed global coordinator.
pub const GC_LCS: usize = 3;
/// Migration capacity of the fuzzed global coordinator.
pub const GC_MOVES: usize = 4;
/// The fuzzed job.
pub const GC_JOB: u32 = 9;
/// Where ranks 0..4 run (rank 4, if the job has it, has no known host).
pub const GC_PLACEMENT: [&str; 4] = ["alpha", "alpha", "beta", "gamma"];
/// Host preferences a MIGRATE entry may name.
pub const GC_HOSTS: [Option<&str>; 6] = [
    None,
    Some(""),
    Some("alpha"),
    Some("beta"),
    Some("gamma"),
    Some("delta"),
];

/// One input to the global coordinator, chosen by the fuzzer.
#[derive(Debug, Arbitrary)]
pub enum GlobalInput {
    /// A well-formed REQUEST_OP from a rank.
    Request {
        /// The sender's vpid.
        from: u8,
        /// The op_event.
        event: u8,
        /// RESTART's sequence number.
        seq: i32,
        /// RESTART's handle.
        handle: Option<String>,
        /// MIGRATE's entries: vpid, host choice, vpid_pref, off_node.
        entries: Vec<(i8, u8, i8, bool)>,
        /// Whether it names another job.
        other_job: bool,
        /// Whether it is encoded as the `ToGc` channel (the same bytes).
        as_bytes: bool,
    },
    /// Raw REQUEST_OP bytes from a rank.
    RequestBytes(u8, Vec<u8>),
    /// ORTED_STATE from an LC (index up to `L`, one past the last), any state.
    Orted {
        /// The LC.
        lc: u8,
        /// The state.
        state: u8,
        /// Notification encoding.
        notify: bool,
        /// Quick form.
        quick: bool,
    },
    /// The state the GC waits for, from LC `lc`.
    Expected(u8),
    /// The state the GC waits for, from every LC.
    AllExpected,
    /// A runtime command.
    Command(u8, bool, bool),
    /// The runtime's migration report.
    MigrationDone(bool),
    /// The runtime's restart report.
    RestartDone(bool),
    /// Time passes (microseconds), then the timer fires if due.
    Advance(u32),
}

/// The global coordinator's configuration and inputs, chosen by the fuzzer.
#[derive(Debug, Arbitrary)]
pub struct GlobalScenario {
    /// Ranks in the job: 1 to 5.
    pub nranks: u8,
    /// LC report, FIN and runtime deadlines in milliseconds; `None` for the defaults.
    pub deadlines: Option<[u16; 3]>,
    /// Whether the first input is INIT from rank 0.
    pub init: bool,
    /// The inputs, in order.
    pub inputs: Vec<GlobalInput>,
}
