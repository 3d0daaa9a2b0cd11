//! Response bodies and the connection wrapper that makes byte counting and injected
//! resets exact.
//!
//! Object bytes are read by one blocking thread per response with `pread` in 256 KiB
//! chunks (recycled buffers) into a channel of depth 2, so the read of chunk n+1 overlaps
//! the socket write of chunk n. hyper queues each `Bytes` as is and writes with `writev`
//! (its "queue" strategy, chosen because [`ConnIo`] is vectored).
//!
//! `sendfile` is implemented too (`OSSMOUNT_SERVE_SENDFILE=1`): the body sends the bytes
//! itself once hyper's buffer is empty and hands hyper zeros that [`ConnIo`] skips, so
//! hyper's length accounting stays right. It cuts the server's CPU by 3x, yet on loopback
//! it loses: curl then copies out of cold page-cache pages and spends twice the CPU
//! (measured, same box: server+curl 2.2 s vs 2.0 s per 2 GiB, 0.9 vs 1.1-1.4 GB/s). With
//! the client on another machine it would be the better choice.
//!
//! Also measured and dropped: `preadv2(RWF_NOWAIT)` on the runtime thread (no thread hop
//! when the bytes are cached) used about the same server CPU but lost the overlap of read
//! and write: 0.5-0.8 GB/s against 1.0-1.25 GB/s for the reader thread in alternating
//! runs, and curl spent 50 % more CPU.
//!
//! Exactness: hyper buffers up to ~400 KB of the response before writing it, so "bytes
//! handed to hyper" is not "bytes sent". hyper calls the IO's `poll_flush` only once its
//! own buffer is empty, so [`ConnIo::poll_flush`] is the moment at which every body byte
//! handed over so far is in the kernel: `bytes_sent` is credited there, and a body that
//! is to reset the connection waits for that moment, then for the kernel send queue to
//! drain (`SIOCOUTQ`), then sets `SO_LINGER 0` and fails, so hyper drops the socket and
//! the kernel sends RST. The client has then received exactly N body bytes followed by a
//! connection reset, not a polite FIN.

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Sleep;

use super::link::BodyPacer;
use super::stats::Stats;
use super::Server;

/// Read size for object bodies. Measured on the shared 2-core box (2 GiB object from the
/// page cache to `curl -o /dev/null`, CPU seconds of server + curl for 3 GETs, load ~4):
/// 128 KiB 5.4 s, 256 KiB 3.8 s (1.6-1.9 GB/s), 512 KiB 4.9 s, 1 MiB 4.7 s, 4 MiB 5.8 s.
/// Small chunks keep the recycled buffer and the socket's copy in cache, so curl's
/// receive copy reads hot data; below 256 KiB the per-chunk overhead wins again.
pub const CHUNK: usize = 256 << 10;

/// How long a reset waits for the kernel to hand the last bytes to the peer (a peer
/// that stopped reading would otherwise hold the reset forever).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// State shared by a connection's IO wrapper and the bodies sent on it. It owns the
/// socket, so bodies can `sendfile` into it and wait for it to be writable.
pub struct ConnShared {
    stream: TcpStream,
    fd: RawFd,
    server: Arc<Server>,
    /// Body bytes handed to hyper and not yet known to be written.
    unflushed: AtomicU64,
    /// Times hyper's write buffer was seen empty (IO `poll_flush` calls).
    flushes: AtomicU64,
    /// Placeholder bytes at the head of hyper's write buffer that `sendfile` already
    /// sent: the IO reports them written without writing them.
    skip: AtomicU64,
    waker: Mutex<Option<Waker>>,
    aborted: AtomicBool,
    /// Bytes go through TLS ([`super::tls`]): no `sendfile`.
    tls: bool,
}

impl ConnShared {
    pub fn new(stream: TcpStream, server: Arc<Server>) -> Arc<Self> {
        Self::with_tls(stream, server, false)
    }

