//! `snapc wire` as a user runs it: decode, encode, and clean failures.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn snapc(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_snapc"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn snapc");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone())
        .unwrap()
        .trim_end()
        .to_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

const INIT: &str = "00000001 08 | 00000001 12340001 | 00000001 09 00000001";

#[test]
fn decodes_the_protocol_example_from_an_argument_and_from_stdin() {
    let expected = r#"{"message":"REQUEST_OP","jobid":305397761,"op_event":"INIT"}"#;
    let o = snapc(&["wire", "decode", "--channel", "to-gc", INIT], "");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), expected);
    let o = snapc(&["wire", "decode", "--channel", "to-gc"], INIT);
    assert_eq!(stdout(&o), expected);
}

#[test]
fn decode_then_encode_reproduces_the_input() {
    let cases = [
        ("to-gc", INIT),
        // MIGRATE with one entry and a NULL host.
        (
            "to-gc",
            "00000001 08 00000001 00000007 00000001 09 00000006 00000001 09 00000001 00000001 09 00000003 00000001 00000000 00000001 09 ffffffff 00000001 09 00000001",
        ),
        ("from-gc", "00000001 08 00000001 09 00000003"),
        (
            "from-gc",
            "00000001 08 00000001 09 00000004 00000001 09 ffffffff",
        ),
        ("to-daemon", "00000001 05 00000001 09 00000004"),
    ];
    for (channel, hex) in cases {
        let decoded = snapc(&["wire", "decode", "--channel", channel, hex], "");
        assert!(decoded.status.success(), "{hex}: {}", stderr(&decoded));
        let encoded = snapc(&["wire", "encode", "--channel", channel], &stdout(&decoded));
        assert!(encoded.status.success(), "{}", stderr(&encoded));
        let want: String = hex.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        assert_eq!(stdout(&encoded), want);
    }
}

#[test]
fn malformed_buffers_exit_2_naming_field_and_offset() {
    let cases = [
        // Truncated inside the op_event value.
        (
            "to-gc",
            "00000001 08 00000001 12340001 00000001 09 0000",
            "op_event at byte 18",
        ),
        // Trailing byte.
        (
            "to-daemon",
            "00000001 05 00000001 09 00000004 00",
            "end of message at byte 14",
        ),
        // Count 2 for the command.
        ("to-daemon", "00000002 05", "command at byte 0"),
        // Wrong type byte for the int.
        (
            "to-daemon",
            "00000001 05 00000001 0e 00000004",
            "cr_state at byte 9",
        ),
        // Unknown op_event.
        (
            "to-gc",
            "00000001 08 00000001 12340001 00000001 09 0000000a",
            "unknown op_event 10",
        ),
        // LOCAL_FINISH is not carried to the global coordinator.
        (
            "to-gc",
            "00000001 05 00000001 09 00000004",
            "command 5 is not carried",
        ),
        // Negative migrate count.
        (
            "to-gc",
            "00000001 08 00000001 00000001 00000001 09 00000006 00000001 09 ffffffff",
            "negative element count",
        ),
        // Empty input.
        ("from-gc", "", "command at byte 0"),
    ];
    for (channel, hex, needle) in cases {
        let o = snapc(&["wire", "decode", "--channel", channel, hex], "");
        assert_eq!(o.status.code(), Some(2), "{hex}");
        let err = stderr(&o);
        assert!(err.contains(needle), "{hex}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn bad_hex_and_bad_json_exit_2() {
    let o = snapc(&["wire", "decode", "--channel", "to-gc", "0x01"], "");
    assert_eq!(o.status.code(), Some(2));
    let o = snapc(&["wire", "encode", "--channel", "to-daemon"], "{not json");
    assert_eq!(o.status.code(), Some(2));
    let o = snapc(
        &["wire", "encode", "--channel", "to-daemon"],
        r#"{"message":"LOCAL_FINISH","cr_state":"CONTINUE","extra":1}"#,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown field \"extra\""));
    let o = snapc(
        &["wire", "encode", "--channel", "to-gc"],
        r#"{"message":"LOCAL_FINISH","cr_state":"CONTINUE"}"#,
    );
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn fifo_options_frame_decodes_in_host_order() {
    let mut frame = Vec::new();
    for word in [0i32, 1, 1, 0, 0, 0, 42] {
        frame.extend_from_slice(&word.to_ne_bytes());
    }
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    let o = snapc(&["wire", "decode", "--channel", "fifo-options", &hex], "");
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["migrating"], true);
    assert_eq!(v["term"], true);
    assert_eq!(v["stop"], false);
    assert_eq!(v["handle"], 42);
    let back = snapc(
        &["wire", "encode", "--channel", "fifo-options"],
        &stdout(&o),
    );
    assert_eq!(stdout(&back), hex);
    let short = snapc(
        &["wire", "decode", "--channel", "fifo-options", "00000000"],
        "",
    );
    assert_eq!(short.status.code(), Some(2));
}
