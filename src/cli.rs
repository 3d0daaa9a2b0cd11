//! Command-line interface: clap definitions for every subcommand, the exit codes, and the
//! parser of permission bits (sizes and durations are parsed by [`crate::units`]).
//!
//! Option names follow what users know from mount-s3, ossfs and ossutil. Credentials are
//! never options: they come from the environment only (`OSS_ACCESS_KEY_ID`,
//! `OSS_ACCESS_KEY_SECRET`, `OSS_SESSION_TOKEN`, or the `AWS_*` names for `s3://`), so they
//! never show up in `ps` or shell history.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::cache::checkpoint::{MAX_PART_SIZE, MIN_PART_SIZE};
use crate::cache::CacheConfig;
use crate::config::StoreArgs;
use crate::fs::tree::FsConfig;
use crate::serve::stats::DEFAULT_STALL_MS;
use crate::serve::sts::AidConfig;
use crate::units::{format_duration, format_size, parse_duration, parse_size};

/// `ossmount --version`: the version and the commit it was built from (`build.rs`), e.g.
/// `0.1.0 (commit 0123456789ab)`.
pub const VERSION: &str = env!("OSSMOUNT_LONG_VERSION");

#[derive(Debug, Parser)]
#[command(name = "ossmount", version = VERSION, about, long_about = None)]
pub struct Cli {
    /// Log more (debug level). RUST_LOG overrides.
    #[arg(long, global = true)]
    pub debug: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mount a bucket (or a prefix of one) read-only at MOUNTPOINT.
    Mount(MountArgs),
    /// Download one object to a local file, resumably (like the SDKs' resumable download).
    Download(DownloadArgs),
    /// Serve the folders under DIR as buckets over an OSS- and S3-compatible HTTP API
    /// (for demos, tests, benchmarks and offline pipelines).
    Serve(ServeArgs),
    /// Inspect, verify or clean an ossmount cache directory.
    Cache(CacheArgs),
    /// List objects and prefixes under a URL (one level, like `ls`).
    Ls(LsArgs),
    /// Write an object, or a byte range of it, to stdout.
    Cat(CatArgs),
    /// List the running mounts of this user: source, mountpoint, pid, uptime, cache, hit
    /// ratio, requests and errors in the last minute, credentials.
    Status(StatusArgs),
    /// Fetch files or directories (recursively) of a running mount into its cache, and
    /// finalize them, without reading them through the page cache.
    Warm(WarmArgs),
    /// Credentials: which source the chain picks, and whether it works.
    Auth(AuthArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only the mount at this directory.
    pub mountpoint: Option<PathBuf>,
    /// One JSON array of mounts, for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WarmArgs {
    /// Files or directories inside a running ossmount mount.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Print what would be fetched, fetch nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// No progress bar even on a terminal (plain progress lines).
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct AuthArgs {
    #[command(subcommand)]
    pub command: AuthCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Print the credential source used for URL, the key id's last four characters and the
    /// expiry, then make one signed request (a one-key listing) to prove they work.
    Check {
        /// `oss://bucket[/prefix]` or `s3://bucket[/prefix]`.
        url: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Args)]
pub struct MountArgs {
    /// `oss://bucket[/prefix/]` or `s3://bucket[/prefix/]`.
    pub url: String,
    /// An existing, empty directory.
    pub mountpoint: PathBuf,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub cache: CacheOptions,
    /// How long file attributes and directory listings are trusted before asking the store
    /// again.
    #[arg(long, value_parser = parse_duration,
          default_value = format_duration(FsConfig::default().metadata_ttl))]
    pub metadata_ttl: Duration,
    /// Longest any file operation waits on the store; past it the operation fails with
    /// EIO (and a log line) instead of hanging the program that asked.
    #[arg(long, value_parser = parse_duration,
          default_value = format_duration(FsConfig::default().request_deadline))]
    pub request_deadline: Duration,
    /// Subdirectory listings fetched ahead when a directory is opened (its first
    /// subdirectories and the ones after it in its parent), so `ls -R`, `find` and rsync
    /// walks do not wait for one LIST per directory; 0 turns it off.
    #[arg(long, default_value_t = FsConfig::default().dir_read_ahead)]
    pub dir_read_ahead: usize,
    /// Owner of every file and directory. Default: the user running ossmount.
    #[arg(long)]
    pub uid: Option<u32>,
    /// Group of every file and directory. Default: the group running ossmount.
    #[arg(long)]
    pub gid: Option<u32>,
    /// Permission bits of files (octal).
    #[arg(long, value_parser = parse_mode, default_value = format_mode(FsConfig::default().file_mode))]
    pub file_mode: u32,
    /// Permission bits of directories (octal).
    #[arg(long, value_parser = parse_mode, default_value = format_mode(FsConfig::default().dir_mode))]
    pub dir_mode: u32,
    /// Let other users access the mount (needs `user_allow_other` in /etc/fuse.conf unless
    /// root).
    #[arg(long)]
    pub allow_other: bool,
    /// Let root access the mount.
    #[arg(long, conflicts_with = "allow_other")]
    pub allow_root: bool,
    /// Stay in the foreground instead of detaching once the mount is ready.
    #[arg(long, short = 'f')]
    pub foreground: bool,
    /// Write logs to this file (default: stderr in the foreground, syslog in the
    /// background: `journalctl -t ossmount`).
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    /// Comma-separated mount options in fstab style (`-o ro,allow_other,cache_dir=/x`);
    /// used by `mount -t fuse.ossmount`. May be given more than once.
    #[arg(short = 'o')]
    pub options: Vec<String>,
    /// Never hand finalized objects to the kernel with FUSE passthrough (read them through
    /// ossmount instead).
    #[arg(long)]
    pub no_passthrough: bool,
    #[arg(long, help = direct_io_help())]
    pub direct_io: bool,
    /// Read straight from the store, one ranged GET per FUSE read, without the part cache
    /// (diagnostics; no read-ahead, nothing kept across mounts).
    #[arg(long)]
    pub no_cache: bool,
    /// Show symlink objects whose target exists as the files they point to, instead of as
    /// symbolic links (links to targets outside the mounted prefix are always shown so).
    #[arg(long)]
    pub follow_symlinks: bool,
    /// Threads reading FUSE requests from the kernel (requests that need the network are
    /// handed to a runtime, so a few suffice).
    #[arg(long, default_value_t = 4)]
    pub fuse_threads: usize,
    /// Serve Prometheus metrics at http://ADDR/metrics (`127.0.0.1:9100`; a bare port means
    /// 127.0.0.1). Off by default. Unauthenticated: a non-loopback address gets a warning.
    #[arg(long, value_parser = parse_metrics_addr, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

