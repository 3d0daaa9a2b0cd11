//! The subcommands' front ends, one file each: arguments in, calls on the layers below,
//! output printed, and errors turned into a [`crate::cli::Failure`] (a one-line message and
//! an exit code, [`crate::cli::exit`]). The layers themselves return values and typed
//! errors, print nothing and never import `cli`.

pub mod auth;
pub mod cache;
pub mod control;
pub mod download;
pub mod inspect;
pub mod mount;
pub mod serve;
pub mod status;
pub mod warm;
