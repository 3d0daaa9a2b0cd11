#!/usr/bin/env python3
"""Soak ossmount against `ossmount serve` with random faults (issue 16, part 4).

Usage: scripts/soak.py BIN MINUTES WORKDIR

Several readers (sequential whole-file, random 4 KiB preads, small whole files) check every
byte against the served source while a fault loop, every few seconds, picks one of: resets,
503s, stalls, latency (through serve's --testing-aids), an object replaced, the mount
killed with SIGKILL and mounted again, or faults off. The cache lives on a small tmpfs
that the objects overfill, so the cache disk is nearly full throughout.

Prints totals: operations, bytes checked, faults, errors (EIO/ESTALE/ENOTCONN are allowed:
faults cause them), wrong bytes (must be 0; an EOF before the object's end counts, and is
also counted as a short read; a read short for any other reason is read on, as POSIX
readers must, and only its bytes are checked), crashes (the mount dying on its own, must be
0), peak RSS of the mount, and the soaked mount's open fds against a fresh mount's after
one read of every object. Exits 1 if wrong bytes or crashes are not 0, or the soaked
mount holds more than 32 fds over the fresh one.
"""
import hashlib, json, os, random, signal, subprocess, sys, threading, time, urllib.request, zlib

BIN, MINUTES, WORK = sys.argv[1], float(sys.argv[2]), sys.argv[3]
DATA = os.path.join(WORK, "data")
BUCKET = os.path.join(DATA, "bkt")
MNT = os.path.join(WORK, "mnt")
CACHE = os.path.join(WORK, "cache")
LOG = os.path.join(WORK, "mount.log")
MIB = 1 << 20

rng = random.Random(int(os.environ.get("SOAK_SEED", "16")))
lock = threading.Lock()
T = dict(ops=0, bytes_checked=0, faults=0, errors=0, wrong_bytes=0, short_reads=0, read_on=0,
         crashes=0, remounts=0, replaced=0, peak_rss_kib=0, probes=[])
# Mount generation: 1 for the first mount, +1 at every remount. A reader notes it when it
# opens a file, so a wrong byte says whether its fd outlived a kill -9 + remount.
gen = 0
fault_kinds = {}


def pattern(n, seed):
    r = random.Random(seed)
    return r.randbytes(n)


def sh(*args, **kw):
    return subprocess.run(args, check=False, **kw)


# ---- the served tree ----------------------------------------------------------------
os.makedirs(BUCKET, exist_ok=True)
os.makedirs(MNT, exist_ok=True)
os.makedirs(CACHE, exist_ok=True)
big = {f"big/{i}.bin": (24 + 8 * i) * MIB for i in range(3)}           # never replaced
small = {f"small/{i:03}.dat": rng.randint(1, 200_000) for i in range(60)}  # replaced
versions = {}  # small key -> {sha256: bytes} of every version ever served
for k, n in list(big.items()) + list(small.items()):
    p = os.path.join(BUCKET, k)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    b = pattern(n, zlib.crc32(k.encode()))  # not hash(): salted per process
    with open(p, "wb") as f:
        f.write(b)
    if k in small:
        versions[k] = {hashlib.sha256(b).hexdigest(): b}
# Read only by the kill -9 probe (see kill_and_remount), so that only the page it reads is
# in the kernel's page cache, and never finalized (so never passthrough).
PROBE = "probe/0.bin"
os.makedirs(os.path.join(BUCKET, "probe"), exist_ok=True)
with open(os.path.join(BUCKET, PROBE), "wb") as f:
    f.write(pattern(8 * MIB, 0x9E37))
big_bytes = {k: open(os.path.join(BUCKET, k), "rb").read() for k in list(big) + [PROBE]}

# The cache disk: a tmpfs smaller than the objects (96 MiB for ~110 MiB of data).
if sh("mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", CACHE).returncode != 0:
    print("soak: cannot mount a tmpfs for the cache (needs root)", file=sys.stderr)
    sys.exit(2)

