//! Linear layer: `y = x·Wᵀ + b` with PyTorch's `[out_features,
//! in_features]` weights in f32, f16 or bf16, optionally reading and
//! writing rows through index lists. Three shaders implement the same
//! contract (`shaders/linear.wgsl` portable, `linear_tiled.wgsl`,
//! `linear_coopmat.wgsl`); [`variant`](super::variant) picks one per device.

use bytemuck::{Pod, Zeroable};

use super::modulate::Chunk;
use super::rows::Indices;
use super::variant::{missing_features, variants};
use super::{dtype_code, groups, storage_type, u32_of};
use crate::error::{Error, Result};
use crate::gpu::{Cost, DType, Gpu, Kernel, Tensor, Variant};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct LinearParams {
    m: u32,
    n: u32,
    k: u32,
    n_total: u32,
    n_offset: u32,
    has_bias: u32,
    tiles_n: u32,
    has_in_idx: u32,
    has_out_idx: u32,
    rows_per_batch: u32,
    emb_stride: u32,
    gate_off: u32,
    out_col: u32,
}

const OP: &str = "linear";

/// What the kernel applies to `y = x·Wᵀ + b` before storing it, in place of
/// a separate elementwise pass over the output.
#[derive(Clone, Copy, Default)]
pub enum Epilogue<'a> {
    #[default]
    None,
    /// GELU, tanh approximation (the MLP's up projection).
    GeluTanh,
    /// `out = residual + gate ⊙ y` (or `tanh(gate)`), with the gate chunk of
    /// `emb [B, count·N]` of the output row's image (adaLN-Zero); `residual`
    /// has the output's shape and must be another tensor.
    GatedResidual {
        residual: &'a Tensor,
        emb: &'a Tensor,
        gate: Chunk,
        tanh: bool,
    },
    /// `out = silu(gate) ⊙ y` with `gate` of the output's shape (SwiGLU:
    /// `silu(x·W1ᵀ) ⊙ x·W3ᵀ` with the second product fused).
    SiluGated { gate: &'a Tensor },
}

impl Epilogue<'_> {
    fn code(&self) -> u32 {
        match self {
            Epilogue::None => 0,
            Epilogue::GeluTanh => 1,
            Epilogue::GatedResidual { tanh: false, .. } => 2,
            Epilogue::GatedResidual { tanh: true, .. } => 3,
            Epilogue::SiluGated { .. } => 4,
        }
    }
}

/// Row routing, epilogue and output columns of one linear launch.
#[derive(Clone, Copy, Default)]
pub struct LinearOptions<'a> {
    pub rows: Rows<'a>,
    pub epilogue: Epilogue<'a>,
    /// The output's columns `out_col .. out_col + N` receive the result
    /// (the output may be wider than N, e.g. a fused K|V cache row).
    pub out_col: usize,
}

/// The shader of `variant` for these weights, and its output tile edge.
fn kernel(
    gpu: &Gpu,
    variant: Variant,
    w_dtype: u32,
    k: usize,
    epilogue: u32,
    x: &Tensor,
    out: &Tensor,
) -> Result<(Kernel, usize)> {
    // The wide-load paths need every row to start on a 4-element boundary.
    let aligned = k.is_multiple_of(4) as u32;
    let (act_type, out_type) = (storage_type(gpu, OP, x)?, storage_type(gpu, OP, out)?);
    let (kernel, tile) = match variant {
        // 8×8 invocations × 4×4 outputs.
        Variant::Portable => (
            Kernel::new("linear")
                .constant("W_DTYPE", w_dtype)
                .constant("EPILOGUE", epilogue)
                .constant("ALIGNED", aligned),
            32,
        ),
        Variant::Tiled => (
            Kernel::new("linear_tiled")
                .constant("W_DTYPE", w_dtype)
                .constant("EPILOGUE", epilogue)
                .constant("ALIGNED", aligned),
            64,
        ),
        Variant::Coopmat => {
            if let Some(missing) = missing_features(gpu, Variant::Coopmat) {
                return Err(Error::Invalid(format!(
                    "the coopmat linear kernel needs {missing}, which this device lacks"
                )));
            }
            let sg = gpu.fixed_subgroup_size().unwrap_or(32);
            (
                Kernel::new("linear_coopmat")
                    .constant("W_DTYPE", w_dtype)
                    .constant("EPILOGUE", epilogue)
                    .constant("WG", 4 * sg),
                64,
            )
        }
    };
    Ok((
        kernel.template("ACT_T", act_type).template("OUT_T", out_type),
        tile,
    ))
}

