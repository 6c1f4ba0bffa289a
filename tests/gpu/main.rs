//! The GPU runtime, and every kernel against its CPU reference (src/reference) on the test device
//! (lavapipe in CI), at sizes that are not multiples of the tile sizes, with
//! outputs poisoned with NaN before each run.

mod common;
mod elementwise;
mod linear;
mod metric;
mod modulate;
mod norm;
mod rows;
mod runtime;
