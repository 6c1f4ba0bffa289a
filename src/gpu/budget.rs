//! How much GPU work one submit may carry. A host that shares its device (a
//! game, a creative tool) waits behind every submit of ours, and Windows
//! resets a driver whose submit runs past ~2 s (TDR), taking the host down
//! too. So the recorder splits large launches into chunks of workgroups and
//! submits at most `max_ms` of estimated work at a time.
//!
//! The estimate is deliberately coarse: a launch's FLOPs and bytes at rates
//! that a modest GPU of the adapter's kind reaches with our kernels (see
//! [`SubmitBudget::for_device`]). A slower GPU than assumed gets longer
//! submits in proportion; `max_ms` leaves a wide margin for that.

/// The default submit budget of GPUs, in estimated milliseconds: 5–10×
/// below a Windows driver reset even on a GPU several times slower than
/// assumed. Software rasterisers (lavapipe) have no bound by default: they
/// drive no display and no watchdog, and there splitting costs ~5% of a
/// step (bench/RESULTS.md).
pub const DEFAULT_MAX_SUBMIT_MS: f64 = 200.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SubmitBudget {
    /// Estimated milliseconds one submit may carry (`f64::INFINITY` = no
    /// bound: one submit per flush).
    pub max_ms: f64,
    /// Assumed kernel throughput, FLOPs per millisecond.
    pub flops_per_ms: f64,
    /// Assumed memory throughput, bytes per millisecond.
    pub bytes_per_ms: f64,
}

impl SubmitBudget {
    /// Rates by device kind, each a modest member of its kind running our
    /// portable kernels (well below peak): discrete 5 TFLOP/s and
    /// 200 GB/s; integrated 0.2 TFLOP/s and 20 GB/s; a software rasteriser
    /// 10 GFLOP/s and 5 GB/s (lavapipe on two cores measures about that).
    pub fn for_device(kind: wgpu::DeviceType, max_ms: Option<f64>) -> SubmitBudget {
        let (gflops, gbytes) = match kind {
            wgpu::DeviceType::DiscreteGpu => (5000.0, 200.0),
            wgpu::DeviceType::Cpu => (10.0, 5.0),
            _ => (200.0, 20.0),
        };
        let default = match kind {
            wgpu::DeviceType::Cpu => f64::INFINITY,
            _ => DEFAULT_MAX_SUBMIT_MS,
        };
        SubmitBudget {
            max_ms: max_ms.unwrap_or(default),
            flops_per_ms: gflops * 1e6,
            bytes_per_ms: gbytes * 1e6,
        }
    }

    /// Estimated milliseconds of a launch that does `flops` and moves `bytes`.
    pub fn estimate_ms(&self, flops: f64, bytes: f64) -> f64 {
        flops / self.flops_per_ms + bytes / self.bytes_per_ms
    }

    /// How a launch of `workgroups` workgroups estimated at `ms` is cut:
    /// `(chunk, count)`, `count` launches of `chunk` workgroups (the last
    /// one fewer). Chunks of a split launch stay within `max_per_dim`, so
    /// no chunk is folded into a 2-D grid whose surplus workgroups would
    /// run another chunk's work twice.
    pub fn chunks(&self, workgroups: u32, ms: f64, max_per_dim: u32) -> (u32, u32) {
        let wanted = (ms / self.max_ms).ceil();
        if wanted.is_nan() || wanted <= 1.0 || workgroups <= 1 {
            return (workgroups, 1);
        }
        let n = (wanted as u64).min(workgroups as u64) as u32;
        let chunk = workgroups.div_ceil(n).min(max_per_dim).max(1);
        (chunk, workgroups.div_ceil(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(max_ms: f64) -> SubmitBudget {
        SubmitBudget::for_device(wgpu::DeviceType::Cpu, Some(max_ms))
    }

    #[test]
    fn small_launches_are_not_split() {
        assert_eq!(budget(200.0).chunks(1000, 150.0, 65535), (1000, 1));
        assert_eq!(budget(f64::INFINITY).chunks(1000, 1e9, 65535), (1000, 1));
        // A folded launch that needs no split keeps its fold.
        assert_eq!(budget(200.0).chunks(100_000, 1.0, 65535), (100_000, 1));
    }

    #[test]
    fn chunks_cover_every_workgroup_once() {
        for (workgroups, ms) in [(1000u32, 450.0), (7, 1e6), (100_000, 250.0), (200_000, 1e9)] {
            let (chunk, count) = budget(200.0).chunks(workgroups, ms, 65535);
            assert!(chunk <= 65535 && count > 1, "{workgroups} {ms}: {chunk}×{count}");
            assert!(chunk * (count - 1) < workgroups && chunk * count >= workgroups);
        }
        // Never smaller than one workgroup.
        assert_eq!(budget(1e-9).chunks(7, 1.0, 65535), (1, 7));
    }

    #[test]
    fn estimate_adds_compute_and_memory_time() {
        let b = budget(200.0);
        assert!((b.estimate_ms(10e9, 0.0) - 1000.0).abs() < 1e-6);
        assert!((b.estimate_ms(0.0, 5e9) - 1000.0).abs() < 1e-6);
    }
}