/// Row routing for [`linear_into`]: logical row `m` reads input row
/// `input[m]` and writes output row `output[m]` (identity when `None`).
#[derive(Clone, Copy, Default)]
pub struct Rows<'a> {
    pub input: Option<&'a Indices>,
    pub output: Option<&'a Indices>,
}

/// `x [.., K]` times `weight [N, K]`ᵀ plus `bias [N]` → `[.., N]`, in x's
/// dtype (f32, or f16 activations; sums in f32 either way).
pub fn linear(gpu: &Gpu, x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let n = weight.shape().first().copied().unwrap_or(0);
    let mut shape = x.shape().to_vec();
    match shape.last_mut() {
        Some(last) => *last = n,
        None => return Err(Error::shape(OP, "input must have at least one dimension")),
    }
    let out = gpu.empty(&shape, x.dtype())?;
    linear_into(gpu, x, weight, bias, &out, Rows::default())?;
    Ok(out)
}

fn check(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, out: &Tensor) -> Result<(usize, usize)> {
    if !matches!(x.dtype(), DType::F32 | DType::F16) {
        return Err(Error::DType {
            op: OP,
            dtype: x.dtype().name().into(),
            message: "activations must be f32 or f16".into(),
        });
    }
    if !matches!(out.dtype(), DType::F32 | DType::F16) {
        return Err(Error::DType {
            op: OP,
            dtype: out.dtype().name().into(),
            message: "the output must be f32 or f16".into(),
        });
    }
    let k = x.cols();
    let &[n, wk] = weight.shape() else {
        return Err(Error::shape(
            OP,
            format!("weight must be [out, in], got {:?}", weight.shape()),
        ));
    };
    if wk != k {
        return Err(Error::shape(
            OP,
            format!(
                "input {:?} has {k} features but weight {:?} expects {wk}",
                x.shape(),
                weight.shape()
            ),
        ));
    }
    if out.cols() < n {
        return Err(Error::shape(
            OP,
            format!("output {:?} must have {n} columns", out.shape()),
        ));
    }
    if let Some(b) = bias {
        if b.shape() != [n] || b.dtype() != weight.dtype() {
            return Err(Error::shape(
                OP,
                format!(
                    "bias {:?} {} does not match weight {:?} {}",
                    b.shape(),
                    b.dtype().name(),
                    weight.shape(),
                    weight.dtype().name()
                ),
            ));
        }
    }
    Ok((n, k))
}

/// Writes `x·Wᵀ + b` into existing `out [R, N]`, with optional input and
/// output row indices (gathering active tokens, writing K/V rows straight
/// into a cache). Rows of `out` that are not written keep their values.
pub fn linear_into(
    gpu: &Gpu,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    rows: Rows,
) -> Result<()> {
    linear_with(
        gpu,
        x,
        weight,
        bias,
        out,
        LinearOptions {
            rows,
            ..Default::default()
        },
    )
}

/// [`linear_into`] with an epilogue.
pub fn linear_with(
    gpu: &Gpu,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    options: LinearOptions,
) -> Result<()> {
    let variant = variants(gpu)?.linear.variant;
    linear_into_variant(gpu, x, weight, bias, out, options, variant)
}

/// `(gate offset, emb row stride, output rows per image)` of a gated epilogue.
fn gate_layout(epilogue: &Epilogue, x_dtype: DType, out: &Tensor, n: usize) -> Result<(usize, usize, usize)> {
    let (residual, emb, gate) = match epilogue {
        Epilogue::GatedResidual {
            residual, emb, gate, ..
        } => (residual, emb, gate),
        Epilogue::SiluGated { gate } => {
            if gate.shape() != out.shape() || gate.dtype() != x_dtype {
                return Err(Error::shape(
                    OP,
                    format!(
                        "gate {:?} must have the output's shape {:?} and the input's dtype",
                        gate.shape(),
                        out.shape()
                    ),
                ));
            }
            return Ok((0, 0, 1));
        }
        _ => return Ok((0, 0, 1)),
    };
    if residual.shape() != out.shape() || residual.dtype() != x_dtype {
        return Err(Error::shape(
            OP,
            format!(
                "residual {:?} must have the output's shape {:?} and the input's dtype",
                residual.shape(),
                out.shape()
            ),
        ));
    }
    let batch = emb.shape().first().copied().unwrap_or(0);
    if emb.dtype() != DType::F32
        || emb.shape() != [batch, gate.count * n]
        || gate.index >= gate.count
        || batch == 0
        || !out.rows().is_multiple_of(batch)
    {
        return Err(Error::shape(
            OP,
            format!(
                "gate chunk {} of {} needs emb [B, {}] with B dividing the output's {} rows, got {:?}",
                gate.index,
                gate.count,
                gate.count * n,
                out.rows(),
                emb.shape()
            ),
        ));
    }
    Ok((gate.index * n, gate.count * n, out.rows() / batch))
}

