#!/usr/bin/env python3
"""Writes the seed corpus in Fuzz/Corpus: a few valid handshakes and request sequences.

The fuzzers keep what they find in .build-fuzz/corpus; run `FUZZ_MERGE=1 Fuzz/run.sh` to fold new
coverage back into Fuzz/Corpus. Re-run this script only to reset the seeds."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OPT_MAGIC = 0x49484156454F5054
REQ_MAGIC = 0x25609513
EXT_REQ_MAGIC = 0x21E41C71


def option(code, data=b""):
    return struct.pack(">QII", OPT_MAGIC, code, len(data)) + data


def string(text):
    return struct.pack(">I", len(text)) + text


def info(name=b"", requests=()):
    return string(name) + struct.pack(">H", len(requests)) + b"".join(struct.pack(">H", r) for r in requests)


def meta(queries, name=b""):
    return string(name) + struct.pack(">I", len(queries)) + b"".join(string(q) for q in queries)


def request(kind, offset=0, length=0, flags=0, cookie=1, payload=b""):
    return struct.pack(">IHHQQI", REQ_MAGIC, flags, kind, cookie, offset, length) + payload


def ext_request(kind, offset=0, length=0, flags=0, cookie=1, payload=b""):
    """An extended (32-byte) request header; PAYLOAD_LEN (0x20) is set when there is a payload."""
    if payload:
        flags |= PAYLOAD_LEN
    return struct.pack(">IHHQQQ", EXT_REQ_MAGIC, flags, kind, cookie, offset, length) + payload


READ, WRITE, DISC, FLUSH, TRIM, CACHE, ZERO, STATUS = range(8)
FUA, NO_HOLE, DF, REQ_ONE, FAST_ZERO, PAYLOAD_LEN = 1, 2, 4, 8, 16, 32
FLAGS = struct.pack(">I", 3)

handshakes = {
    "go": FLAGS + option(7, info()),
    "structured-meta-go": FLAGS + option(8) + option(10, meta([b"base:allocation"])) + option(7, info(b"", (0, 1, 2, 3))),
    "list-info-abort": struct.pack(">I", 1) + option(3) + option(6, info(b"x")) + option(6, info(b"disk", (3,))) + option(2),
    "list-meta-export-name": FLAGS + option(8) + option(9, meta([b"base:"])) + option(9, meta([])) + option(1, b"disk"),
    "unsupported-then-go": FLAGS + option(5) + option(99, b"abc") + option(8, b"x") + option(7, info(b"a", (1,))),
    # STARTTLS: the harness runs every input with TLS off, on and required; after STARTTLS its
    # pass-through "TLS" handshake reads one byte (0 fails it).
    "starttls-go": FLAGS + option(5) + b"\x01" + option(8) + option(10, meta([b"base:allocation"])) + option(7, info()),
    "plaintext-then-starttls": FLAGS + option(3) + option(8) + option(10, meta([b"base:allocation"])) + option(5)
    + b"\x01" + option(10, meta([b"base:allocation"])) + option(5) + option(1, b"disk"),
    "starttls-fails": FLAGS + option(5) + b"\x00",
    "starttls-with-data": FLAGS + option(5, b"x") + option(6, info()) + option(2),
    # Extended headers (NBD_OPT_EXTENDED_HEADERS, 11): with data, twice, then structured replies
    # (refused: extended headers take precedence), meta contexts and GO; and EXPORT_NAME after them.
    "extended-meta-go": FLAGS + option(11, b"x") + option(11) + option(8) + option(10, meta([b"base:allocation"]))
    + option(7, info(b"", (3,))),
    "extended-export-name": FLAGS + option(8) + option(11) + option(1, b"disk"),
    "extended-starttls": FLAGS + option(11) + option(5) + b"\x01" + option(11) + option(7, info()),
}

data = bytes(range(256)) * 2
connections = {
    # byte 0: 1 GO, 2 structured + base:allocation + GO, 3 EXPORT_NAME, 0 the input's own handshake;
    # 0x04 slow operations, 0x08 read-only, 0x10 hole detection, 0xE0 recv chunk size.
    # byte 1: 0x0F send failure, 0x10 block sizes, 0x20 no extents, 0x40 emulated FUA, 0x80 no trim/zero.
    "simple-io": bytes([1, 0]) + request(WRITE, 4096, 512, payload=data) + request(READ, 0, 512, cookie=2)
    + request(FLUSH, cookie=3) + request(DISC),
    "structured-io": bytes([2, 0]) + request(READ, 0, 8192) + request(STATUS, 0, 16384, cookie=2)
    + request(STATUS, 4096, 4096, REQ_ONE, cookie=3) + request(READ, 0, 4096, DF, cookie=4) + request(DISC),
    "write-flags": bytes([1, 0]) + request(WRITE, 0, 512, FUA, payload=data) + request(TRIM, 0, 4096, cookie=2)
    + request(ZERO, 8192, 4096, NO_HOLE, cookie=3) + request(ZERO, 0, 4096, FAST_ZERO, cookie=4)
    + request(CACHE, 0, 4096, cookie=5) + request(DISC),
    "slow-ops": bytes([6, 0]) + request(FLUSH) + request(WRITE, 0, 512, FUA, cookie=2, payload=data)
    + request(ZERO, 0, 4096, cookie=3) + request(FLUSH, cookie=4) + request(READ, 0, 512, cookie=5),
    "holes": bytes([0x12, 0]) + request(READ, 0, 16384) + request(READ, 4096, 8192, cookie=2) + request(DISC),
    "own-handshake": bytes([0, 0]) + handshakes["structured-meta-go"] + request(READ, 0, 512)
    + request(STATUS, 0, 4096, cookie=2),
    "export-name-block-size": bytes([3, 0x10]) + request(READ, 512, 1024) + request(READ, 1, 511, cookie=2)
    + request(WRITE, 0, 1024, cookie=3, payload=data * 2),
    "large-write-chunked": bytes([0x21, 0]) + request(WRITE, 0, 5000, payload=bytes(5000)) + request(READ, 0, 5000, cookie=2),
    "errors": bytes([2, 0x40]) + request(READ, 0xE00, 512) + request(STATUS, 0xD00, 512, cookie=2)
    + request(WRITE, 0xE00, 16, cookie=3, payload=bytes(16)) + request(READ, 1 << 40, 512, cookie=4)
    + request(42, cookie=5) + request(WRITE, 1 << 40, 16, cookie=6, payload=bytes(16)),
    "extended-io": bytes([0, 0]) + handshakes["extended-meta-go"] + ext_request(WRITE, 0, 512, payload=data)
    + ext_request(READ, 0, 8192, cookie=2) + ext_request(STATUS, 0, 1 << 18, cookie=3)
    + ext_request(STATUS, 0, 12, PAYLOAD_LEN, cookie=4, payload=struct.pack(">QI", 8192, 1))
    + ext_request(ZERO, 0, 1 << 17, cookie=5) + ext_request(TRIM, 4096, 8192, cookie=6)
    + ext_request(CACHE, 0, 1 << 18, cookie=7) + ext_request(FLUSH, cookie=8) + ext_request(DISC, cookie=9),
    "extended-errors": bytes([0x10, 0]) + FLAGS + option(11) + option(10, meta([b"base:allocation"])) + option(7, info())
    + ext_request(WRITE, 0, 4, cookie=1) + bytes(4) + ext_request(READ, 0, 1 << 33, cookie=2)
    + ext_request(FLUSH, 0, 4, PAYLOAD_LEN, cookie=3, payload=bytes(4))
    + ext_request(STATUS, 0, 16, PAYLOAD_LEN, cookie=4, payload=struct.pack(">QII", 4096, 1, 1))
    + ext_request(STATUS, 0, 12, PAYLOAD_LEN, cookie=5, payload=struct.pack(">QI", 4096, 7))
    + ext_request(42, 0, 3, PAYLOAD_LEN, cookie=6, payload=bytes(3)) + ext_request(ZERO, 1 << 40, 1 << 33, cookie=7)
    + request(READ, 0, 512, cookie=8),
    "read-only-send-fails": bytes([0x09, 0x03]) + request(WRITE, 0, 16, payload=bytes(16)) + request(READ, 0, 4096, cookie=2),
}

for directory, seeds in (("Handshake", handshakes), ("Connection", connections)):
    path = os.path.join(HERE, "Corpus", directory)
    os.makedirs(path, exist_ok=True)
    for name, content in seeds.items():
        with open(os.path.join(path, "seed-" + name), "wb") as f:
            f.write(content)
