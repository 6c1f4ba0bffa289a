//! Every kernel against its CPU reference (src/reference) on the test device
//! (lavapipe in CI), at sizes that are not multiples of the tile sizes, with
//! outputs poisoned with NaN before each run.

mod attention;
mod common;
mod elementwise;
mod rope;
