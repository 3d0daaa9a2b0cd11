#!/usr/bin/env python3
"""Soak ossmount against `ossmount serve` with random faults (issue 16, part 4).

Usage: scripts/soak.py BIN MINUTES WORKDIR

Several readers (sequential whole-file, random 4 KiB preads, small whole files) check every
byte against the served source while a fault loop, every few seconds, picks one of: resets,
503s, stalls, latency (through serve's --testing-aids), an object replaced, the mount
killed with SIGKILL and mounted again, or faults off. The cache lives on a small tmpfs
that the objects overfill, so the cache disk is nearly full throughout.

Prints totals: operations, bytes checked, faults, errors (EIO/ESTALE/ENOTCONN are allowed:
faults cause them), wrong bytes (must be 0), crashes (the mount dying on its own, must be
0), peak RSS of the mount, and the soaked mount's open fds against a fresh mount's after
one read of every object. Exits 1 if wrong bytes or crashes are not 0, or the soaked
mount holds more than 32 fds over the fresh one.
"""
import hashlib, json, os, random, signal, subprocess, sys, threading, time, urllib.request

BIN, MINUTES, WORK = sys.argv[1], float(sys.argv[2]), sys.argv[3]
DATA = os.path.join(WORK, "data")
BUCKET = os.path.join(DATA, "bkt")
MNT = os.path.join(WORK, "mnt")
CACHE = os.path.join(WORK, "cache")
LOG = os.path.join(WORK, "mount.log")
MIB = 1 << 20

rng = random.Random(int(os.environ.get("SOAK_SEED", "16")))
lock = threading.Lock()
T = dict(ops=0, bytes_checked=0, faults=0, errors=0, wrong_bytes=0, crashes=0,
         remounts=0, replaced=0, peak_rss_kib=0)
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
versions = {}  # small key -> set of sha256 of every version ever served
for k, n in list(big.items()) + list(small.items()):
    p = os.path.join(BUCKET, k)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    b = pattern(n, hash(k) & 0xFFFF)
    with open(p, "wb") as f:
        f.write(b)
    if k in small:
        versions[k] = {hashlib.sha256(b).hexdigest()}
big_bytes = {k: open(os.path.join(BUCKET, k), "rb").read() for k in big}

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
    global mount_proc, killed_by_us
    killed_by_us = False
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


def diff_bytes(a, b, what=""):
    if a == b:
        return 0
    n = sum(1 for x, y in zip(a, b) if x != y)
    first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    print(f"soak: WRONG BYTES {what}: {n} differ, got {len(a)} of {len(b)} bytes, first at "
          f"{first}", file=sys.stderr, flush=True)
    return n + abs(len(a) - len(b))


def reader(kind, seed):
    r = random.Random(seed)
    while not stop.is_set():
        try:
            if kind == "sequential":
                k = r.choice(list(big))
                with open(os.path.join(MNT, k), "rb") as f:
                    got = f.read()
                want = big_bytes[k]
                count(1, len(got), wrong=diff_bytes(got, want, f"sequential {k}"))
            elif kind == "random":
                k = r.choice(list(big))
                want = big_bytes[k]
                fd = os.open(os.path.join(MNT, k), os.O_RDONLY)
                try:
                    for _ in range(16):
                        off = r.randrange(0, len(want) - 4096)
                        got = os.pread(fd, 4096, off)
                        count(1, len(got),
                              wrong=diff_bytes(got, want[off:off + 4096], f"pread {k} at {off}"))
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
                    print(f"soak: WRONG BYTES in {k} ({len(got)} bytes)", file=sys.stderr)
        except OSError:
            # EIO, ESTALE (replaced), ENOTCONN/ENOENT while the mount is down: allowed.
            count(errors=1)
            time.sleep(0.05)


def replace_one():
    k = rng.choice(list(small))
    b = pattern(rng.randint(1, 200_000), rng.randrange(1 << 30))
    with lock:
        versions[k].add(hashlib.sha256(b).hexdigest())
    p = os.path.join(BUCKET, k)
    with open(p + ".tmp", "wb") as f:
        f.write(b)
    os.rename(p + ".tmp", p)
    T["replaced"] += 1


def kill_and_remount():
    global killed_by_us
    killed_by_us = True
    mount_proc.kill()
    mount_proc.wait()
    sh("fusermount3", "-uz", MNT, stderr=subprocess.DEVNULL)
    T["remounts"] += 1
    mount()


FAULTS = [
    ("resets", lambda: set_faults({"reset_after_bytes": rng.choice([256 << 10, 3 << 20])})),
    ("503s", lambda: set_faults({"rate_503": 0.2})),
    ("stalls", lambda: set_faults({"stall_rate": 0.1, "stall_ms": 1500})),
    ("latency", lambda: set_faults({"latency_ms": rng.choice([20, 100])})),
    ("replace", replace_one),
    ("kill -9 + remount", kill_and_remount),
    ("off", lambda: set_faults({})),
]

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
    time.sleep(rng.uniform(3, 8))
    if mount_proc.poll() is not None and not killed_by_us:
        T["crashes"] += 1
        print(f"soak: the mount died on its own ({mount_proc.returncode}); see {LOG}",
              file=sys.stderr)
        sh("fusermount3", "-uz", MNT, stderr=subprocess.DEVNULL)
        mount()
    name, act = rng.choice(FAULTS)
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
kill_and_remount()
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
print(f"  wrong bytes     {T['wrong_bytes']}")
print(f"  crashes         {T['crashes']}")
print(f"  peak RSS        {T['peak_rss_kib'] // 1024} MiB (mount, any incarnation)")
print(f"  open fds        {end_fds} at the end of the soak vs {start_fds} in a fresh mount "
      "after one read of every object")
# 32: slack for descriptors that come and go (pooled connections, a finalize in flight);
# a leak per operation would show as thousands.
bad = T["wrong_bytes"] or T["crashes"] or end_fds > start_fds + 32 or T["ops"] == 0
sys.exit(1 if bad else 0)
