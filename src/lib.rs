//! ossmount: mount an Alibaba Cloud OSS (or S3-compatible) bucket as a read-only directory,
//! reading objects lazily through a resumable, verified part cache on local disk.
//!
//! Layers, bottom up, each importing only the ones below it: [`store`] (signed HTTP, one
//! bucket), [`cache`] (sparse data files plus checkpoints, within a budget), [`fetch`]
//! (parts in flight, read-ahead; it sees the cache only as the owner of the entries it
//! fills), [`fs`] (the thin FUSE adapter). [`download`] is the fetch engine pointed at one
//! entry; [`serve`] is a local OSS-compatible server for demos, tests and benchmarks.
//!
//! Above them: [`cli`] defines the command line, [`config`] turns a URL, the store options
//! and the environment into a connected store, and [`cmd`] holds each subcommand's front
//! end (arguments in, output and exit codes out). [`units`] reads sizes and durations for
//! all of them.

pub mod cache;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod crc64;
pub mod download;
pub mod fetch;
pub mod fs;
pub mod logging;
pub mod metrics;
pub mod serve;
pub mod store;
pub mod units;
