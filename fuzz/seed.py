#!/usr/bin/env python3
"""Seeds fuzz/corpus/<target>/ from fixtures/*.hl7 (run from the repo root).

mllp_decoder inputs are [limit byte, chunk-count byte, chunk sizes..., stream]
(see hl7bridge::fuzzing::mllp_decoder); the others take the message bytes.
The committed corpus is these seeds plus what fuzzing found,
minimized with `cargo fuzz cmin`.
"""
import pathlib

root = pathlib.Path(__file__).resolve().parent.parent
fixtures = sorted((root / "fixtures").glob("*.hl7"))
out = root / "fuzz" / "corpus"
VT, FS, CR = b"\x0b", b"\x1c", b"\r"


def frame(p):
    return VT + p + FS + CR


def write(target, name, data):
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def batch_messages(raw):
    """The MSH..next-MSH slices of a batch, roughly as hl7::batch::split does."""
    lines = raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r")
    msgs, cur = [], None
    for line in lines:
        tag = line[:3]
        if tag in (b"MSH", b"BHS", b"BTS", b"FHS", b"FTS"):
            if cur:
                msgs.append(b"\r".join(cur) + b"\r")
            cur = [line] if tag == b"MSH" else None
        elif cur is not None and line:
            cur.append(line)
    if cur:
        msgs.append(b"\r".join(cur) + b"\r")
    return msgs


for f in fixtures:
    raw = f.read_bytes()
    stem = f.stem
    write("parse_route_ack", stem, raw)
    write("map_avro", stem, raw)
    if raw.lstrip(b"\xef\xbb\xbf").startswith((b"FHS", b"BHS")):
        for i, m in enumerate(batch_messages(raw)):
            write("map_avro", f"{stem}_{i}", m)
    # Limit 128 (byte 0x7f), one read: fixtures are larger, so oversize.
    write("mllp_decoder", stem + "_oversize", b"\x7f\x00" + b"junk" + frame(raw) + frame(b"MSH|^~\\&|A"))
    # Limit 128, reads of 7, 1 and 64 bytes over the first line only.
    first = raw.replace(b"\n", b"\r").split(b"\r")[0][:120]
    write("mllp_decoder", stem + "_chunked", b"\x7f\x03\x06\x00\x3f" + frame(first) + b"\r\n" + frame(first[:40]))

# Hand-made MLLP streams: pipelined frames, FS without CR, FS|CR split, junk.
write("mllp_decoder", "pipelined", b"\x20\x00" + frame(b"A") + frame(b"B") + frame(b"C"))
write("mllp_decoder", "fs_no_cr", b"\x20\x02\x01\x02" + frame(b"A\x1cB\x0bC"))
write("mllp_decoder", "split_end", b"\x20\x01\x04" + b"\x0bMSH\x1c\x0d")
write("mllp_decoder", "partial_at_eof", b"\x20\x00xx\x0bMSH|partial")
