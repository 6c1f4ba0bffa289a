//! The RAS region metric (`shaders/metric.wgsl`, ras-spec §4.2): one score
//! per patch token from the model output, reduced on the GPU so that only
//! `B × tokens` floats come back to the planner.

use bytemuck::{Pod, Zeroable};

use super::{expect_dtype, groups, u32_of};
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Kernel, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MetricParams {
    total: u32,
    c: u32,
    h: u32,
    w: u32,
    ps: u32,
}

/// The per-pixel reduction over latent channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Unbiased standard deviation (torch.std's default).
    Std,
    /// Euclidean norm.
    L2Norm,
}

impl Metric {
    /// The original implementation's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Std => "std",
            Metric::L2Norm => "l2norm",
        }
    }

    /// The metric of that name ([`name`](Self::name)'s inverse).
    pub fn from_name(name: &str) -> Option<Metric> {
        [Metric::Std, Metric::L2Norm]
            .into_iter()
            .find(|m| m.name() == name)
    }
}

/// Scores `[B, (H/p)·(W/p)]` of `v [B, C, H, W]`: the mean over each p×p
/// patch of the per-pixel `metric` over channels.
pub fn region_metric(gpu: &Gpu, v: &Tensor, patch: usize, metric: Metric) -> Result<Tensor> {
    const OP: &str = "region_metric";
    expect_dtype(OP, v, &[DType::F32])?;
    let &[b, c, h, w] = v.shape() else {
        return Err(Error::shape(
            OP,
            format!("expected [B, C, H, W], got {:?}", v.shape()),
        ));
    };
    if patch == 0 || h % patch != 0 || w % patch != 0 {
        return Err(Error::shape(
            OP,
            format!("{h}×{w} latent is not divisible into {patch}×{patch} patches"),
        ));
    }
    if metric == Metric::Std && c < 2 {
        return Err(Error::shape(OP, "std over channels needs at least 2 channels"));
    }
    let tokens = (h / patch) * (w / patch);
    let out = gpu.empty(&[b, tokens], DType::F32)?;
    let params = MetricParams {
        total: u32_of(OP, b * tokens)?,
        c: u32_of(OP, c)?,
        h: u32_of(OP, h)?,
        w: u32_of(OP, w)?,
        ps: u32_of(OP, patch)?,
    };
    let code = match metric {
        Metric::Std => 0,
        Metric::L2Norm => 1,
    };
    let kernel = Kernel::new("metric").constant("METRIC", code);
    gpu.dispatch(
        &kernel,
        &[v.arg()?],
        &[out.arg()?],
        bytemuck::bytes_of(&params),
        groups(b * tokens, 64)?,
    )?;
    Ok(out)
}
