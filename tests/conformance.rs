//! Conformance with Open MPI: `conformance/ompi_vectors.c` packs every message
//! kind with Open MPI's own `opal_dss.pack` (Debian's libopen-pal) and prints
//! the bytes beside a JSON description of the packed values. Our decoder must
//! give those values, and our encoder those bytes, for the fixed vectors and
//! for thousands of random ones.
//!
//! Without libopen-pal the tests say so and pass; with `SNAPC_REQUIRE_OMPI=1`
//! (set by `.ci/run`) they fail instead.

use serde_json::Value;
use snapc::core::wire::{FromGc, Message, OpEvent, Request, ToDaemon, ToGc};
use snapc_runtime::cli::parse_hex;
use snapc_runtime::json::{self, Channel};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

struct Vector {
    name: String,
    channel: Channel,
    bytes: Vec<u8>,
    expected: Value,
}

/// Builds the reference encoder once per test binary; `None` when
/// libopen-pal is absent and not required.
fn encoder() -> Option<&'static PathBuf> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let required = std::env::var("SNAPC_REQUIRE_OMPI").is_ok_and(|v| v == "1");
            let found = Command::new("pkg-config")
                .args(["--exists", "orte"])
                .status()
                .is_ok_and(|s| s.success());
            if !found {
                assert!(
                    !required,
                    "SNAPC_REQUIRE_OMPI=1 but libopen-pal was not found (apt-get install libopenmpi-dev pkg-config)"
                );
                // Straight to the terminal: the test harness captures
                // `eprintln!` of passing tests, and a skip must be seen.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: the Open MPI conformance tests (libopen-pal not found by `pkg-config orte`; \
                     apt-get install libopenmpi-dev pkg-config)"
                );
                return None;
            }
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ompi_vectors");
            let status = Command::new("bash")
                .arg(root.join("conformance/build.sh"))
                .arg(&out)
                .status()
                .expect("run conformance/build.sh");
            assert!(status.success(), "building the Open MPI reference encoder failed");
            Some(out)
        })
        .as_ref()
}

