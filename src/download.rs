//! `ossmount download`. STUB.
use crate::cli::{DownloadArgs, Failure};

pub fn run(_args: DownloadArgs) -> Result<(), Failure> {
    todo!()
}
