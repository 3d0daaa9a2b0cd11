#!/usr/bin/env python3
"""Latency of random reads and rate of small-object reads, for scripts/bench.sh.

  randread.py file PATH COUNT SEED [BLOCK]      # os.pread of BLOCK (4 KiB) at COUNT random offsets
  randread.py http URL SIZE COUNT SEED [BLOCK]  # the same offsets as Range GETs, one keep-alive
                                                # connection (the HTTP floor for the same reads)
  randread.py list URL BUCKET PREFIX            # every ListObjectsV2 page of a prefix
  randread.py many-file DIR COUNT THREADS       # read f00001.bin..fCOUNT.bin whole, THREADS at once
  randread.py many-http URL BUCKET PREFIX COUNT THREADS
                                                # the same objects, one GET each, THREADS
                                                # keep-alive clients (the small-object limit)

Prints "p50_ms p99_ms total_s" (file, http), "keys total_s" (list) or "files_per_s bytes"
(many-*). Offsets are BLOCK aligned and come from a seeded generator, so every tool reads
the same blocks in the same order. A process (not a shell loop) does the reads so that
fork/exec cost is not part of a read's latency.
"""
import http.client
import os
import queue
import threading
import random
import re
import sys
import time
import urllib.parse

BLOCK = 4096


def offsets(size, count, seed, block=BLOCK):
    rng = random.Random(seed)
    return [rng.randrange(size // block) * block for _ in range(count)]


def summary(lat, total):
    lat = sorted(lat)
    p50 = lat[(len(lat) - 1) // 2]
    p99 = lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))]
    print(f"{p50 * 1000:.3f} {p99 * 1000:.3f} {total:.3f}")


def read_file(path, count, seed, block=BLOCK):
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    lat = []
    t0 = time.perf_counter()
    for off in offsets(size, count, seed, block):
        t = time.perf_counter()
        data = os.pread(fd, block, off)
        lat.append(time.perf_counter() - t)
        if len(data) != block:
            sys.exit(f"short read at {off}: {len(data)} bytes")
    total = time.perf_counter() - t0
    os.close(fd)
    summary(lat, total)


def connect(u):
    if u.scheme == "https":
        import ssl
        ctx = ssl.create_default_context(cafile=os.environ.get("BENCH_CA"))
        return http.client.HTTPSConnection(u.hostname, u.port, timeout=60, context=ctx)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=60)


def read_http(url, size, count, seed, block=BLOCK):
    u = urllib.parse.urlsplit(url)
    conn = connect(u)
    lat = []
    t0 = time.perf_counter()
    for off in offsets(size, count, seed, block):
        t = time.perf_counter()
        conn.request("GET", u.path, headers={"Range": f"bytes={off}-{off + block - 1}"})
        resp = conn.getresponse()
        data = resp.read()
        lat.append(time.perf_counter() - t)
        if resp.status != 206 or len(data) != block:
            sys.exit(f"GET {off}: status {resp.status}, {len(data)} bytes")
    total = time.perf_counter() - t0
    summary(lat, total)


def list_all(url, bucket, prefix):
    u = urllib.parse.urlsplit(url)
    conn = connect(u)
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


def small_names(count):
    return [f"f{i:05d}.bin" for i in range(1, count + 1)]


def run_threads(names, threads, work):
    """work(name, state) -> bytes; state is per thread (a connection). Prints the rate."""
    q = queue.Queue()
    for n in names:
        q.put(n)
    total = [0] * threads
    errors = []

    def worker(i):
        state = {}
        try:
            while True:
                try:
                    n = q.get_nowait()
                except queue.Empty:
                    return
                total[i] += work(n, state)
        except Exception as e:  # reported below; a failed read must fail the row
            errors.append(f"{e}")

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    secs = time.perf_counter() - t0
    if errors:
        sys.exit(f"{len(errors)} reader(s) failed, first: {errors[0]}")
    print(f"{len(names) / secs:.1f} {sum(total)}")


def many_file(d, count, threads):
    def work(name, _state):
        n = 0
        with open(os.path.join(d, name), "rb", buffering=0) as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    return n
                n += len(b)

    run_threads(small_names(count), threads, work)


def many_http(url, bucket, prefix, count, threads):
    u = urllib.parse.urlsplit(url)

    def work(name, state):
        if "c" not in state:
            state["c"] = connect(u)
        c = state["c"]
        c.request("GET", f"/{bucket}/{prefix}{name}")
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"GET {name}: status {r.status}")
        return len(body)

    run_threads(small_names(count), threads, work)


def main(argv):
    if argv[:1] == ["file"] and len(argv) in (4, 5):
        read_file(argv[1], int(argv[2]), int(argv[3]), *(int(x) for x in argv[4:]))
    elif argv[:1] == ["http"] and len(argv) in (5, 6):
        read_http(argv[1], int(argv[2]), int(argv[3]), int(argv[4]), *(int(x) for x in argv[5:]))
    elif argv[:1] == ["many-file"] and len(argv) == 4:
        many_file(argv[1], int(argv[2]), int(argv[3]))
    elif argv[:1] == ["many-http"] and len(argv) == 6:
        many_http(argv[1], argv[2], argv[3], int(argv[4]), int(argv[5]))
    elif argv[:1] == ["list"] and len(argv) == 4:
        list_all(argv[1], argv[2], argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
