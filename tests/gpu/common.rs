//! Shared test harness: one device for the whole binary, fresh random
//! inputs, and the relative-error check.

use std::sync::{Mutex, MutexGuard, OnceLock};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use ras::gpu::{Gpu, GpuOptions};

/// The shared device, opened with `poison` so every pooled buffer starts as
/// NaN. Tests hold the guard to run one at a time: lavapipe already uses
/// every core, and error scopes are per thread.
pub fn gpu() -> MutexGuard<'static, Gpu> {
    static GPU: OnceLock<Mutex<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| {
        let options = GpuOptions {
            poison: true,
            ..Default::default()
        };
        match Gpu::new(&options) {
            Ok(g) => {
                eprintln!("testing on {} ({})", g.adapter_name(), g.backend());
                Mutex::new(g)
            }
            Err(e) => panic!(
                "GPU tests need an adapter and none could be opened: {e}\n\
                 Without a GPU install Mesa's software Vulkan driver: \
                 apt-get install -y mesa-vulkan-drivers"
            ),
        }
    })
    .lock()
    .unwrap_or_else(|p| p.into_inner())
}

/// A generator seeded from `RAS_TEST_SEED` or, by default, the clock: each
/// run draws fresh inputs, and a failure prints the seed to replay it.
pub fn rng() -> (SmallRng, u64) {
    let seed = std::env::var("RAS_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        });
    (SmallRng::seed_from_u64(seed), seed)
}

pub fn randn(rng: &mut SmallRng, n: usize) -> Vec<f32> {
    // Box–Muller: normal inputs exercise both tails of the activations.
    (0..n)
        .map(|_| {
            let u: f64 = rng.random_range(1e-12..1.0);
            let v: f64 = rng.random();
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect()
}

/// Asserts ‖out − ref‖/‖ref‖ < tol (NaN never passes) and prints the error.
pub fn check(what: &str, out: &[f32], reference: &[f32], tol: f64, seed: u64) {
    let err = ras::reference::rel_err(out, reference);
    eprintln!("{what}: rel err {err:.3e} (tol {tol:.0e})");
    assert!(
        err < tol,
        "{what}: relative error {err:.3e} exceeds {tol:.0e} (replay with RAS_TEST_SEED={seed})"
    );
}