/// `--metrics-addr`: `IP:PORT`, or `PORT` / `:PORT` for loopback (127.0.0.1).
pub fn parse_metrics_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.trim_start_matches(':')
        .parse::<u16>()
        .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
        .map_err(|_| format!("not an address (IP:PORT) or a port: {s:?}"))
}

/// The part cache's settings, shared by `mount` and `download`.
#[derive(Debug, Clone, Args)]
pub struct CacheOptions {
    /// Cache directory (one owner at a time). Default: `$XDG_CACHE_HOME/ossmount`,
    /// `~/.cache/ossmount`, or `/var/cache/ossmount` without a home directory.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Byte limit of the cache (least recently used whole objects are evicted first).
    #[arg(long, value_parser = parse_size,
          default_value = format_size(CacheConfig::default().max_bytes))]
    pub cache_size: u64,
    #[arg(long, value_parser = parse_size, help = cache_min_free_help())]
    pub cache_min_free: Option<u64>,
    #[arg(long, value_parser = parse_size,
          default_value = format_size(CacheConfig::default().part_size),
          help = part_size_help("Size of one part: the unit of caching and verifying (requests are sized apart)"))]
    pub part_size: u64,
    /// Most requests in flight for the whole mount (read-ahead takes a share bounded by bytes).
    #[arg(long, short = 'j', default_value_t = CacheConfig::default().jobs)]
    pub jobs: usize,
    /// Record fetched parts in the checkpoint after this many new bytes (or 1 s): at most
    /// this much is fetched again after a crash; smaller costs more checkpoint writes.
    #[arg(long, value_parser = parse_size,
          default_value = format_size(CacheConfig::default().batch_bytes))]
    pub checkpoint_batch: u64,
    /// Most bytes of object data held in memory, for all readers together: parts being
    /// received plus parts kept for their readers. Read-ahead waits when it is full; a
    /// read always goes on. At least one part (--part-size).
    #[arg(long, value_parser = parse_size,
          default_value = format_size(CacheConfig::default().memory_limit))]
    pub memory_limit: u64,
}

