//! Logging setup: `tracing` to stderr, a file, or syslog; level from `--debug` or `RUST_LOG`.
//!
//! A mount in the background has no terminal. Without `--log-file` its warnings (a store
//! that went away, an EIO and why) used to go nowhere; they go to syslog instead, as
//! mount-s3's and ossfs's do, so `journalctl -t ossmount` or /var/log/syslog shows them.
//! Syslog is spoken directly (one RFC 3164 datagram per event to /dev/log) rather than
//! through libc's `syslog(3)`: no global state, and a test can point it at its own socket.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Where log lines go.
pub enum Sink<'a> {
    Stderr,
    File(&'a Path),
    /// The system logger's socket, when there is one; nowhere otherwise.
    Syslog,
}

/// The system logger's datagram socket (journald and rsyslog both listen there).
pub const SYSLOG_SOCKET: &str = "/dev/log";

/// Install the global subscriber.
pub fn init(debug: bool, sink: Sink) -> std::io::Result<()> {
    let default = if debug {
        "ossmount=debug,info"
    } else {
        "ossmount=info,warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match sink {
        Sink::File(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .finish()
                .with(QuietGoneReplies)
                .init();
        }
        Sink::Stderr => {
            use std::io::IsTerminal;
            builder
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr)
                .finish()
                .with(QuietGoneReplies)
                .init()
        }
        Sink::Syslog => builder
            .with_ansi(false)
            .without_time()
            .with_writer(Syslog::new(SYSLOG_SOCKET)?)
            .finish()
            .with(QuietGoneReplies)
            .init(),
    }
    Ok(())
}

/// Drops fuser's ERROR for a reply the kernel no longer waits for.
///
/// fuser logs every failed write to /dev/fuse as "Failed to send FUSE reply: ...". With
/// ENOENT ("(os error 2)") the kernel is saying the request is gone: the connection was
/// aborted (an unmount from outside, often with a request in flight) or the request was
/// abandoned. Nothing is lost and a user can do nothing about it, yet it read as an error
/// in their log after a plain `fusermount3 -u` (seen in
/// `mount_type_is_fuse_ossmount_and_external_unmount_is_quiet_and_safe`). Any other reply
/// error (a reply the kernel rejects is our bug) is still logged.
struct QuietGoneReplies;

impl<S: Subscriber> Layer<S> for QuietGoneReplies {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        if *event.metadata().level() != Level::ERROR {
            return true;
        }
        let mut gone = GoneReply(false);
        event.record(&mut gone);
        !gone.0
    }
}

struct GoneReply(bool);

impl Visit for GoneReply {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let text = format!("{value:?}");
            self.0 =
                text.starts_with("Failed to send FUSE reply") && text.ends_with("(os error 2)");
        }
    }
}

/// Sends each event as one datagram `<PRI>ossmount[PID]: LEVEL message` (facility
/// daemon) to a syslog socket. A missing or stuck logger loses lines; it never blocks
/// or fails the mount.
pub struct Syslog {
    sock: UnixDatagram,
    path: PathBuf,
    pid: u32,
}

impl Syslog {
    pub fn new(path: impl Into<PathBuf>) -> std::io::Result<Self> {
        let sock = UnixDatagram::unbound()?;
        // A logger that stopped reading (full queue) must cost a line, not stall the
        // thread that logs: a FUSE thread, or the runtime.
        sock.set_nonblocking(true)?;
        Ok(Self {
            sock,
            path: path.into(),
            pid: std::process::id(),
        })
    }
}

/// One event's bytes, sent when the formatter is done with it (it writes an event whole,
/// then drops the writer).
pub struct SyslogLine<'a> {
    to: &'a Syslog,
    severity: u8,
    buf: Vec<u8>,
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = SyslogLine<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        SyslogLine {
            to: self,
            severity: 6,
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        let mut w = self.make_writer();
        w.severity = match *meta.level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            Level::DEBUG | Level::TRACE => 7,
        };
        w
    }
}

impl Write for SyslogLine<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine<'_> {
    fn drop(&mut self) {
        const DAEMON: u8 = 3;
        let text = String::from_utf8_lossy(&self.buf);
        let text = text.trim_end();
        if text.is_empty() {
            return;
        }
        let msg = format!(
            "<{}>ossmount[{}]: {text}",
            DAEMON * 8 + self.severity,
            self.to.pid
        );
        let _ = self.to.sock.send_to(msg.as_bytes(), &self.to.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_reach_a_syslog_socket_one_datagram_each_with_their_severity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .with_writer(Syslog::new(&path).unwrap())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(key = "a/b", "store unreachable");
            tracing::error!("unmount failed");
        });
        let mut buf = [0u8; 1024];
        let mut next = || {
            let n = server.recv(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        let pid = std::process::id();
        assert_eq!(
            next(),
            format!("<28>ossmount[{pid}]:  WARN store unreachable key=\"a/b\"")
        );
        assert_eq!(next(), format!("<27>ossmount[{pid}]: ERROR unmount failed"));
    }

    #[test]
    fn replies_to_requests_the_kernel_dropped_are_not_logged_other_reply_errors_are() {
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .with_writer(move || Shared(sink.clone()))
            .finish()
            .with(QuietGoneReplies);
        tracing::subscriber::with_default(subscriber, || {
            // What fuser's `error!` becomes through the log bridge: a message field.
            tracing::error!("Failed to send FUSE reply: No such file or directory (os error 2)");
            tracing::error!("Failed to send FUSE reply: Invalid argument (os error 22)");
            tracing::warn!("Failed to send FUSE reply: No such file or directory (os error 2)");
        });
        let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "ERROR Failed to send FUSE reply: Invalid argument (os error 22)\n \
             WARN Failed to send FUSE reply: No such file or directory (os error 2)\n"
        );
    }

    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_logger_that_stopped_reading_costs_lines_not_a_stalled_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let _never_read = UnixDatagram::bind(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let subscriber = tracing_subscriber::fmt()
                .with_writer(Syslog::new(&path).unwrap())
                .finish();
            // Far beyond a datagram socket's queue (net.unix.max_dgram_qlen, 512).
            tracing::subscriber::with_default(subscriber, || {
                for i in 0..5000 {
                    tracing::warn!(i, "retrying");
                }
            });
            let _ = tx.send(());
        });
        rx.recv_timeout(std::time::Duration::from_secs(20))
            .expect("logging blocked on a full syslog socket");
    }
}
