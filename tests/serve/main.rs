//! `ras serve` over real HTTP on the demo model: both APIs end to end,
//! batching, progress, interrupt, cancellation, queue limits, auth, input
//! validation and graceful shutdown.

mod apis;
mod client;
mod jobs;
mod safety;
mod shutdown;