#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// `oss://bucket/key` or `s3://bucket/key`.
    pub url: String,
    /// Local file (default: the key's last component in the current directory). Written to
    /// a temporary name and renamed only once complete and verified.
    pub local: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
    #[arg(long, value_parser = parse_size,
          default_value = format_size(crate::cache::DOWNLOAD_PART_SIZE),
          help = part_size_help("Size of one part"))]
    pub part_size: u64,
    /// Parts fetched in parallel.
    #[arg(long, short = 'j', default_value_t = crate::cache::DOWNLOAD_JOBS)]
    pub jobs: usize,
    /// Where checkpoints live (default: beside LOCAL).
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Skip the whole-object CRC-64 check against `x-oss-hash-crc64ecma`.
    #[arg(long)]
    pub no_verify: bool,
    /// Download this version of the object (a version id of a versioning-enabled bucket,
    /// as ListObjectVersions reports it) instead of the latest (docs/download.md).
    /// Every request names it (`versionId`); the checks use its ETag and CRC-64, and the
    /// checkpoint records it: a resume continues only the same version, anything else
    /// starts over. A version that does not exist fails like a missing key.
    #[arg(long, value_name = "ID")]
    pub version_id: Option<String>,
    /// No progress bar even on a terminal.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Debug, Args)]
