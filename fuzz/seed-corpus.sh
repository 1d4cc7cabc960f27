#!/usr/bin/env bash
# Writes the seed corpus of every fuzz target from Open MPI's own encodings
# (conformance/ompi_vectors.c, needs libopenmpi-dev) plus hand-made FIFO frames
# and names. The result is committed; rerun after adding vectors.
set -euo pipefail
cd "$(dirname "$0")/.."
exe=target/ompi_vectors
bash conformance/build.sh "$exe"
corpus=fuzz/corpus
mkdir -p "$corpus"/{decode_to_gc,decode_from_gc,decode_to_daemon,fifo_frames,fifo_name,roundtrip_messages,roundtrip_frames}
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
PY
echo "corpus written: $(find "$corpus" -type f | wc -l) files"