fn vectors(args: &[&str]) -> Option<Vec<Vector>> {
    let exe = encoder()?;
    let out = Command::new(exe)
        .args(args)
        .output()
        .expect("run ompi_vectors");
    assert!(
        out.status.success(),
        "ompi_vectors failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("ompi_vectors prints UTF-8");
    Some(
        text.lines()
            .map(|line| {
                let cols: Vec<&str> = line.split('\t').collect();
                assert_eq!(cols.len(), 4, "malformed line: {line}");
                let channel = match cols[1] {
                    "to-gc" => Channel::ToGc,
                    "from-gc" => Channel::FromGc,
                    "to-daemon" => Channel::ToDaemon,
                    other => panic!("unknown channel {other}"),
                };
                Vector {
                    name: cols[0].to_owned(),
                    channel,
                    bytes: parse_hex(cols[2]).expect("hex"),
                    expected: serde_json::from_str(cols[3]).expect("json"),
                }
            })
            .collect(),
    )
}

fn check_both_ways(v: &Vector) {
    let decoded = json::decode(v.channel, &v.bytes)
        .unwrap_or_else(|e| panic!("{}: our decoder rejects Open MPI's bytes: {e}", v.name));
    assert_eq!(decoded, v.expected, "{}: decoded values differ", v.name);
    let encoded = json::encode(v.channel, &v.expected)
        .unwrap_or_else(|e| panic!("{}: our encoder rejects the values: {e}", v.name));
    assert_eq!(
        encoded, v.bytes,
        "{}: encoded bytes differ from Open MPI's",
        v.name
    );
}

#[test]
fn fixed_vectors_match_open_mpi_both_ways() {
    let Some(vs) = vectors(&[]) else { return };
    assert!(vs.len() >= 60, "only {} vectors", vs.len());
    for v in &vs {
        check_both_ways(v);
    }
    // Every message kind is among them.
    let kinds: std::collections::BTreeSet<&str> = vs
        .iter()
        .filter_map(|v| v.expected["message"].as_str())
        .collect();
    for kind in [
        "REQUEST_OP",
        "ORTED_STATE",
        "OP_RESPONSE",
        "FIN_ACK",
        "JOB_STATE",
        "LOCAL_FINISH",
        "LOCAL_UPDATE",
    ] {
        assert!(kinds.contains(kind), "no vector of {kind}");
    }
    eprintln!("{} fixed Open MPI vectors checked both ways", vs.len());
}

#[test]
fn typed_decoding_of_open_mpi_bytes() {
    let Some(vs) = vectors(&[]) else { return };
    let find = |name: &str| {
        vs.iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no vector {name}"))
    };

    // The worked examples of docs/PROTOCOL.md §6.
    let init = find("request-op-init-spec-example");
    assert_eq!(
        init.bytes,
        parse_hex("00000001 08 | 00000001 12340001 | 00000001 09 00000001").unwrap()
    );
    let ToGc::RequestOp(op) = ToGc::parse(&init.bytes).unwrap() else {
        panic!("not a request")
    };
    assert_eq!(
        (op.jobid, op.request.op_event()),
        (0x1234_0001, OpEvent::Init)
    );
    let finish = find("local-finish-continue");
    assert_eq!(
        finish.bytes,
        parse_hex("00000001 05 | 00000001 09 00000004").unwrap()
    );

    // A 255-byte host name, the protocol's maximum, borrowed from the buffer.
    let host = find("request-op-migrate-host-255");
    let ToGc::RequestOp(op) = ToGc::parse(&host.bytes).unwrap() else {
        panic!("not a request")
    };
    let Request::Migrate(entries) = op.request else {
        panic!("not a migrate")
    };
    assert!(
        entries
            .iter()
            .any(|e| e.host.is_some_and(|h| h.len() == 255))
    );

    let fin_ack = find("fin-ack");
    assert_eq!(FromGc::parse(&fin_ack.bytes), Ok(FromGc::FinAck));
    for v in vs.iter().filter(|v| v.channel == Channel::ToDaemon) {
        let m = ToDaemon::parse(&v.bytes).unwrap();
        assert_eq!(m.buffer_len(), v.bytes.len(), "{}", v.name);
    }
}

#[test]
fn random_vectors_round_trip_exactly() {
    for seed in ["1", "20261123"] {
        let Some(vs) = vectors(&["--random", seed, "2500"]) else {
            return;
        };
        assert_eq!(vs.len(), 2500);
        for v in &vs {
            check_both_ways(v);
        }
    }
}

#[test]
fn damaged_open_mpi_bytes_are_rejected_with_a_position() {
    let Some(vs) = vectors(&[]) else { return };
    for v in &vs {
        // Every strict prefix fails, except LOCAL_UPDATE without its optional flag.
        for cut in 0..v.bytes.len() {
            let prefix = &v.bytes[..cut];
            if let Ok(value) = json::decode(v.channel, prefix) {
                assert_eq!(
                    value["message"], "LOCAL_UPDATE",
                    "{}: prefix {cut} accepted",
                    v.name
                );
                continue;
            }
            let e = json::decode(v.channel, prefix).unwrap_err();
            assert!(
                e.offset <= cut,
                "{}: offset {} beyond {cut}",
                v.name,
                e.offset
            );
        }
        let mut longer = v.bytes.clone();
        longer.push(0);
        assert!(
            json::decode(v.channel, &longer).is_err(),
            "{}: trailing byte accepted",
            v.name
        );
        // A count of 2 in the first field.
        let mut miscounted = v.bytes.clone();
        miscounted[3] = 2;
        assert!(
            json::decode(v.channel, &miscounted).is_err(),
            "{}: count 2 accepted",
            v.name
        );
    }
}
