use ras::gpu::{Gpu, Record, Timer};
use ras::kernels::attention::{attention, attention_flops};
use ras::kernels::linear::{linear, linear_flops};
use ras::kernels::rows::{gather, Indices};

use crate::common::{gpu, randn, rng};

/// A linear, an attention and a gather, tagged as one dense step whose
/// first two launches are in a "block" region; returns the linear's output.
fn work(gpu: &Gpu, x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let step = gpu.step_scope("dense step");
    let region = gpu.region("block");
    let xt = gpu.upload_f32(x, &[m, k]).unwrap();
    let wt = gpu.upload_weight_f32(w, &[n, k]).unwrap();
    let y = linear(gpu, &xt, &wt, None).unwrap();
    let q = y.reshape(&[1, m, 1, n]).unwrap();
    drop(attention(gpu, &q, &q, &q, None, 0.5).unwrap());
    drop(region);
    let idx = Indices::upload(gpu, &[2, 0]).unwrap();
    drop(gather(gpu, &y, &idx).unwrap());
    gpu.flush().unwrap();
    drop(step);
    gpu.read_f32(&y).unwrap()
}

#[test]
fn profiler_times_every_launch_with_each_timer() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    let (m, n, k) = (37, 20, 13);
    let x = randn(&mut rng, m * k);
    let w = randn(&mut rng, n * k);
    let plain = work(&gpu, &x, &w, m, n, k);
    let mut timers = vec![Timer::WallClock];
    if gpu.capabilities().timestamps {
        timers.push(Timer::Timestamps { inside_passes: false });
        if gpu.profile_timer() == (Timer::Timestamps { inside_passes: true }) {
            timers.push(Timer::Timestamps { inside_passes: true });
        }
    } else if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI's adapter (lavapipe) has timestamp queries; this one has none");
    }
    for timer in timers {
        let before = gpu.counters();
        gpu.start_profile_with(timer).unwrap();
        let got = work(&gpu, &x, &w, m, n, k);
        let profile = gpu.take_profile().unwrap();
        let after = gpu.counters();
        assert_eq!(got, plain, "{timer:?}: profiling changed a result (seed {seed})");
        assert_eq!(profile.timer, timer);
        let families: Vec<&str> = profile.records.iter().map(|r| r.family).collect();
        assert_eq!(families, ["linear", "attention", "rows"], "{timer:?}");
        let regions: Vec<&str> = profile.records.iter().map(|r| r.region).collect();
        assert_eq!(regions, ["block", "block", ""], "{timer:?}");
        assert!(profile.records.iter().all(|r: &Record| r.step == "dense step"));
        assert!(
            profile
                .records
                .iter()
                .all(|r| r.seconds.is_finite() && r.seconds >= 0.0),
            "{timer:?}: {:?}",
            profile.records
        );
        assert!(
            profile.records.iter().map(|r| r.seconds).sum::<f64>() > 0.0,
            "{timer:?}"
        );
        assert_eq!(profile.records[0].flops, linear_flops(m, n, k));
        assert_eq!(profile.records[1].flops, attention_flops(1, m, m, 1, n));
        let dense = &profile.steps["dense step"];
        assert_eq!((dense.steps, dense.dispatches), (1, 3), "{timer:?}");
        assert!(dense.submits >= 1, "{timer:?}");
        assert_eq!(after.dispatches - before.dispatches, 3);
        assert!(after.submits > before.submits);
    }
}

#[test]
fn unsupported_timer_and_missing_start_are_errors() {
    let gpu = gpu();
    assert!(gpu.take_profile().is_err());
    if gpu.profile_timer() == Timer::WallClock {
        assert!(gpu
            .start_profile_with(Timer::Timestamps { inside_passes: false })
            .is_err());
    }
}
