#!/usr/bin/env bash
# Writes the seed corpus of every fuzz target from Open MPI's own encodings
# (conformance/ompi_vectors.c, needs libopenmpi-dev) plus hand-made FIFO frames
# and names. The result is committed; rerun after adding vectors.
set -euo pipefail
cd "$(dirname "$0")/.."
exe=target/ompi_vectors
bash conformance/build.sh "$exe"
corpus=fuzz/corpus
mkdir -p "$corpus"/{decode_to_gc,decode_from_gc,decode_to_daemon,fifo_frames,fifo_name,roundtrip_messages,roundtrip_frames,local_machine,global_machine}
"$exe" | while IFS=$'\t' read -r name channel hex _json; do
    target="decode_${channel//-/_}"
    printf '%s' "$hex" | xxd -r -p > "$corpus/$target/$name"
    cp "$corpus/$target/$name" "$corpus/roundtrip_messages/$name"
done
python3 - "$corpus" <<'PY'
import struct, sys, os
corpus = sys.argv[1]
def put(target, name, data):
    with open(os.path.join(corpus, target, name), "wb") as f:
        f.write(data)
ints = lambda *v: struct.pack("=" + "i" * len(v), *v)
put("fifo_frames", "options", ints(0, 0, 0, 0, 0, 0, 7))
put("fifo_frames", "options-migrating-term", ints(1, 1, 1, 0, 0, 0, 1))
put("fifo_frames", "options-debug", ints(0, 0, 0, 1, 1, 0, 1, 0, 42))
for code in range(-1, 9):
    put("fifo_frames", f"int-{code}", ints(code))
for name in ["opal_cr_prog_read.4242_0", "opal_cr_prog_write.1_2147483647",
             "/run/user/1000/snapc/opal_cr_prog_read.77_3", "opal_cr_prog_read.012_3"]:
    put("fifo_name", name.replace("/", "_"), name.encode())
put("roundtrip_frames", "zeros", bytes(21))
put("roundtrip_frames", "ones", bytes([0xff]) * 21)
# State-machine targets: all-zero and ramp bytes, plus small inputs found by
# the fuzzer that reach deep (arbitrary's layout of LocalScenario and
# GlobalScenario; they stay valid inputs, if shallower, when that changes).
for target in ("local_machine", "global_machine"):
    put(target, "zeros", bytes(64))
    put(target, "ramp", bytes(range(64)))
put("local_machine", "go-ahead", bytes.fromhex(
    "00000301025d05454900434b496627001b1d1d1e1febebebebebebebebebebebebebebebebebebebebebebebebeb1e1f2036373a"))
put("local_machine", "release", bytes.fromhex(
    "001b1d21aaa3242526272829262728292a2b2c2d2e2f9244e05000040003bfe2c6d9d8d7d7d7d7d7dbd7d7d730d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d76b6b6b625d6b6b6bd7d7d7d7d7d7d7d7d7d7d7d7d7"))
put("local_machine", "stop", bytes.fromhex(
    "00000301025d0545010001000003000000c1ffffebebebebebebebebebebebebebebebeb01ebebebebebebebebeb202122ff93ebebebebebeb363a"))
put("global_machine", "checkpoint-done", bytes.fromhex(
    "02030408292b797979797979790000047f73df6482797979797979797979c07979797979ffff7979ffffffffffffff2a2b1f00023a797979797979797979797979797979797979797900000479031a"))
put("global_machine", "fin-ack", bytes.fromhex(
    "13020063830c0500003e3f"))
put("global_machine", "migrate", bytes.fromhex(
    "02030408292b260709050b0c0d0e0f10111800163aa7002b000000082829ff7f00797979797969797979797179797979797979031a"))
put("global_machine", "quiesce", bytes.fromhex(
    "ffffff3f00096d14a9a9a9a9a9a9a9a9a9e9a9038b8b8b8be3078b8b8b8b0100000443"))
put("global_machine", "restart", bytes.fromhex(
    "000102030405060708090a0b0c0d0e0f101132133b3c3d3e3f"))
# Zero write deadline: the releases handle_timeout starts are due at once.
put("local_machine", "zero-deadlines", bytes.fromhex(
    "001b1d1c1e01000000000000042728292a2b2c2d2e2f9244e05000040003bf0000d9d8d7d7d7d7d7d7d7d7d7d7d7d700d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d797d72b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2bffffffffffffffffffffffffffffffffffff00ffffffffff7171717171717171020304716e7171717171717171712b2b2b712b"))
# Zero FIN deadline: a FIN expires as the next one arrives.
put("global_machine", "fin-deadline-zero", bytes.fromhex(
    "a9a9a9a900009ea9a9a9a9a9a9a9a9a90163830c040000c00902ffbfffffffffa9000102ffffbfffffffff089eb00163830c040000c00902ffbfffffffff089eb003"))
PY
echo "corpus written: $(find "$corpus" -type f | wc -l) files"
