//! Runs one message's encode or decode in a loop, for counting instructions
//! with callgrind (repeatable where wall time on a shared machine is not):
//!
//! ```text
//! cargo build --release -p snapc-bench --example codec_instructions
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/codec_instructions FIN_ACK decode 100000
//! ```
//!
//! Instructions per call = (total at N calls - total at 0 calls) / N; the
//! messages and the timed loop are those of the bench's codec section.

#[allow(dead_code)]
#[path = "../src/codec.rs"]
mod codec;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [name, op, calls] = args.as_slice() else {
        eprintln!("usage: codec_instructions MESSAGE encode|decode CALLS");
        std::process::exit(2);
    };
    let calls: u64 = calls.parse().expect("CALLS is a number");
    let (_, msg) = codec::messages()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no message named {name}"));
    let mut buf = [0u8; 512];
    let n = codec::encode(&msg, &mut buf).expect("the message encodes");
    let bytes = buf[..n].to_vec();
    match op.as_str() {
        "encode" => codec::encode_batch(&msg, &mut buf, calls),
        "decode" => codec::decode_batch(&msg, &bytes, calls),
        _ => panic!("encode or decode, not {op}"),
    };
}
