//! The FUSE mount: `ossmount mount oss://bucket[/prefix/] MOUNTPOINT`.
//!
//! Split the way Mountpoint splits it, so the filesystem's rules are tested without FUSE:
//! - [`tree`]: the core (inodes, listings and their TTLs, open handles, reads through the
//!   part cache), generic over `dyn ObjectStore`, no fuser types;
//! - [`error`]: the core's typed errors;
//! - [`adapter`]: the thin `fuser::Filesystem` (arguments in, reply out) and the one
//!   function that maps core errors to errno;
//! - [`mount`]: the kernel side of a mount (mount(2) or fusermount3, unmounting only
//!   what is still ours, readahead); the `mount` command itself lives with the other
//!   commands' front ends, above the layers;
//! - `drop_behind` and `warm_ahead`: the kernel's page cache, dropped behind readers of
//!   objects not yet cached, and filled ahead of readers of finalized ones.

pub mod adapter;
mod drop_behind;
pub mod error;
pub mod mount;
pub mod tree;
mod warm_ahead;
