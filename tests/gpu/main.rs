//! The GPU runtime, and every kernel against its CPU reference (src/reference) on the test device
//! (lavapipe in CI), at sizes that are not multiples of the tile sizes, with
//! outputs poisoned with NaN before each run.

// Case tables are tuples of slices and functions; naming each type would not help.
#![allow(clippy::type_complexity)]

mod attention;
mod common;
mod conv2d;
mod elementwise;
mod finite;
mod linear;
mod metric;
mod modulate;
mod norm;
mod patch;
mod profiler;
mod rope;
mod rows;
mod runtime;
mod sampler;
mod upsample;
