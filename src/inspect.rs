//! `ossmount ls` and `ossmount cat`. STUB.
use crate::cli::{CatArgs, Failure, LsArgs};

pub fn ls(_args: LsArgs) -> Result<(), Failure> {
    todo!()
}

pub fn cat(_args: CatArgs) -> Result<(), Failure> {
    todo!()
}