#[command(after_long_help = serve_help())]
pub struct ServeArgs {
    /// Folder whose top-level folders are the buckets.
    pub dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Accept unsigned requests. Otherwise requests must be signed (OSS V4 or S3 SigV4)
    /// with a key pair from OSS_ACCESS_KEY_ID/OSS_ACCESS_KEY_SECRET or
    /// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the environment.
    #[arg(long)]
    pub anonymous: bool,
    /// Region the server claims (checked against the signature scope).
    #[arg(long, default_value = "cn-hangzhou")]
    pub region: String,
    /// Turn on the testing aids: the unauthenticated /_ossmount/stats and /_ossmount/faults
    /// endpoints, the --fault-* flags, and the emulated object kinds and versions (see
    /// below). Off by default: anyone who can reach the port could change the faults
    /// without a signature, and a plain tree should read as plain objects.
    #[arg(long)]
    pub testing_aids: bool,
    /// Testing aid (needs --testing-aids): reset the connection after this many body bytes
    /// of each response.
    #[arg(long, value_parser = parse_size)]
    pub fault_reset_after: Option<u64>,
    /// Testing aid (needs --testing-aids): answer this fraction (0..1) of requests with 503 SlowDown.
    #[arg(long)]
    pub fault_503_rate: Option<f64>,
    /// Testing aid (needs --testing-aids): add this latency before each response.
    #[arg(long, value_parser = parse_duration)]
    pub fault_latency: Option<Duration>,
    /// Testing aid (needs --testing-aids): stall this fraction (0..1) of response bodies midway.
    #[arg(long)]
    pub fault_stall_rate: Option<f64>,
    #[command(flatten)]
    pub link: crate::serve::link::LinkArgs,
    #[command(flatten)]
    pub credential_aids: CredentialAidArgs,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// `serve`'s credential testing aids: a fake ECS metadata service and a fake STS issuing
/// temporary credentials that the object listener then accepts until they expire.
#[derive(Debug, Args)]
pub struct CredentialAidArgs {
    /// Testing aid (needs --testing-aids): serve a fake ECS metadata service (RAM role
    /// credentials), EC2 IMDSv2 (instance profile) and container credentials endpoint on
    /// this address (use 127.0.0.1:0; the address is printed on stdout after the first
    /// line).
    #[arg(long, value_name = "ADDR", requires = "testing_aids")]
    pub metadata_listen: Option<SocketAddr>,
    /// Testing aid (needs --testing-aids): serve a fake STS on this address: Alibaba
    /// Cloud's (AssumeRole, AssumeRoleWithOIDC) and AWS's (AssumeRole with SigV4,
    /// AssumeRoleWithWebIdentity).
    #[arg(long, value_name = "ADDR", requires = "testing_aids")]
    pub sts_listen: Option<SocketAddr>,
    /// Testing aid: lifetime of the temporary credentials the aids issue.
    #[arg(long, value_parser = parse_duration,
          default_value = format_duration(AidConfig::default().lifetime))]
    pub credential_lifetime: Duration,
    /// Testing aid: the RAM role name the fake metadata service reports.
    #[arg(long, value_name = "NAME", default_value_t = AidConfig::default().role)]
    pub metadata_role: String,
    /// Testing aid: the fake metadata service refuses requests without a token.
    #[arg(long)]
    pub metadata_require_token: bool,
    /// Testing aid: the fake AWS STS accepts AssumeRoleWithWebIdentity only with the token
    /// this file holds (read at each call; default: any non-empty token).
    #[arg(long, value_name = "FILE", requires = "testing_aids")]
    pub web_identity_token_file: Option<PathBuf>,
    /// Testing aid: the fake container credentials endpoint (/v2/credentials/ID,
    /// /v1/credentials) accepts only this file's contents as the Authorization header
    /// (read at each request; default: no check).
    #[arg(long, value_name = "FILE", requires = "testing_aids")]
    pub container_authorization_file: Option<PathBuf>,
}