serve = subprocess.Popen([BIN, "serve", DATA, "--listen", "127.0.0.1:0", "--anonymous",
                          "--testing-aids"], stdout=subprocess.PIPE,
                         stderr=open(os.path.join(WORK, "serve.log"), "w"), text=True)
addr = serve.stdout.readline().strip().rsplit("http://", 1)[1]
URL = f"http://{addr}"


def set_faults(f):
    req = urllib.request.Request(URL + "/_ossmount/faults", data=json.dumps(f).encode(),
                                 method="PUT")
    urllib.request.urlopen(req, timeout=10).read()


mount_proc = None
killed_by_us = False


def mounted():
    with open("/proc/self/mountinfo") as f:
        return any(l.split(" ")[4] == MNT for l in f)


def mount():
    global mount_proc, killed_by_us, gen
    killed_by_us = False
    gen += 1
    mount_proc = subprocess.Popen(
        [BIN, "mount", "oss://bkt", MNT, "--endpoint", URL, "--no-sign-request",
         "--region", "cn-hangzhou", "--path-style", "--cache-dir", CACHE,
         "--cache-min-free", "8MiB", "--metadata-ttl", "2s", "--foreground"],
        stdout=subprocess.DEVNULL, stderr=open(LOG, "a"))
    t = time.time()
    while not mounted():
        if mount_proc.poll() is not None or time.time() - t > 30:
            raise SystemExit(f"soak: mount failed, see {LOG}")
        time.sleep(0.05)


def fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def rss_watch():
    while not stop.is_set():
        p = mount_proc
        try:
            with open(f"/proc/{p.pid}/status") as f:
                for l in f:
                    if l.startswith("VmHWM:"):
                        with lock:
                            T["peak_rss_kib"] = max(T["peak_rss_kib"], int(l.split()[1]))
        except OSError:
            pass
        time.sleep(0.5)


def count(ops=0, checked=0, errors=0, wrong=0):
    with lock:
        T["ops"] += ops
        T["bytes_checked"] += checked
        T["errors"] += errors
        T["wrong_bytes"] += wrong


def hexs(b):
    return b[:16].hex(" ")


def cache_copy(size):
    """The finalized (.done) and partial (.data) cache files of an object `size` bytes long
    (big objects have distinct sizes), to tell a bad cache file from a bad read path."""
    out = []
    try:
        for n in os.listdir(CACHE):
            p = os.path.join(CACHE, n)
            if n.endswith((".done", ".data")) and os.path.getsize(p) == size:
                out.append(p)
    except OSError:
        pass
    return out