    /// `tls`: the connection is served through [`super::tls`].
    pub fn with_tls(stream: TcpStream, server: Arc<Server>, tls: bool) -> Arc<Self> {
        Arc::new(ConnShared {
            tls,
            fd: stream.as_raw_fd(),
            stream,
            server,
            unflushed: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            skip: AtomicU64::new(0),
            waker: Mutex::new(None),
            aborted: AtomicBool::new(false),
        })
    }

    pub(super) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// A reset is armed: no more writes, no graceful shutdown.
    pub(super) fn is_aborted(&self) -> bool {
        self.aborted.load(Relaxed)
    }

    /// `shutdown(SHUT_WR)`; a socket that is already gone counts as shut.
    pub(super) fn shutdown_write(&self) -> io::Result<()> {
        // SAFETY: shutdown(2) on our own socket.
        let rc = unsafe { libc::shutdown(self.fd, libc::SHUT_WR) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOTCONN) {
            Ok(())
        } else {
            Err(e)
        }
    }

    /// hyper's buffer is empty: every body byte handed over so far is in the kernel.
    pub(super) fn on_flush(&self) {
        self.flushes.fetch_add(1, Relaxed);
        let n = self.unflushed.swap(0, Relaxed);
        if n > 0 {
            self.server.stats.bytes_sent.fetch_add(n, Relaxed);
        }
        if let Some(w) = self.waker.lock().take() {
            w.wake();
        }
    }

