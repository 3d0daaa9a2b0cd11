//! `ossmount serve`. STUB.
use crate::cli::{Failure, ServeArgs};

pub fn run(_args: ServeArgs) -> Result<(), Failure> {
    todo!()
}