def diff_bytes(got, want, key, off, opened_gen):
    """Wrong bytes in `got`, read at `off` of big object `key` (`want` is what it should
    be), with everything needed to tell where they came from; 0 when right. A read short
    of `want` inside the object is counted apart (short_reads) and also as wrong."""
    if got == want:
        return 0
    n = sum(1 for x, y in zip(got, want) if x != y)
    first = next((i for i, (x, y) in enumerate(zip(got, want)) if x != y), min(len(got), len(want)))
    last = max((i for i, (x, y) in enumerate(zip(got, want)) if x != y), default=first)
    if len(got) < len(want):
        last = len(want) - 1  # the missing bytes are the span to look at
    bad = got[first:last + 1]
    zeros = bad.count(0)
    at = off + first
    src = big_bytes[key]
    # Where the wrong bytes come from: the same object at another offset, another big
    # object, or nowhere (zeros: a hole; else foreign).
    probe = got[first:first + 64]
    found = []
    if len(probe) >= 16 and probe.count(0) < len(probe):
        for k2, b2 in big_bytes.items():
            j = b2.find(probe)
            if j >= 0:
                found.append(f"{k2}@{j}")
    with lock:
        now_gen = gen
        if len(got) < len(want):
            T["short_reads"] += 1
    # The same bytes again, through a fresh open of the current mount.
    try:
        with open(os.path.join(MNT, key), "rb") as f:
            f.seek(at)
            again = f.read(max(1, last + 1 - first))
        reread = "right" if again == src[at:at + len(again)] else f"still wrong ({hexs(again)})"
    except OSError as e:
        reread = f"failed ({e})"
    cache = []
    for p in cache_copy(len(src)):
        try:
            with open(p, "rb") as f:
                f.seek(at)
                c = f.read(max(1, last + 1 - first))
            cache.append(f"{os.path.basename(p)}: "
                         f"{'right' if c == src[at:at + len(c)] else 'WRONG ' + hexs(c)}")
        except OSError as e:
            cache.append(f"{os.path.basename(p)}: {e}")
    part = 256 << 10  # the mount's default cache part (CacheConfig::default)
    print(f"soak: WRONG BYTES {key} read at {off} len {len(want)}: got {len(got)} bytes"
          f"{' (SHORT: EOF inside the object)' if len(got) < len(want) else ''}, "
          f"{n} differ, from {at} (part {at // part} +{at % part}) to {off + last}; "
          f"{zeros} of the {len(bad)} bytes in that span are zero; got {hexs(got[first:])} "
          f"want {hexs(want[first:])}; got bytes also at {found or 'nowhere'}; "
          f"fd opened in mount gen {opened_gen}, now gen {now_gen}; re-read {reread}; "
          f"cache files: {cache or 'none'}", file=sys.stderr, flush=True)
    return n + abs(len(got) - len(want))


def opened_in(before):
    """The mount generation(s) an fd opened between two looks at `gen` belongs to."""
    return str(before) if gen == before else f"{before}-{gen}"


def checked_pread(fd, k, off, g):
    """4 KiB of big object `k` at `off` through `fd` (opened in mount generation `g`),
    every byte checked. A read may be short inside the object, as POSIX allows: the kernel
    returns the pages it copied before one that failed (an fd of a mount killed -9: its
    cached pages still read, the next one is ENOTCONN). Like any correct program, this
    asks again for the rest: that is an error (raised, allowed) or the bytes. Only an EOF
    before the object's end is a short read (wrong bytes). Returns the bytes read."""
    want = big_bytes[k]
    got, eof = b"", False
    try:
        while len(got) < 4096:
            more = os.pread(fd, 4096 - len(got), off + len(got))
            if not more:
                eof = True
                break
            if len(got) + len(more) < 4096:
                # Allowed, and counted to show how often it happens.
                with lock:
                    T["read_on"] += 1
                print(f"soak: short pread {k} at {off + len(got)}: {len(more)} of "
                      f"{4096 - len(got)} bytes, fd of mount gen {g}, now {gen}; reading on",
                      file=sys.stderr, flush=True)
            got += more
    finally:
        # What did arrive is checked even when the rest failed.
        w = want[off:off + (4096 if eof else len(got))]
        count(1, len(got), wrong=diff_bytes(got, w, k, off, g))
    return got


def common_prefix(a, b):
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def explain_small(k, got):
    """What a wrong whole-file read of small object `k` is made of: for each version ever
    served (in order), its length, and how many leading and trailing bytes of `got` it
    matches; plus the time and the mount generation, to find it in the mount's log."""
    with lock:
        vs = list(versions[k].values())
    parts = []
    for i, v in enumerate(vs):
        pre = common_prefix(got, v)
        suf = common_prefix(got[::-1], v[::-1])
        parts.append(f"v{i} len {len(v)} prefix {pre} suffix {suf}")
    return (f"at {time.strftime('%H:%M:%S')} mount gen {gen}; " + "; ".join(parts))


