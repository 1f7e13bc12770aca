#!/usr/bin/env python3
"""Turns connections recorded by record_proxy.py into seed corpora for the client_frames and
replies targets.

usage: split_capture.py <capture dir> <fuzz dir>

- client_frames: a connection's client-to-server bytes (handshake, then request frames), cut at
  a frame boundary to at most MAX_SEED bytes. Connections are chosen greedily for opcodes not yet
  covered; a connection longer than MAX_SEED gives more seeds (handshake + the next frames).
  A connection that starts with a four-letter word gives that word.
- replies: one byte choosing the request's opcode (its index in fuzz_targets/replies.rs OPS)
  and a reply frame's payload, matched to its request by xid; a few per (opcode, error).
"""
import os
import struct
import sys
from collections import defaultdict

MAX_SEED = 4096
MAX_CLIENT_SEEDS = 36
REPLIES_PER_KIND = 1
MAX_REPLY = 1024
MAX_REPLY_SEEDS = 40
# Must match OPS in fuzz_targets/replies.rs.
REPLY_OPS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22, 100, 101,
             102, 103, 104, 105, 106, 107, -11, 55]
WORDS = {b"conf", b"cons", b"crst", b"dump", b"envi", b"ruok", b"srst", b"srvr", b"stat",
         b"wchs", b"wchc", b"wchp", b"dirs", b"mntr", b"isro", b"hash", b"gtmk", b"stmk"}


def frames(data):
    """(offset, payload) of each complete frame."""
    out, pos = [], 0
    while pos + 4 <= len(data):
        (n,) = struct.unpack(">i", data[pos:pos + 4])
        if n < 0 or pos + 4 + n > len(data):
            break
        out.append((pos, data[pos + 4:pos + 4 + n]))
        pos += 4 + n
    return out


def main():
    cap, fuzz = sys.argv[1], sys.argv[2]
    client_dir = os.path.join(fuzz, "corpus", "client_frames")
    replies_dir = os.path.join(fuzz, "corpus", "replies")
    os.makedirs(client_dir, exist_ok=True)
    os.makedirs(replies_dir, exist_ok=True)
    names = sorted(f[:-4] for f in os.listdir(cap) if f.endswith(".c2s"))
    covered, seeds, words, labels = set(), [], set(), set()
    replies = defaultdict(list)
    for name in names:
        c2s = open(os.path.join(cap, name + ".c2s"), "rb").read()
        s2c = open(os.path.join(cap, name + ".s2c"), "rb").read()
        if c2s[:4] in WORDS:
            if c2s[:4] not in words:
                words.add(c2s[:4])
                seeds.append((f"4lw-{c2s[:4].decode()}", c2s[:4]))
            continue
        fr = frames(c2s)
        if not fr:
            continue
        handshake_end = 4 + len(fr[0][1])
        ops = {}
        for off, payload in fr[1:]:
            if len(payload) >= 8:
                xid, op = struct.unpack(">ii", payload[:8])
                ops.setdefault(op, off)
                replies_xid = xid
        new = set(ops) - covered
        label = name.rsplit("-", 1)[0]
        if label not in labels and len(fr) > 2:
            # The start of the first real conversation of each client kind.
            labels.add(label)
            new |= {next(iter(ops))}
        if new:
            covered |= new
            # One seed per group of frames that fits, starting where a new opcode first appears.
            starts = sorted({ops[o] for o in new})
            taken_until = 0
            for start in starts:
                if start < taken_until:
                    continue
                seed = bytearray(c2s[:handshake_end])
                end = start
                for off, payload in fr[1:]:
                    if off < start:
                        continue
                    if len(seed) + 4 + len(payload) > MAX_SEED:
                        break
                    seed += c2s[off:off + 4 + len(payload)]
                    end = off + 4 + len(payload)
                taken_until = end
                seeds.append((f"{name}-{start}", bytes(seed)))
        # Replies, matched by xid to the request's opcode.
        by_xid = {}
        for _, payload in fr[1:]:
            if len(payload) >= 8:
                xid, op = struct.unpack(">ii", payload[:8])
                by_xid[xid] = op
        for _, payload in frames(s2c)[1:]:
            if len(payload) < 16:
                continue
            xid, _zxid, err = struct.unpack(">iqi", payload[:16])
            op = by_xid.get(xid)
            if op is None or op not in REPLY_OPS or len(payload) > MAX_REPLY:
                continue
            kind = (op, err)
            if len(replies[kind]) < REPLIES_PER_KIND and payload not in [p for _, p in replies[kind]]:
                replies[kind].append((name, payload))
    seeds.sort(key=lambda s: (not s[0].startswith("4lw"), s[0]))
    words_seeds = [s for s in seeds if s[0].startswith("4lw")][:4]
    others = [s for s in seeds if not s[0].startswith("4lw")][: MAX_CLIENT_SEEDS - len(words_seeds)]
    for label, seed in words_seeds + others:
        open(os.path.join(client_dir, label), "wb").write(seed)
    kinds = sorted(replies.items(), key=lambda kv: (kv[0][1] != 0, kv[0]))[:MAX_REPLY_SEEDS]
    for (op, err), items in kinds:
        for i, (name, payload) in enumerate(items):
            sel = REPLY_OPS.index(op)
            label = f"op{op}-err{err}-{i}"
            open(os.path.join(replies_dir, label), "wb").write(bytes([sel]) + payload)
    print(f"client_frames: {len(words_seeds) + len(others)} seeds covering opcodes {sorted(covered)}")
    print(f"replies: {len(kinds)} seeds of {len(replies)} (op, err) kinds")


if __name__ == "__main__":
    main()
