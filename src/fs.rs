//! The FUSE mount. STUB.
pub mod tree;

use crate::cli::{Failure, MountArgs};

pub fn run(_args: MountArgs, _debug: bool) -> Result<(), Failure> {
    todo!()
}
