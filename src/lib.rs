//! ossmount: mount an Alibaba Cloud OSS (or S3-compatible) bucket as a read-only directory,
//! reading objects lazily through a resumable, verified part cache on local disk.
//!
//! Layers, bottom up: [`store`] (signed HTTP, one bucket), [`cache`] (sparse data files plus
//! checkpoints), [`fetch`] (parts in flight, read-ahead), [`fs`] (the thin FUSE adapter).
//! [`download`] is the cache engine pointed at one object; [`serve`] is a local
//! OSS-compatible server for demos, tests and benchmarks.

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
