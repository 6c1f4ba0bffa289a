//! 2-D convolution (`shaders/conv2d.wgsl`): PyTorch `Conv2d` on NCHW f32
//! activations, with f32, f16 or bf16 weights and bias.

use bytemuck::{Pod, Zeroable};

use super::{dtype_code, expect_dtype, groups, u32_of};
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Kernel, Tensor};

/// Output channels and pixels per invocation, the input-window capacity and
/// the workgroup size: the shader's CO_T, PX_T, WIN_MAX and WG.
const CO_T: usize = 8;
const PX_T: usize = 8;
const WIN_MAX: usize = 64;
const WG: usize = 64;

const OP: &str = "conv2d";

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Conv2dParams {
    batch: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
    out_h: u32,
    out_w: u32,
    pad: u32,
    groups_per_row: u32,
    groups: u32,
    tiles: u32,
    co_blocks: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PackParams {
    cout: u32,
    taps: u32,
    co_pad: u32,
    n: u32,
}

fn dims4(what: &str, t: &Tensor) -> Result<[usize; 4]> {
    let dims: [usize; 4] = t
        .shape()
        .try_into()
        .map_err(|_| Error::shape(OP, format!("{what} must have 4 dimensions, got {:?}", t.shape())))?;
    if dims.contains(&0) {
        return Err(Error::shape(
            OP,
            format!("{what} {:?} has an empty dimension", t.shape()),
        ));
    }
    Ok(dims)
}

/// Output size along one axis, or an error when the kernel does not fit.
fn out_size(axis: &str, size: usize, kernel: usize, stride: usize, padding: usize) -> Result<usize> {
    let padded = size + 2 * padding;
    if padded < kernel {
        return Err(Error::shape(
            OP,
            format!(
                "kernel {axis} {kernel} exceeds the padded input {axis} {padded} \
                 ({size} + 2 × padding {padding}); the output would be empty"
            ),
        ));
    }
    Ok((padded - kernel) / stride + 1)
}

/// `x` [B, Cin, H, W] (f32) convolved with `weight` [Cout, Cin, kh, kw]
/// (f32, f16 or bf16), plus `bias` [Cout] when given, with zero `padding` on
/// every side: [B, Cout, Hout, Wout] f32.
///
/// Each call first repacks the weights into a transient f32 buffer (see
/// [`pack`]); its cost is that of reading the weights once.
pub fn conv2d(
    gpu: &Gpu,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    expect_dtype(OP, x, &[DType::F32])?;
    dtype_code(OP, weight)?;
    let [batch, cin, h, w] = dims4("input", x)?;
    let [cout, w_cin, kh, kw] = dims4("weight", weight)?;
    if w_cin != cin {
        return Err(Error::shape(
            OP,
            format!(
                "weight {:?} expects {w_cin} input channels but the input {:?} has {cin}",
                weight.shape(),
                x.shape()
            ),
        ));
    }
    if stride == 0 {
        return Err(Error::shape(OP, "stride must be at least 1"));
    }
    if let Some(b) = bias {
        dtype_code(OP, b)?;
        if b.shape() != [cout] {
            return Err(Error::shape(
                OP,
                format!(
                    "bias must be [{cout}] (one per output channel), got {:?}",
                    b.shape()
                ),
            ));
        }
    }
    let out_h = out_size("height", h, kh, stride, padding)?;
    let out_w = out_size("width", w, kw, stride, padding)?;
    let window = (PX_T - 1) * stride + kw;
    if window > WIN_MAX {
        return Err(Error::shape(
            OP,
            format!(
                "kernel width {kw} at stride {stride} needs an input window of {window} \
                 values per row; the shader holds at most {WIN_MAX}"
            ),
        ));
    }

    let out = gpu.empty(&[batch, cout, out_h, out_w], DType::F32)?;
    let groups_per_row = out_w.div_ceil(PX_T);
    let pixel_groups = out_h * groups_per_row;
    let tiles = pixel_groups.div_ceil(WG);
    let co_blocks = cout.div_ceil(CO_T);
    u32_of(OP, x.numel())?;
    u32_of(OP, out.numel())?;
    u32_of(OP, weight.numel())?;
    let params = Conv2dParams {
        batch: u32_of(OP, batch)?,
        cin: u32_of(OP, cin)?,
        h: u32_of(OP, h)?,
        w: u32_of(OP, w)?,
        cout: u32_of(OP, cout)?,
        out_h: u32_of(OP, out_h)?,
        out_w: u32_of(OP, out_w)?,
        pad: u32_of(OP, padding)?,
        groups_per_row: u32_of(OP, groups_per_row)?,
        groups: u32_of(OP, pixel_groups)?,
        tiles: u32_of(OP, tiles)?,
        co_blocks: u32_of(OP, co_blocks)?,
    };
    let packed = pack(gpu, weight, bias, co_blocks * CO_T)?;
    let kernel = Kernel::new("conv2d")
        .constant("KH", u32_of(OP, kh)?)
        .constant("KW", u32_of(OP, kw)?)
        .constant("STRIDE", u32_of(OP, stride)?);
    gpu.dispatch(
        &kernel,
        &[x.arg()?, packed.arg()?],
        &[out.arg()?],
        bytemuck::bytes_of(&params),
        groups(batch * co_blocks * tiles, 1)?,
    )?;
    Ok(out)
}

/// The weights as f32 `[taps + 1, co_pad]` (the shader's `pack`): one row
/// per tap (ci, ky, kx) holding every output channel, zero past Cout, then
/// the bias row. The conv kernel then reads 4 channels with one vec4 load,
/// which matters because loads, not FMAs, bound it on lavapipe.
fn pack(gpu: &Gpu, weight: &Tensor, bias: Option<&Tensor>, co_pad: usize) -> Result<Tensor> {
    let cout = weight.shape()[0];
    let taps = weight.numel() / cout;
    let packed = gpu.empty(&[taps + 1, co_pad], DType::F32)?;
    let params = PackParams {
        cout: u32_of(OP, cout)?,
        taps: u32_of(OP, taps)?,
        co_pad: u32_of(OP, co_pad)?,
        n: u32_of(OP, packed.numel())?,
    };
    let kernel = Kernel::new("conv2d")
        .entry("pack")
        .constant("W_DTYPE", dtype_code(OP, weight)?)
        .constant("B_DTYPE", bias.map_or(Ok(0), |b| dtype_code(OP, b))?)
        .constant("HAS_BIAS", u32::from(bias.is_some()));
    // Without a bias the weight fills its binding; HAS_BIAS = 0 never reads it.
    gpu.dispatch(
        &kernel,
        &[weight.arg()?, bias.unwrap_or(weight).arg()?],
        &[packed.arg()?],
        bytemuck::bytes_of(&params),
        groups(packed.numel(), 256)?,
    )?;
    Ok(packed)
}