def reader(kind, seed):
    r = random.Random(seed)
    while not stop.is_set():
        try:
            if kind == "sequential":
                k = r.choice(list(big))
                want = big_bytes[k]
                g0 = gen
                with open(os.path.join(MNT, k), "rb") as f:
                    g = opened_in(g0)
                    off = 0
                    # In 1 MiB reads, each checked: a wrong byte names its read.
                    while off < len(want):
                        got = f.read(MIB)
                        if not got:
                            break
                        count(1, len(got),
                              wrong=diff_bytes(got, want[off:off + len(got)], k, off, g))
                        off += len(got)
                    if off < len(want):
                        count(wrong=diff_bytes(b"", want[off:], k, off, g))
            elif kind == "random":
                k = r.choice(list(big))
                want = big_bytes[k]
                g0 = gen
                fd = os.open(os.path.join(MNT, k), os.O_RDONLY)
                g = opened_in(g0)
                try:
                    for _ in range(16):
                        off = r.randrange(0, len(want) - 4096)
                        checked_pread(fd, k, off, g)
                finally:
                    os.close(fd)
            else:
                k = r.choice(list(small))
                with open(os.path.join(MNT, k), "rb") as f:
                    got = f.read()
                h = hashlib.sha256(got).hexdigest()
                with lock:
                    ok = h in versions[k]
                count(1, len(got), wrong=0 if ok else max(1, len(got)))
                if not ok:
                    print(f"soak: WRONG BYTES in {k} ({len(got)} bytes, sha256 {h[:16]}): "
                          f"{explain_small(k, got)}", file=sys.stderr, flush=True)
        except OSError:
            # EIO, ESTALE (replaced), ENOTCONN/ENOENT while the mount is down: allowed.
            count(errors=1)
            time.sleep(0.05)


def replace_one():
    k = rng.choice(list(small))
    b = pattern(rng.randint(1, 200_000), rng.randrange(1 << 30))
    with lock:
        versions[k][hashlib.sha256(b).hexdigest()] = b
    p = os.path.join(BUCKET, k)
    with open(p + ".tmp", "wb") as f:
        f.write(b)
    os.rename(p + ".tmp", p)
    T["replaced"] += 1
    if GAP is None:
        print(f"soak: {time.strftime('%H:%M:%S')} replaced {k} ({len(b)} bytes)",
              file=sys.stderr, flush=True)


