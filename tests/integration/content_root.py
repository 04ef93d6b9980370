#!/usr/bin/env python3
"""The model content root, written from docs/protocol.md ("Model content root") alone, to check
qmesh-cli model root against an implementation that shares no code with it.
usage: content_root.py FILE  ->  prints {"root": hex, "size": N, "chunks": N}"""
import hashlib
import json
import struct
import sys

CHUNK = 1 << 20


def h(*parts):
    d = hashlib.blake2b(digest_size=32)
    for p in parts:
        d.update(p)
    return d.digest()


def content_root(path):
    leaves, size = [], 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            leaves.append(h(b"qmesh-leaf", struct.pack("<Q", len(leaves)), chunk))
            size += len(chunk)
    level = leaves
    while len(level) > 1:
        up = [h(b"qmesh-node", level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            up.append(level[-1])  # an odd node is carried up unchanged
        level = up
    top = level[0] if level else bytes(32)
    return {"root": h(b"qmesh-root", struct.pack("<Q", size), top).hex(), "size": size, "chunks": len(leaves)}


if __name__ == "__main__":
    print(json.dumps(content_root(sys.argv[1])))
