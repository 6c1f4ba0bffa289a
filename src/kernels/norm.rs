//! Normalisation (`shaders/norm.wgsl`): LayerNorm, RMSNorm and GroupNorm
//! (optionally fused with SiLU) share one row-reduction kernel.

use bytemuck::{Pod, Zeroable};

use super::modulate::Chunk;
use super::{dtype_code, groups, storage_type, u32_of};
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Kernel, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct NormParams {
    rows: u32,
    n: u32,
    hw: u32,
    groups: u32,
    eps: f32,
    has_weight: u32,
    has_bias: u32,
    rows_per_batch: u32,
    emb_stride: u32,
    shift_off: u32,
    scale_off: u32,
}

struct Affine<'a> {
    weight: Option<&'a Tensor>,
    bias: Option<&'a Tensor>,
    /// Expected length of weight and bias.
    len: usize,
}

struct Layout {
    rows: usize,
    n: usize,
    hw: usize,
    groups: usize,
}

struct Mode<'a> {
    eps: f32,
    rms: bool,
    silu: bool,
    modulate: Option<Modulation<'a>>,
}

/// adaLN modulation applied to the normalised rows: `y·(1 + scale) [+ shift]`
/// with chunks of `emb [B, count·D]` for each row's image.
#[derive(Clone, Copy)]
pub struct Modulation<'a> {
    pub emb: &'a Tensor,
    pub shift: Option<Chunk>,
    pub scale: Chunk,
}

/// `(rows per image, emb stride, shift offset, scale offset)`.
fn modulation_layout(op: &'static str, m: &Modulation, l: &Layout) -> Result<(usize, usize, usize, usize)> {
    let d = l.n;
    let count = m.scale.count;
    let b = m.emb.shape().first().copied().unwrap_or(0);
    let chunks_ok = [Some(m.scale), m.shift]
        .into_iter()
        .flatten()
        .all(|c| c.count == count && c.index < count);
    if m.emb.dtype() != DType::F32
        || m.emb.shape() != [b, count * d]
        || !chunks_ok
        || b == 0
        || !l.rows.is_multiple_of(b)
        || l.hw != 1
    {
        return Err(Error::shape(
            op,
            format!(
                "modulation needs f32 emb [B, {count}×{d}] with B dividing {} rows, got {:?} (scale {:?}, shift {:?})",
                l.rows,
                m.emb.shape(),
                m.scale,
                m.shift
            ),
        ));
    }
    let shift = m.shift.map_or(0, |c| c.index * d);
    Ok((l.rows / b, count * d, shift, m.scale.index * d))
}

/// Rows up to this long take the shader's `per_lane` entry point on
/// software adapters: a row's three passes are one lane's serial loops.
const PER_LANE_MAX_N: usize = 4096;
/// Whether `l` runs a lane per row (`per_lane`) rather than a workgroup per
/// row (`main`); see shaders/norm.wgsl. Never by row count: a row's
/// result must not depend on how many rows share the launch (batched
/// images are bit-identical to the same images alone).
fn per_lane(gpu: &Gpu, l: &Layout) -> bool {
    gpu.is_software() && l.n <= PER_LANE_MAX_N
}

fn launch(gpu: &Gpu, op: &'static str, x: &Tensor, a: Affine, l: Layout, mode: Mode) -> Result<Tensor> {
    if !matches!(x.dtype(), DType::F32 | DType::F16) {
        return Err(Error::DType {
            op,
            dtype: x.dtype().name().into(),
            message: "input must be f32 or f16".into(),
        });
    }
    let mut code = 0;
    for t in [a.weight, a.bias].into_iter().flatten() {
        if t.shape() != [a.len] {
            return Err(Error::shape(
                op,
                format!("affine parameter {:?} should be [{}]", t.shape(), a.len),
            ));
        }
        code = dtype_code(op, t)?;
    }
    if let (Some(w), Some(b)) = (a.weight, a.bias) {
        if w.dtype() != b.dtype() {
            return Err(Error::shape(op, "weight and bias must have the same dtype"));
        }
    }
    let (rows_per_batch, emb_stride, shift_off, scale_off) = match &mode.modulate {
        Some(m) => modulation_layout(op, m, &l)?,
        None => (1, 0, 0, 0),
    };
    // The output keeps the input's dtype (f16 activations stay f16).
    let out = gpu.empty(x.shape(), x.dtype())?;
    if l.rows == 0 || l.n == 0 {
        return Ok(out);
    }
    let params = NormParams {
        rows_per_batch: u32_of(op, rows_per_batch)?,
        emb_stride: u32_of(op, emb_stride)?,
        shift_off: u32_of(op, shift_off)?,
        scale_off: u32_of(op, scale_off)?,
        rows: u32_of(op, l.rows)?,
        n: u32_of(op, l.n)?,
        hw: u32_of(op, l.hw)?,
        groups: u32_of(op, l.groups)?,
        eps: mode.eps,
        has_weight: a.weight.is_some() as u32,
        has_bias: a.bias.is_some() as u32,
    };
    let act = storage_type(gpu, op, x)?;
    let lanes = per_lane(gpu, &l);
    let kernel = Kernel::new("norm")
        .entry(if lanes { "per_lane" } else { "main" })
        .template("ACT_T", act)
        .template("OUT_T", act)
        .constant("W_DTYPE", code)
        .constant("RMS", mode.rms as u32)
        .constant("SILU", mode.silu as u32)
        .constant(
            "MODULATE",
            match &mode.modulate {
                None => 0,
                Some(m) if m.shift.is_some() => 1,
                Some(_) => 2,
            },
        );
    let w = a.weight.unwrap_or(x).arg()?;
    let b = a.bias.unwrap_or(x).arg()?;
    let emb = mode.modulate.map_or(x, |m| m.emb).arg()?;
    gpu.dispatch(
        &kernel,
        &[x.arg()?, w, b, emb],
        &[out.arg()?],
        bytemuck::bytes_of(&params),
        groups(if lanes { l.rows.div_ceil(64) } else { l.rows }, 1)?,
    )?;
    Ok(out)
}