def kill_and_remount(probe=True):
    """kill -9 the mount and mount again. With `probe`: an fd of PROBE opened before the
    kill, with only its first page read (so in the kernel's page cache), reads 4 KiB
    across that page's end after the remount: 3751 right bytes, then ENOTCONN for the
    rest; never a wrong byte. This is the read that made seed 16 count the missing bytes
    of a short read as wrong."""
    global killed_by_us
    fd = g = None
    if probe:
        try:
            g = gen
            fd = os.open(os.path.join(MNT, PROBE), os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no read-ahead past page 0
            os.pread(fd, 4096, 0)
        except OSError:
            pass
    killed_by_us = True
    mount_proc.kill()
    mount_proc.wait()
    sh("fusermount3", "-uz", MNT, stderr=subprocess.DEVNULL)
    T["remounts"] += 1
    mount()
    if fd is not None:
        try:
            got = checked_pread(fd, PROBE, 345, str(g))
            T["probes"].append(len(got))
        except OSError as e:
            T["probes"].append(e.strerror)
        finally:
            os.close(fd)


FAULTS = [
    ("resets", lambda: set_faults({"reset_after_bytes": rng.choice([256 << 10, 3 << 20])})),
    ("503s", lambda: set_faults({"rate_503": 0.2})),
    ("stalls", lambda: set_faults({"stall_rate": 0.1, "stall_ms": 1500})),
    ("latency", lambda: set_faults({"latency_ms": rng.choice([20, 100])})),
    ("replace", replace_one),
    ("kill -9 + remount", kill_and_remount),
    ("off", lambda: set_faults({})),
]

# SOAK_FAULTS=replace,503s (names above) narrows the faults, SOAK_GAP=0.2 the seconds
# between them (default 3-8): to chase one class of failure fast.
if os.environ.get("SOAK_FAULTS"):
    wanted = os.environ["SOAK_FAULTS"].split(",")
    FAULTS = [f for f in FAULTS if f[0] in wanted]
GAP = float(os.environ["SOAK_GAP"]) if os.environ.get("SOAK_GAP") else None

stop = threading.Event()
mount()
threads = [threading.Thread(target=rss_watch, daemon=True)]
for i, kind in enumerate(["sequential", "random", "random", "small", "small"]):
    threads.append(threading.Thread(target=reader, args=(kind, i), daemon=True))
for t in threads:
    t.start()

end = time.time() + MINUTES * 60
last_start_fds = None
while time.time() < end:
    time.sleep(GAP if GAP is not None else rng.uniform(3, 8))
    if mount_proc.poll() is not None and not killed_by_us:
        T["crashes"] += 1
        print(f"soak: the mount died on its own ({mount_proc.returncode}); see {LOG}",
              file=sys.stderr)
        sh("fusermount3", "-uz", MNT, stderr=subprocess.DEVNULL)
        mount()
    name, act = rng.choice(FAULTS)
    if name != "replace":
        print(f"soak: {time.strftime('%H:%M:%S')} fault {name}", file=sys.stderr, flush=True)
    act()
    if name != "off":
        T["faults"] += 1
        fault_kinds[name] = fault_kinds.get(name, 0) + 1

# Quiet end: faults off, the readers stop, then the last mount's fds are compared with a
# fresh mount's at the same point (after one pass of each reader).
set_faults({})
stop.set()
for t in threads[1:]:
    t.join(timeout=120)
time.sleep(3)
end_fds = fds(mount_proc.pid)
kill_and_remount(probe=False)
T["remounts"] -= 1
# The fresh mount reads every object once (so it holds as many cache entries and
# passthrough files as the soaked one can), then both are counted after a quiet moment.
for k in list(big) + list(small):
    try:
        with open(os.path.join(MNT, k), "rb") as f:
            while f.read(MIB):
                pass
    except OSError:
        pass
time.sleep(3)
start_fds = fds(mount_proc.pid)
alive = mount_proc.poll() is None
mount_proc.send_signal(signal.SIGTERM)
try:
    mount_proc.wait(timeout=20)
except subprocess.TimeoutExpired:
    mount_proc.kill()
sh("fusermount3", "-uz", MNT, stderr=subprocess.DEVNULL)
serve.kill()
sh("umount", "-l", CACHE)
if not alive:
    T["crashes"] += 1

print(f"soak: {MINUTES:g} min, seed {os.environ.get('SOAK_SEED', '16')}")
print(f"  operations      {T['ops']}")
print(f"  bytes checked   {T['bytes_checked']}")
print(f"  faults          {T['faults']} {json.dumps(fault_kinds, sort_keys=True)}")
print(f"  errors allowed  {T['errors']} (EIO/ESTALE/ENOTCONN during faults)")
print(f"  short preads    {T['read_on']} (read on for the rest, as POSIX readers must)")
print(f"  kill -9 probes  {T['probes']} (bytes an fd of the killed mount read at 345, or its error)")
print(f"  wrong bytes     {T['wrong_bytes']} ({T['short_reads']} short reads among them)")
print(f"  crashes         {T['crashes']}")
print(f"  peak RSS        {T['peak_rss_kib'] // 1024} MiB (mount, any incarnation)")
print(f"  open fds        {end_fds} at the end of the soak vs {start_fds} in a fresh mount "
      "after one read of every object")
# 32: slack for descriptors that come and go (pooled connections, a finalize in flight);
# a leak per operation would show as thousands.
bad = T["wrong_bytes"] or T["crashes"] or end_fds > start_fds + 32 or T["ops"] == 0
sys.exit(1 if bad else 0)