    /// Ready once hyper's write buffer has drained after flush count `after` was seen.
    fn poll_flushed(&self, after: u64, cx: &mut Context<'_>) -> Poll<()> {
        if self.flushes.load(Relaxed) > after {
            return Poll::Ready(());
        }
        *self.waker.lock() = Some(cx.waker().clone());
        if self.flushes.load(Relaxed) > after {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Bytes the kernel still holds for this socket (unsent or unacknowledged).
    fn kernel_queued(&self) -> usize {
        let mut n: libc::c_int = 0;
        // SAFETY: fd is this connection's open socket (owned by self); TIOCOUTQ writes
        // one c_int.
        let rc = unsafe { libc::ioctl(self.fd, libc::TIOCOUTQ, &mut n) };
        if rc == 0 {
            n.max(0) as usize
        } else {
            0
        }
    }

    /// Make the close that follows send RST instead of FIN.
    fn arm_rst(&self) {
        self.aborted.store(true, Relaxed);
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: plain setsockopt on this connection's socket with a correctly sized value.
        unsafe {
            libc::setsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &linger as *const libc::linger as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }

    /// `sendfile` up to `want` bytes of `file` at `off` into the socket.
    fn poll_sendfile(
        &self,
        cx: &mut Context<'_>,
        file: RawFd,
        off: u64,
        want: usize,
    ) -> Poll<io::Result<usize>> {
        loop {
            std::task::ready!(self.stream.poll_write_ready(cx))?;
            let r = self.stream.try_io(tokio::io::Interest::WRITABLE, || {
                let mut o = off as libc::off_t;
                // SAFETY: both descriptors are open for the duration of the call; `o` is
                // a valid off_t the kernel updates.
                let n = unsafe { libc::sendfile(self.fd, file, &mut o, want) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match r {
                Ok(0) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank while being served",
                    )))
                }
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// The TCP stream as hyper sees it: plain reads and writes on the shared socket, except
/// that placeholder bytes already sent by `sendfile` are skipped, flushes are observed,
/// and a graceful shutdown is refused once a reset is armed.
pub struct ConnIo {
    shared: Arc<ConnShared>,
}

impl ConnIo {
    pub fn new(shared: Arc<ConnShared>) -> Self {
        ConnIo { shared }
    }
}

impl hyper::rt::Read for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let sh = &self.shared;
        loop {
            std::task::ready!(sh.stream.poll_read_ready(cx))?;
            // SAFETY: read(2) writes at most `dst.len()` bytes into the cursor's spare
            // space; `advance` covers only what it reported.
            let r = sh.stream.try_io(tokio::io::Interest::READABLE, || unsafe {
                let dst = buf.as_mut();
                let n = libc::read(sh.fd, dst.as_mut_ptr() as *mut libc::c_void, dst.len());
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match r {
                Ok(n) => {
                    // SAFETY: read(2) initialized n bytes.
                    unsafe { buf.advance(n) };
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl ConnIo {
    /// Skip placeholder bytes, if any are pending: `Some(n)` reported written.
    fn skip(&self, total: usize) -> Option<usize> {
        let skip = self.shared.skip.load(Relaxed);
        if skip == 0 {
            return None;
        }
        let n = (skip as usize).min(total);
        self.shared.skip.fetch_sub(n as u64, Relaxed);
        Some(n)
    }
}

impl hyper::rt::Write for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let sh = &self.shared;
        if sh.aborted.load(Relaxed) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if let Some(n) = self.skip(total) {
            return Poll::Ready(Ok(n));
        }
        loop {
            std::task::ready!(sh.stream.poll_write_ready(cx))?;
            match sh.stream.try_write_vectored(bufs) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // TCP has nothing to flush; hyper calls this only with its own buffer empty.
        self.shared.on_flush();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.shared.aborted.load(Relaxed) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        Poll::Ready(self.shared.shutdown_write())
    }
}

/// Every response body this server sends.
pub enum Body {
    Empty,
    Full(Option<Bytes>),
    Object(Box<ObjectBody>),
}

impl Body {
    pub fn full(b: impl Into<Bytes>) -> Self {
        Body::Full(Some(b.into()))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Object(o) => o.poll_next(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(b) => b.is_none(),
            Body::Object(o) => o.sent >= o.len && !matches!(o.state, State::Resetting { .. }),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Object(o) => SizeHint::with_exact(o.len - o.sent),
        }
    }
}

enum State {
    Streaming,
    Stalling(Pin<Box<Sleep>>),
    Resetting {
        flushes_at_start: u64,
        deadline: Instant,
        poll_timer: Option<Pin<Box<Sleep>>>,
    },
    Done,
}

/// Where a body's bytes come from.
enum Source {
    /// `sendfile` straight from the page cache into the socket (`OSSMOUNT_SERVE_SENDFILE=1`).
    Sendfile {
        file: std::fs::File,
        start: u64,
        /// Flush count hyper must pass before the next `sendfile` (its buffer, headers
        /// or the previous placeholder, must be out first); `None` before the first poll.
        after_flush: Option<u64>,
    },
    /// A reader thread `pread`ing into pooled buffers (the default).
    Channel {
        rx: mpsc::Receiver<io::Result<Bytes>>,
        /// Rest of a chunk that was split at a fault point.
        held: Option<Bytes>,
    },
}

/// A GetObject body: `len` bytes of a file, with optional faults.
pub struct ObjectBody {
    source: Source,
    sent: u64,
    len: u64,
    reset_at: Option<u64>,
    stall_at: Option<(u64, Duration)>,
    /// The emulated link's rates, if any ([`super::link`]).
    pacer: Option<BodyPacer>,
    state: State,
    conn: Arc<ConnShared>,
}

fn use_sendfile() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("OSSMOUNT_SERVE_SENDFILE").is_ok_and(|v| v == "1"))
}

/// Zeros standing in, in hyper's accounting, for bytes `sendfile` already sent.
static PLACEHOLDER: [u8; CHUNK] = [0; CHUNK];

impl ObjectBody {
    /// Stream `len` bytes of `file` from `start`. `reset_at`: abort after that many body
    /// bytes (only if fewer than `len`); `stall_at`: pause there for the duration;
    /// `pacer`: hand bytes over no faster than the link's rates.
    pub fn new(
        file: std::fs::File,
        start: u64,
        len: u64,
        reset_at: Option<u64>,
        stall_at: Option<(u64, Duration)>,
        pacer: Option<BodyPacer>,
        conn: Arc<ConnShared>,
    ) -> Self {
        let source = if use_sendfile() && !conn.tls {
            Source::Sendfile {
                file,
                start,
                after_flush: None,
            }
        } else {
            let (tx, rx) = mpsc::channel(2);
            if len > 0 {
                tokio::task::spawn_blocking(move || read_into(file, start, len, tx));
            }
            Source::Channel { rx, held: None }
        };
        ObjectBody {
            source,
            sent: 0,
            len,
            reset_at: reset_at.filter(|&n| n < len),
            stall_at: stall_at.filter(|&(at, _)| at < len),
            pacer,
            state: State::Streaming,
            conn,
        }
    }

    /// The next fault point after `sent`, or the end.
    fn next_cut(&self) -> u64 {
        [self.reset_at, self.stall_at.map(|(at, _)| at)]
            .into_iter()
            .flatten()
            .filter(|&at| at > self.sent)
            .min()
            .unwrap_or(self.len)
            .min(self.len)
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        loop {
            match &mut self.state {
                State::Done => return Poll::Ready(None),
                State::Stalling(sleep) => {
                    std::task::ready!(sleep.as_mut().poll(cx));
                    self.state = State::Streaming;
                }
                State::Resetting {
                    flushes_at_start,
                    deadline,
                    poll_timer,
                } => {
                    // 1. hyper's buffer must have drained since the last byte was handed over.
                    if self.conn.flushes.load(Relaxed) <= *flushes_at_start {
                        *self.conn.waker.lock() = Some(cx.waker().clone());
                        if self.conn.flushes.load(Relaxed) <= *flushes_at_start {
                            return Poll::Pending;
                        }
                    }
                    // 2. the kernel must have delivered them (loopback: immediate unless the
                    //    peer's window is full).
                    if self.conn.kernel_queued() > 0 && Instant::now() < *deadline {
                        let timer = poll_timer.get_or_insert_with(|| {
                            Box::pin(tokio::time::sleep(Duration::from_millis(1)))
                        });
                        if timer.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                        *poll_timer = None;
                        continue;
                    }
                    // 3. RST.
                    self.conn.arm_rst();
                    Stats::inc(&self.conn.server.stats.resets);
                    tracing::debug!("fault: reset after {} body bytes", self.sent);
                    self.state = State::Done;
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "injected reset",
                    ))));
                }
                State::Streaming => {
                    if self.sent >= self.len {
                        self.state = State::Done;
                        return Poll::Ready(None);
                    }
                    if self.reset_at == Some(self.sent) {
                        self.reset_at = None;
                        self.state = State::Resetting {
                            flushes_at_start: self.conn.flushes.load(Relaxed),
                            deadline: Instant::now() + DRAIN_TIMEOUT,
                            poll_timer: None,
                        };
                        continue;
                    }
                    if let Some((at, dur)) = self.stall_at {
                        if at == self.sent {
                            self.stall_at = None;
                            Stats::inc(&self.conn.server.stats.stalls);
                            tracing::debug!("fault: stall {dur:?} after {} body bytes", self.sent);
                            self.state = State::Stalling(Box::pin(tokio::time::sleep(dur)));
                            continue;
                        }
                    }
                    let mut cut = self.next_cut();
                    if let Some(p) = &mut self.pacer {
                        let n = std::task::ready!(p.poll_grant(cx, cut - self.sent));
                        cut = self.sent + n;
                    }
                    let sent = self.sent;
                    let conn = self.conn.clone();
                    let chunk = match &mut self.source {
                        Source::Sendfile {
                            file,
                            start,
                            after_flush,
                        } => {
                            let after = *after_flush.get_or_insert(conn.flushes.load(Relaxed));
                            std::task::ready!(conn.poll_flushed(after, cx));
                            let want = ((cut - sent) as usize).min(CHUNK);
                            let n = match std::task::ready!(conn.poll_sendfile(
                                cx,
                                file.as_raw_fd(),
                                *start + sent,
                                want
                            )) {
                                Ok(n) => n,
                                Err(e) => {
                                    self.state = State::Done;
                                    tracing::warn!("object body sendfile failed: {e}");
                                    return Poll::Ready(Some(Err(e)));
                                }
                            };
                            conn.skip.fetch_add(n as u64, Relaxed);
                            *after_flush = Some(conn.flushes.load(Relaxed));
                            Bytes::from_static(&PLACEHOLDER[..n])
                        }
                        Source::Channel { rx, held } => {
                            let mut chunk = match held.take() {
                                Some(c) => c,
                                None => match std::task::ready!(rx.poll_recv(cx)) {
                                    Some(Ok(c)) => c,
                                    Some(Err(e)) => {
                                        self.state = State::Done;
                                        tracing::warn!("object body read failed: {e}");
                                        return Poll::Ready(Some(Err(e)));
                                    }
                                    None => {
                                        self.state = State::Done;
                                        return Poll::Ready(Some(Err(io::Error::new(
                                            io::ErrorKind::UnexpectedEof,
                                            "object reader ended early",
                                        ))));
                                    }
                                },
                            };
                            // Split at the next fault point inside this chunk.
                            if sent + (chunk.len() as u64) > cut {
                                *held = Some(chunk.split_off((cut - sent) as usize));
                            }
                            chunk
                        }
                    };
                    self.sent += chunk.len() as u64;
                    if let Some(p) = &mut self.pacer {
                        p.sent(chunk.len() as u64);
                    }
                    self.conn.unflushed.fetch_add(chunk.len() as u64, Relaxed);
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
            }
        }
    }
}

/// Read buffers in flight are recycled: a fresh 1 MiB allocation per chunk costs page
/// faults and zeroing (about 9 % of the server's CPU in a profile), and a recently used
/// buffer is still in cache when the next pread fills it.
struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
}

/// Buffers kept for reuse: enough for a few concurrent streams.
const POOL_KEEP: usize = 64;

static POOL: Pool = Pool {
    free: Mutex::new(Vec::new()),
};

/// A filled pool buffer, handed to hyper as `Bytes` and returned to the pool on drop.
struct Chunk {
    buf: Vec<u8>,
    len: usize,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let mut free = POOL.free.lock();
        if free.len() < POOL_KEEP {
            free.push(buf);
        }
    }
}

fn chunk_size() -> usize {
    static SIZE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *SIZE.get_or_init(|| {
        std::env::var("OSSMOUNT_SERVE_CHUNK")
            .ok()
            .and_then(|v| crate::units::parse_size(&v).ok())
            .map(|n| n.clamp(4096, 64 << 20) as usize)
            .unwrap_or(CHUNK)
    })
}

/// The reader thread: `pread` `len` bytes from `start` in chunks into `tx`, until done
/// or the body is dropped.
fn read_into(file: std::fs::File, start: u64, len: u64, tx: mpsc::Sender<io::Result<Bytes>>) {
    use std::os::unix::fs::FileExt;
    let size = chunk_size();
    let mut off = start;
    let end = start + len;
    while off < end {
        let want = (end - off).min(size as u64) as usize;
        let mut buf = POOL.free.lock().pop().unwrap_or_default();
        if buf.len() != size {
            buf = vec![0u8; size];
        }
        let mut filled = 0usize;
        while filled < want {
            match file.read_at(&mut buf[filled..want], off + filled as u64) {
                Ok(0) => {
                    let e = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank while being served",
                    );
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
        off += want as u64;
        let chunk = Bytes::from_owner(Chunk { buf, len: want });
        if tx.blocking_send(Ok(chunk)).is_err() {
            return; // body dropped: client gone
        }
    }
}
