//! The subcommands' front ends: each turns its arguments into the layers' settings, runs,
//! prints what it has to say, and turns errors into a message and an exit code
//! ([`crate::cli::exit`]). The layers below return values and errors and print nothing.

pub mod cache;
pub mod download;
