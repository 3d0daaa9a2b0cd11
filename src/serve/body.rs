//! Response bodies and the connection wrapper that makes byte counting and injected
//! resets exact.
//!
//! Object bytes are read by one blocking thread per response with `pread` in 1 MiB
//! chunks into a channel of depth 2, so the disk read of chunk n+1 overlaps the socket
//! write of chunk n. hyper queues each `Bytes` as is and writes with `writev` (its
//! "queue" strategy, chosen because [`ConnIo`] is vectored), so a body byte is copied
//! exactly twice on its way out: page cache -> buffer, buffer -> socket.
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
use std::os::fd::RawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Sleep;

use super::stats::Stats;
use super::Server;

/// Read size for object bodies. Measured on the 2-core box (2 GiB, curl -o /dev/null):
/// 256 KiB and 1 MiB are within noise of each other; 64 KiB loses ~15 %.
pub const CHUNK: usize = 1 << 20;

/// How long a reset waits for the kernel to hand the last bytes to the peer (a peer
/// that stopped reading would otherwise hold the reset forever).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// State shared by a connection's IO wrapper and the bodies sent on it.
pub struct ConnShared {
    fd: RawFd,
    server: Arc<Server>,
    /// Body bytes handed to hyper and not yet known to be written.
    unflushed: AtomicU64,
    /// Times hyper's write buffer was seen empty (IO `poll_flush` calls).
    flushes: AtomicU64,
    waker: Mutex<Option<Waker>>,
    aborted: AtomicBool,
}

impl ConnShared {
    pub fn new(fd: RawFd, server: Arc<Server>) -> Arc<Self> {
        Arc::new(ConnShared {
            fd,
            server,
            unflushed: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            waker: Mutex::new(None),
            aborted: AtomicBool::new(false),
        })
    }

    fn on_flush(&self) {
        self.flushes.fetch_add(1, Relaxed);
        let n = self.unflushed.swap(0, Relaxed);
        if n > 0 {
            self.server.stats.bytes_sent.fetch_add(n, Relaxed);
        }
        if let Some(w) = self.waker.lock().take() {
            w.wake();
        }
    }

    /// Bytes the kernel still holds for this socket (unsent or unacknowledged).
    fn kernel_queued(&self) -> usize {
        let mut n: libc::c_int = 0;
        // SAFETY: fd is this connection's open socket (the connection outlives its
        // bodies); TIOCOUTQ writes one c_int.
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
}

/// The TCP stream as hyper sees it: delegates everything, observes flushes, refuses a
/// graceful shutdown once a reset is armed.
pub struct ConnIo {
    inner: TokioIo<TcpStream>,
    shared: Arc<ConnShared>,
}

impl ConnIo {
    pub fn new(stream: TcpStream, shared: Arc<ConnShared>) -> Self {
        ConnIo {
            inner: TokioIo::new(stream),
            shared,
        }
    }
}

impl hyper::rt::Read for ConnIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for ConnIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.shared.aborted.load(Relaxed) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.shared.aborted.load(Relaxed) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = r {
            self.shared.on_flush();
        }
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.shared.aborted.load(Relaxed) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
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

/// A GetObject body: `len` bytes of a file from a reader thread, with optional faults.
pub struct ObjectBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    /// Rest of a chunk that was split at a fault point.
    held: Option<Bytes>,
    sent: u64,
    len: u64,
    reset_at: Option<u64>,
    stall_at: Option<(u64, Duration)>,
    state: State,
    conn: Arc<ConnShared>,
}

impl ObjectBody {
    /// Stream `len` bytes of `file` from `start`. `reset_at`: abort after that many body
    /// bytes (only if fewer than `len`); `stall_at`: pause there for the duration.
    pub fn new(
        file: std::fs::File,
        start: u64,
        len: u64,
        reset_at: Option<u64>,
        stall_at: Option<(u64, Duration)>,
        conn: Arc<ConnShared>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(2);
        if len > 0 {
            tokio::task::spawn_blocking(move || read_into(file, start, len, tx));
        }
        ObjectBody {
            rx,
            held: None,
            sent: 0,
            len,
            reset_at: reset_at.filter(|&n| n < len),
            stall_at: stall_at.filter(|&(at, _)| at < len),
            state: State::Streaming,
            conn,
        }
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
                        self.held = None;
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
                    let mut chunk = match self.held.take() {
                        Some(c) => c,
                        None => match std::task::ready!(self.rx.poll_recv(cx)) {
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
                    let end = self.sent + chunk.len() as u64;
                    let cut = [self.reset_at, self.stall_at.map(|(at, _)| at)]
                        .into_iter()
                        .flatten()
                        .filter(|&at| at > self.sent && at < end)
                        .min();
                    if let Some(at) = cut {
                        self.held = Some(chunk.split_off((at - self.sent) as usize));
                    }
                    self.sent += chunk.len() as u64;
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
const POOL_KEEP: usize = 32;

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
            .and_then(|v| crate::cli::parse_size(&v).ok())
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
