//! Pieces of the `ras` command line shared by several subcommands.

pub mod ras_args;
