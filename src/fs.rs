//! The FUSE mount: `ossmount mount oss://bucket[/prefix/] MOUNTPOINT`.
//!
//! Split the way Mountpoint splits it, so the filesystem's rules are tested without FUSE:
//! - [`tree`]: the core, generic over `dyn ObjectStore`, no fuser types: `tree/inodes.rs`
//!   (the inode table and attributes), `tree/listing.rs` (listings and their TTLs, lookup,
//!   readdir), `tree/handles.rs` (open handles, reads through the part cache or uncached);
//! - [`error`]: the core's typed errors;
//! - [`adapter`]: the thin `fuser::Filesystem` (arguments in, reply out) and the one
//!   function that maps core errors to errno;
//! - `passthrough`: the kernel's rules for serving an open file, applied per inode: FUSE
//!   passthrough for finalized objects, else ordinary reads, with FUSE direct I/O for large
//!   objects not cached yet when `--direct-io` asks for it;
//! - [`mount`]: the kernel side of a mount (mount(2) or fusermount3, unmounting only
//!   what is still ours, readahead); the `mount` command itself lives with the other
//!   commands' front ends, above the layers;
//! - `drop_behind` and `warm_ahead`: the kernel's page cache, dropped behind readers of
//!   objects not yet cached, and filled ahead of readers of finalized ones;
//! - [`xattr`]: read-only extended attributes (ETag, CRC-64, storage class, object type,
//!   restore state, user metadata, and how much of the file the cache holds).

pub mod adapter;
mod deadline;
mod drop_behind;
pub mod error;
pub mod mount;
mod passthrough;
pub mod tree;
mod warm_ahead;
pub mod xattr;
