//! Judging images: dense vs RAS comparison (PSNR, SSIM, heat and compute
//! maps) and the demo model's prompt-adherence checker.

pub mod adherence;
pub mod compare;
pub mod run;

pub use adherence::{Expected, Found, Palette};
pub use compare::{compute_map, diff_heatmap, psnr, ssim, token_counts};
pub use run::{compare, timed, warm_up, PromptComparison, Timed};