/// The `serve` contract that tests and scripts rely on.
fn serve_help() -> String {
    format!(
        "\
Output: the first line on stdout is `ossmount serve: listening on http://ADDR` (use
--listen 127.0.0.1:0 for a free port; `https://ADDR` with --tls-cert); logs go to stderr.

Addressing: path style (/bucket/key) or virtual-hosted (Host: bucket.anything). Keys are
files below the bucket folders; symlinks out of DIR and `..` are refused.

Object kinds and versions (only with --testing-aids; docs/serve.md): a symlink that
stays in its bucket is a symlink object (GetSymlink `?symlink`; GET/HEAD answer for the
target); extended attributes of a file set user.oss.object-type=Appendable,
user.oss.storage-class=Archive|ColdArchive|DeepColdArchive|IA,
user.oss.restore=ongoing|restored|restored:<unix seconds>; any other user.NAME is user
metadata x-oss-meta-NAME. A bucket with a top-level .ossmount-versions/ folder is
versioning-enabled: BUCKET/.ossmount-versions/KEY/ID is version ID of KEY, the file
BUCKET/KEY the latest (its id, derived from the file, in x-oss-version-id); GET/HEAD
?versionId=ID answer that version, an unknown one is 404 NoSuchVersion. Without
--testing-aids a symlink reads as the bytes it points to, attributes are ignored, and
every object has the one version `null`.

Testing aids (only with --testing-aids; no signature needed; bind to loopback):
  GET  /_ossmount/stats         JSON counters: requests, get_requests, head_requests,
                                list_requests, bytes_sent, status_503, status_412, resets,
                                stalls, auth_failures, hash_computations,
                                listings_built
  POST /_ossmount/stats/reset   zero them
  GET  /_ossmount/faults        current fault settings
  PUT  /_ossmount/faults        replace them, JSON: {{\"reset_after_bytes\": N,
                                \"rate_503\": 0.1, \"latency_ms\": 50, \"stall_rate\": 0.1,
                                \"stall_ms\": {DEFAULT_STALL_MS}, \"latency_jitter_ms\": 5,
                                \"conn_bytes_per_s\": N, \"total_bytes_per_s\": N,
                                \"requests_per_s\": N, \"link\": \"oss-like\"}} (absent = off;
                                stall_ms defaults to {DEFAULT_STALL_MS}; a link profile fills
                                in the link fields not given)

Credential aids (with --testing-aids: --metadata-listen ADDR, --sts-listen ADDR;
docs/credentials.md): each address serves a fake ECS metadata service (PUT
/latest/api/token, GET /latest/meta-data/ram/security-credentials/[ROLE]) and a fake STS
(POST /?Action=AssumeRole or AssumeRoleWithOIDC, JSON). Their credentials live
--credential-lifetime and are then refused by the object listener with
SecurityTokenExpired (OSS) or ExpiredToken (S3). Their lines on stdout, after the first:
`ossmount serve: metadata service on http://ADDR` and `ossmount serve: sts on http://ADDR`
(`https://ADDR` with --tls-cert: STS speaks TLS with serve's certificate, the metadata
service stays plain HTTP as on ECS). On those addresses:
  GET  /_ossmount/credentials          JSON counters (issued, metadata_credentials,
                                       assume_role, assume_role_oidc, refused_expired,
                                       refused_invalid, accepted, revoked, oidc_tokens_sha256)
  POST /_ossmount/credentials/revoke   revoke every token issued so far
  PUT  /_ossmount/credentials/faults   {{\"status\": 500}} or {{\"malformed\": true}}; {{}} clears"
    )
}

#[derive(Debug, Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List entries: key, size, percent present, finalized or not.
    Status {
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    /// Check every entry against its recorded CRC-64s; report bad ones.
    Verify {
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Drop entries that fail.
        #[arg(long)]
        fix: bool,
    },
    /// Remove entries (all, or those unused for longer than --older-than).
    Clean {
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        #[arg(long, value_parser = parse_duration)]
        older_than: Option<Duration>,
    },
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// `oss://bucket[/prefix]` or `s3://bucket[/prefix]`.
    pub url: String,
    #[command(flatten)]
    pub store: StoreArgs,
    /// List every key under the prefix instead of one level.
    #[arg(long, short = 'r')]
    pub recursive: bool,
}

#[derive(Debug, Args)]
pub struct CatArgs {
    /// `oss://bucket/key` or `s3://bucket/key`.
    pub url: String,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Byte range `FIRST-LAST` (inclusive, like HTTP), or `FIRST-` to the end.
    #[arg(long)]
    pub range: Option<String>,
}

/// A command's failure: the message for the user and the process exit code.
#[derive(Debug)]
pub struct Failure {
    pub exit_code: u8,
    pub message: String,
}

/// Exit codes, distinct so scripts can tell the causes apart.
pub mod exit {
    /// Anything not below.
    pub const GENERIC: u8 = 1;
    /// Bad arguments (clap uses 2 as well).
    pub const USAGE: u8 = 2;
    /// The store said no: not found, access denied, archived, network after retries.
    pub const STORE: u8 = 3;
    /// Downloaded bytes failed verification (CRC-64 mismatch).
    pub const VERIFY: u8 = 4;
    /// Local I/O: disk full, permission denied, cache locked by another process.
    pub const LOCAL: u8 = 5;
}

impl Failure {
    pub fn new(exit_code: u8, message: impl Into<String>) -> Self {
        Self {
            exit_code,
            message: message.into(),
        }
    }
}

/// `--direct-io`'s help, with the size above which it applies.
fn direct_io_help() -> String {
    format!(
        "Read objects over {} that are not fully cached yet with FUSE direct I/O: the kernel \
         copies replies straight into the reader's buffer instead of its page cache. A single \
         large `cp` runs at about the same speed with 15-20 % less of the mount's CPU; \
         parallel readers and small reads (4 KiB: 4x) run slower, each read being a round \
         trip through ossmount. Fully cached objects are unaffected (passthrough)",
        format_size(CacheConfig::default().small_object_threshold)
    )
}

/// `--cache-min-free`'s help, with the floor it defaults to.
fn cache_min_free_help() -> String {
    format!(
        "Free space the cache always leaves on its filesystem (parts that would go below it \
         are served from memory, not cached). Default: {}, or a tenth of the filesystem when \
         that is less",
        format_size(CacheConfig::default().min_free_bytes)
    )
}

/// `--part-size`'s help: what a part is, and the sizes the cache accepts.
fn part_size_help(what: &str) -> String {
    format!(
        "{what} ({} to {})",
        format_size(MIN_PART_SIZE),
        format_size(MAX_PART_SIZE)
    )
}

/// Permission bits as `--file-mode` takes them: `0444`.
fn format_mode(mode: u32) -> String {
    format!("{mode:04o}")
}

/// Parse octal permission bits such as `0444` or `755`.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let m = u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|_| format!("not an octal mode: {s:?}"))?;
    if m > 0o7777 {
        return Err(format!("mode out of range: {s:?}"));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0444"), Ok(0o444));
        assert_eq!(parse_mode("755"), Ok(0o755));
        assert!(parse_mode("999").is_err());
    }

    #[test]
    fn defaults_are_the_layers_own() {
        let cli = Cli::try_parse_from(["ossmount", "mount", "oss://bkt", "/mnt"]).unwrap();
        let Command::Mount(m) = cli.command else {
            panic!("not mount")
        };
        let (cache, fs) = (CacheConfig::default(), FsConfig::default());
        assert_eq!(m.cache.cache_size, cache.max_bytes);
        assert_eq!(m.cache.part_size, cache.part_size);
        assert_eq!(m.cache.jobs, cache.jobs);
        assert_eq!(m.cache.checkpoint_batch, cache.batch_bytes);
        assert_eq!(m.cache.cache_min_free, None, "computed from the filesystem");
        assert_eq!(m.metadata_ttl, fs.metadata_ttl);
        assert_eq!(m.request_deadline, fs.request_deadline);
        assert_eq!(m.dir_read_ahead, fs.dir_read_ahead);
        assert_eq!((m.file_mode, m.dir_mode), (fs.file_mode, fs.dir_mode));
        let cli = Cli::try_parse_from(["ossmount", "download", "oss://bkt/k"]).unwrap();
        let Command::Download(d) = cli.command else {
            panic!("not download")
        };
        assert_eq!(
            (d.part_size, d.jobs),
            (
                crate::cache::DOWNLOAD_PART_SIZE,
                crate::cache::DOWNLOAD_JOBS
            )
        );
    }

    #[test]
    fn metrics_addresses() {
        assert_eq!(
            parse_metrics_addr("9100").unwrap().to_string(),
            "127.0.0.1:9100"
        );
        assert_eq!(
            parse_metrics_addr(":9100").unwrap().to_string(),
            "127.0.0.1:9100"
        );
        assert_eq!(
            parse_metrics_addr("0.0.0.0:9100").unwrap().to_string(),
            "0.0.0.0:9100"
        );
        assert!(parse_metrics_addr("localhost:x").is_err());
        let cli = Cli::try_parse_from(["ossmount", "mount", "oss://bkt", "/mnt"]).unwrap();
        let Command::Mount(m) = cli.command else {
            panic!("not mount")
        };
        assert_eq!(m.metrics_addr, None, "off by default");
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
