//! Pieces of the `ras` command line.

pub mod compare;
pub mod generate;
pub mod ras_args;