fn last_dim(x: &Tensor) -> Layout {
    Layout {
        rows: x.rows(),
        n: x.cols(),
        hw: 1,
        groups: 1,
    }
}

/// LayerNorm over the last dimension; `weight`/`bias` `[D]` are optional
/// (SD3's `elementwise_affine=False` norms have neither).
pub fn layer_norm(
    gpu: &Gpu,
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f32,
) -> Result<Tensor> {
    layer_norm_with(
        gpu,
        x,
        Affine {
            weight,
            bias,
            len: x.cols(),
        },
        None,
        eps,
    )
}

/// LayerNorm without affine parameters followed by adaLN modulation
/// (`modulate(layer_norm(x))` or `scale_only(layer_norm(x))` in one pass).
pub fn layer_norm_modulated(gpu: &Gpu, x: &Tensor, modulation: Modulation, eps: f32) -> Result<Tensor> {
    let affine = Affine {
        weight: None,
        bias: None,
        len: x.cols(),
    };
    layer_norm_with(gpu, x, affine, Some(modulation), eps)
}

fn layer_norm_with(
    gpu: &Gpu,
    x: &Tensor,
    affine: Affine,
    modulate: Option<Modulation>,
    eps: f32,
) -> Result<Tensor> {
    let mode = Mode {
        eps,
        rms: false,
        silu: false,
        modulate,
    };
    launch(gpu, "layer_norm", x, affine, last_dim(x), mode)
}

/// RMSNorm over the last dimension: `x / sqrt(mean(x²) + eps) * weight`.
pub fn rms_norm(gpu: &Gpu, x: &Tensor, weight: Option<&Tensor>, eps: f32) -> Result<Tensor> {
    rms_norm_with(gpu, x, weight, None, eps)
}

/// [`rms_norm`] followed by adaLN modulation, in one pass.
pub fn rms_norm_with(
    gpu: &Gpu,
    x: &Tensor,
    weight: Option<&Tensor>,
    modulation: Option<Modulation>,
    eps: f32,
) -> Result<Tensor> {
    let affine = Affine {
        weight,
        bias: None,
        len: x.cols(),
    };
    launch(
        gpu,
        "rms_norm",
        x,
        affine,
        last_dim(x),
        Mode {
            eps,
            rms: true,
            silu: false,
            modulate: modulation,
        },
    )
}

/// GroupNorm over `x [B, C, ...spatial]` with per-channel affine `[C]`,
/// followed by SiLU when `silu` is set.
pub fn group_norm(
    gpu: &Gpu,
    x: &Tensor,
    num_groups: usize,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f32,
    silu: bool,
) -> Result<Tensor> {
    const OP: &str = "group_norm";
    let shape = x.shape();
    if shape.len() < 2 || num_groups == 0 || !shape[1].is_multiple_of(num_groups) {
        return Err(Error::shape(
            OP,
            format!("{shape:?} cannot be split into {num_groups} channel groups"),
        ));
    }
    let (b, c) = (shape[0], shape[1]);
    let hw: usize = shape[2..].iter().product();
    let layout = Layout {
        rows: b * num_groups,
        n: c / num_groups * hw,
        hw,
        groups: num_groups,
    };
    launch(
        gpu,
        OP,
        x,
        Affine { weight, bias, len: c },
        layout,
        Mode {
            eps,
            rms: false,
            silu,
            modulate: None,
        },
    )
}