/// [`linear_with`] on a chosen implementation (tests and the self-test run
/// each).
pub fn linear_into_variant(
    gpu: &Gpu,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    options: LinearOptions,
    variant: Variant,
) -> Result<()> {
    let LinearOptions {
        rows,
        epilogue,
        out_col,
    } = options;
    let code = dtype_code(OP, weight)?;
    let (n, k) = check(x, weight, bias, out)?;
    if out_col + n > out.cols() || (out_col > 0 && !matches!(epilogue, Epilogue::None)) {
        return Err(Error::shape(
            OP,
            format!(
                "columns {out_col}..{} do not fit the output {:?} (or an epilogue was asked with a column offset)",
                out_col + n,
                out.shape()
            ),
        ));
    }
    if out_col == 0 && out.cols() != n {
        return Err(Error::shape(
            OP,
            format!("output {:?} must have {n} columns", out.shape()),
        ));
    }
    let (gate_off, emb_stride, rows_per_batch) = gate_layout(&epilogue, x.dtype(), out, n)?;
    let m = rows.input.map_or(x.rows(), Indices::len);
    if let Some(i) = rows.input {
        i.check(OP, x.rows())?;
    }
    match rows.output {
        Some(o) if o.len() != m => {
            return Err(Error::shape(
                OP,
                format!("{} output rows for {m} input rows", o.len()),
            ));
        }
        Some(o) => o.check(OP, out.rows())?,
        None if out.rows() < m => {
            return Err(Error::shape(
                OP,
                format!("output {:?} has fewer than {m} rows", out.shape()),
            ));
        }
        None => {}
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let (kernel, tile) = kernel(gpu, variant, code, k, epilogue.code(), x, out)?;
    let in_idx = rows.input.map_or(x, Indices::tensor);
    let out_idx = rows.output.map_or(x, Indices::tensor);
    // Unused bindings take any buffer that is not the output.
    let (residual, emb) = match epilogue {
        Epilogue::GatedResidual { residual, emb, .. } => (residual, emb),
        Epilogue::SiluGated { gate } => (gate, x),
        _ => (x, x),
    };
    let mut n_offset = 0;
    for c in 0..weight.num_chunks() {
        let chunk_rows = weight.chunk_rows(c);
        let tiles_n = chunk_rows.div_ceil(tile);
        let params = LinearParams {
            m: u32_of(OP, m)?,
            n: u32_of(OP, chunk_rows)?,
            k: u32_of(OP, k)?,
            n_total: u32_of(OP, out.cols())?,
            n_offset: u32_of(OP, n_offset)?,
            has_bias: bias.is_some() as u32,
            tiles_n: u32_of(OP, tiles_n)?,
            has_in_idx: rows.input.is_some() as u32,
            has_out_idx: rows.output.is_some() as u32,
            rows_per_batch: u32_of(OP, rows_per_batch)?,
            emb_stride: u32_of(OP, emb_stride)?,
            gate_off: u32_of(OP, gate_off)?,
            out_col: u32_of(OP, out_col)?,
        };
        let b = match bias {
            Some(b) => b.arg()?,
            None => weight.chunk_arg(c),
        };
        let inputs = [
            x.arg()?,
            weight.chunk_arg(c),
            b,
            in_idx.arg()?,
            out_idx.arg()?,
            residual.arg()?,
            emb.arg()?,
        ];
        let wg = groups(m.div_ceil(tile) * tiles_n, 1)?;
        let bytes =
            x.dtype().bytes(m * k) + weight.dtype().bytes(chunk_rows * k) + out.dtype().bytes(m * chunk_rows);
        let cost = Cost::new(linear_flops(m, chunk_rows, k), bytes as f64);
        gpu.dispatch_costed(
            &kernel,
            &inputs,
            &[out.arg()?],
            bytemuck::bytes_of(&params),
            wg,
            cost,
        )?;
        n_offset += chunk_rows;
    }
    Ok(())
}

/// Multiply-adds ×2 of one linear call, for GFLOP/s figures.
pub fn linear_flops(m: usize, n: usize, k: usize) -> f64 {
    2.0 * m as f64 * n as f64 * k as f64
}
