//! ossmount: mount an Alibaba Cloud OSS (or S3-compatible) bucket as a read-only directory,
//! reading objects lazily through a resumable, verified part cache on local disk.
//!
//! Layers, bottom up, each importing only the ones below it: [`store`] (signed HTTP, one
//! bucket), [`cache`] (sparse data files plus checkpoints, within a budget), [`fetch`]
//! (parts in flight, read-ahead; it sees the cache only as the owner of the entries it
//! fills), [`fs`] (the thin FUSE adapter). [`download`] is the fetch engine pointed at one
//! entry; [`serve`] is a local OSS-compatible server for demos, tests and benchmarks.
//! [`cmd`] holds the subcommands' front ends (arguments in, output and exit codes out).

pub mod cache;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod crc64;
pub mod download;
pub mod fetch;
pub mod fs;
pub mod inspect;
pub mod logging;
pub mod serve;
pub mod store;
