//! Layers with weights, over the kernels. Each loads itself from a
//! [`Weights`] view named like the checkpoint's module.

use crate::error::Result;
use crate::gpu::{DType, Gpu, Tensor};
use crate::kernels::linear::{linear, linear_into, linear_with, Epilogue, LinearOptions, Rows};
use crate::kernels::norm::{layer_norm, rms_norm, rms_norm_with, Modulation};
use crate::weights::Weights;

/// `nn.Linear`: weight `[out, in]`, optional bias `[out]`, in the stored dtype.
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    /// Loads `<w>.weight` and `<w>.bias`; a missing bias is an error, not a
    /// silent zero.
    pub fn load(gpu: &Gpu, w: &Weights, out_features: usize, in_features: usize) -> Result<Linear> {
        let weight = w.get(gpu, "weight", &[out_features, in_features])?;
        Ok(Linear {
            weight,
            bias: Some(w.get(gpu, "bias", &[out_features])?),
        })
    }

    /// Loads `<w>.weight` of a layer built with `bias=False`.
    pub fn load_without_bias(
        gpu: &Gpu,
        w: &Weights,
        out_features: usize,
        in_features: usize,
    ) -> Result<Linear> {
        Ok(Linear {
            weight: w.get(gpu, "weight", &[out_features, in_features])?,
            bias: None,
        })
    }

    /// Several `nn.Linear` of the same shape, each with a bias, as one layer
    /// whose outputs are theirs side by side (one GEMM instead of several).
    pub fn load_stacked(
        gpu: &Gpu,
        parts: &[&Weights],
        out_features: usize,
        in_features: usize,
    ) -> Result<Linear> {
        let names = |name: &'static str| parts.iter().map(move |w| (*w, name)).collect::<Vec<_>>();
        Ok(Linear {
            weight: Weights::get_stacked(gpu, &names("weight"), &[out_features, in_features])?,
            bias: Some(Weights::get_stacked(gpu, &names("bias"), &[out_features])?),
        })
    }

    pub fn out_features(&self) -> usize {
        self.weight.shape()[0]
    }

    pub fn forward(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        linear(gpu, x, &self.weight, self.bias.as_ref())
    }

    pub fn forward_into(&self, gpu: &Gpu, x: &Tensor, out: &Tensor, rows: Rows) -> Result<()> {
        linear_into(gpu, x, &self.weight, self.bias.as_ref(), out, rows)
    }

    /// Into `out`, with row routing and an epilogue (GELU, gated residual).
    pub fn forward_with(&self, gpu: &Gpu, x: &Tensor, out: &Tensor, options: LinearOptions) -> Result<()> {
        linear_with(gpu, x, &self.weight, self.bias.as_ref(), out, options)
    }

    /// `x·Wᵀ + b` as a new `[.., out_features]` tensor in `dtype` (f32 or
    /// f16, whatever x's).
    pub fn forward_as(&self, gpu: &Gpu, x: &Tensor, dtype: DType) -> Result<Tensor> {
        let out = gpu.empty(&self.output_shape(x), dtype)?;
        self.forward_with(gpu, x, &out, LinearOptions::default())?;
        Ok(out)
    }

    fn output_shape(&self, x: &Tensor) -> Vec<usize> {
        let mut shape = x.shape().to_vec();
        if let Some(last) = shape.last_mut() {
            *last = self.out_features();
        }
        shape
    }

    /// `epilogue(x·Wᵀ + b)` into a new `[.., out_features]` tensor of x's dtype.
    pub fn forward_then(&self, gpu: &Gpu, x: &Tensor, epilogue: Epilogue) -> Result<Tensor> {
        let out = gpu.empty(&self.output_shape(x), x.dtype())?;
        let options = LinearOptions {
            epilogue,
            ..Default::default()
        };
        self.forward_with(gpu, x, &out, options)?;
        Ok(out)
    }
}

/// `RMSNorm` with a learned weight (SD3.5's per-head q/k norms, T5).
pub struct RmsNorm {
    pub weight: Tensor,
    pub eps: f32,
}

impl RmsNorm {
    pub fn load(gpu: &Gpu, w: &Weights, dim: usize, eps: f32) -> Result<RmsNorm> {
        Ok(RmsNorm {
            weight: w.get(gpu, "weight", &[dim])?,
            eps,
        })
    }

    /// Normalises over the last `dim` elements (a head, for q/k norms).
    pub fn forward(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        let dim = self.weight.shape()[0];
        let rows = x.reshape(&[x.numel() / dim, dim])?;
        rms_norm(gpu, &rows, Some(&self.weight), self.eps)?.reshape(x.shape())
    }

    /// `x [B, .., D]` normalised over D and modulated in the same pass.
    pub fn forward_modulated(&self, gpu: &Gpu, x: &Tensor, modulation: Modulation) -> Result<Tensor> {
        rms_norm_with(gpu, x, Some(&self.weight), Some(modulation), self.eps)
    }
}

/// `nn.LayerNorm` with a learned weight and bias over the last dimension.
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f32,
}

impl LayerNorm {
    pub fn load(gpu: &Gpu, w: &Weights, dim: usize, eps: f32) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: w.get(gpu, "weight", &[dim])?,
            bias: w.get(gpu, "bias", &[dim])?,
            eps,
        })
    }

    pub fn forward(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        layer_norm(gpu, x, Some(&self.weight), Some(&self.bias), self.eps)
    }
}
