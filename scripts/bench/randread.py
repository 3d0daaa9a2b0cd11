#!/usr/bin/env python3
"""Latency of small random reads, for scripts/bench.sh.

  randread.py file PATH COUNT SEED          # os.pread of 4 KiB at COUNT random offsets
  randread.py http URL SIZE COUNT SEED      # the same offsets as Range GETs, one keep-alive
                                            # connection (the HTTP floor for the same reads)
  randread.py list URL BUCKET PREFIX        # every ListObjectsV2 page of a prefix

Prints "p50_ms p95_ms total_s" (file, http) or "keys total_s" (list). Offsets are 4 KiB
aligned and come from a seeded generator, so every tool reads the same 4 KiB blocks in the
same order. A process (not a shell loop) does the reads so that fork/exec cost is not part
of a 4 KiB read's latency.
"""
import http.client
import os
import random
import re
import sys
import time
import urllib.parse

BLOCK = 4096


def offsets(size, count, seed):
    rng = random.Random(seed)
    return [rng.randrange(size // BLOCK) * BLOCK for _ in range(count)]


def summary(lat, total):
    lat = sorted(lat)
    p50 = lat[(len(lat) - 1) // 2]
    p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))]
    print(f"{p50 * 1000:.3f} {p95 * 1000:.3f} {total:.3f}")


def read_file(path, count, seed):
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    lat = []
    t0 = time.perf_counter()
    for off in offsets(size, count, seed):
        t = time.perf_counter()
        data = os.pread(fd, BLOCK, off)
        lat.append(time.perf_counter() - t)
        if len(data) != BLOCK:
            sys.exit(f"short read at {off}: {len(data)} bytes")
    total = time.perf_counter() - t0
    os.close(fd)
    summary(lat, total)


def read_http(url, size, count, seed):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    lat = []
    t0 = time.perf_counter()
    for off in offsets(size, count, seed):
        t = time.perf_counter()
        conn.request("GET", u.path, headers={"Range": f"bytes={off}-{off + BLOCK - 1}"})
        resp = conn.getresponse()
        data = resp.read()
        lat.append(time.perf_counter() - t)
        if resp.status != 206 or len(data) != BLOCK:
            sys.exit(f"GET {off}: status {resp.status}, {len(data)} bytes")
    total = time.perf_counter() - t0
    summary(lat, total)


def list_all(url, bucket, prefix):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    keys, token = 0, None
    t0 = time.perf_counter()
    while True:
        q = {"list-type": "2", "prefix": prefix, "max-keys": "1000"}
        if token:
            q["continuation-token"] = token
        conn.request("GET", f"/{bucket}?{urllib.parse.urlencode(q)}")
        resp = conn.getresponse()
        body = resp.read().decode()
        if resp.status != 200:
            sys.exit(f"list: status {resp.status}: {body[:300]}")
        keys += body.count("<Key>")
        m = re.search(r"<NextContinuationToken>([^<]*)</NextContinuationToken>", body)
        if "<IsTruncated>true</IsTruncated>" not in body or not m:
            break
        token = m.group(1)
    print(f"{keys} {time.perf_counter() - t0:.3f}")


def main(argv):
    if argv[:1] == ["file"] and len(argv) == 4:
        read_file(argv[1], int(argv[2]), int(argv[3]))
    elif argv[:1] == ["http"] and len(argv) == 5:
        read_http(argv[1], int(argv[2]), int(argv[3]), int(argv[4]))
    elif argv[:1] == ["list"] and len(argv) == 4:
        list_all(argv[1], argv[2], argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
