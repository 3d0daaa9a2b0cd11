//! ossmount: mount an Alibaba Cloud OSS (or S3-compatible) bucket as a read-only directory,
//! reading objects lazily through a resumable, verified part cache on local disk.
//!
//! Layers, bottom up: [`store`] (signed HTTP, one bucket), [`cache`] (sparse data files plus
//! checkpoints), [`fetch`] (parts in flight, read-ahead), [`fs`] (the thin FUSE adapter).
//! [`download`] is the cache engine pointed at one object; [`serve`] is a local
//! OSS-compatible server for demos, tests and benchmarks.
//!
//! Above them: [`cli`] defines the command line, [`config`] turns a URL, the store options
//! and the environment into a connected store, and [`cmd`] holds each subcommand's front
//! end: what it prints, and the exit code each failure gets. [`units`] reads sizes and
//! durations for all of them.

pub mod cache;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod crc64;
pub mod download;
pub mod fetch;
pub mod fs;
pub mod logging;
pub mod serve;
pub mod store;
pub mod units;
