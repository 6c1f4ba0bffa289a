//! Row gather and scatter by index (`shaders/rows.wgsl`): picking the active
//! tokens of a RAS step, writing their results back, embedding lookups.

use bytemuck::{Pod, Zeroable};

use super::{dtype_code, groups, storage_type, u32_of};
use crate::error::{Error, Result};
use crate::gpu::{Cost, DType, Gpu, Kernel, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RowsParams {
    total: u32,
    d: u32,
    row_start: u32,
    src_rows: u32,
    dst_cols: u32,
    col_off: u32,
}

/// Row indices on the GPU, with their maximum kept on the host so that every
/// use is bounds-checked before anything is recorded.
#[derive(Clone, Debug)]
pub struct Indices {
    tensor: Tensor,
    len: usize,
    max: Option<u32>,
}

impl Indices {
    pub fn upload(gpu: &Gpu, indices: &[u32]) -> Result<Indices> {
        let tensor = gpu.upload_u32(indices, &[indices.len()])?;
        Ok(Indices {
            tensor,
            len: indices.len(),
            max: indices.iter().copied().max(),
        })
    }

    pub(crate) fn tensor(&self) -> &Tensor {
        &self.tensor
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn check(&self, op: &'static str, rows: usize) -> Result<()> {
        match self.max {
            Some(m) if m as usize >= rows => Err(Error::IndexOutOfRange {
                op,
                index: m as u64,
                len: rows as u64,
            }),
            _ => Ok(()),
        }
    }
}

/// Rows `idx` of `src [rows, D]` (f32, f16 or bf16; may be split into
/// several buffers) → `[len(idx), D]` f32.
pub fn gather(gpu: &Gpu, src: &Tensor, idx: &Indices) -> Result<Tensor> {
    gather_as(gpu, src, idx, DType::F32)
}

/// [`gather`] into an f32 or f16 output (f16 activations).
pub fn gather_as(gpu: &Gpu, src: &Tensor, idx: &Indices, dtype: DType) -> Result<Tensor> {
    const OP: &str = "gather";
    let code = dtype_code(OP, src)?;
    let (d, rows) = (
        src.numel() / src.shape().first().copied().unwrap_or(1).max(1),
        src.shape()[0],
    );
    idx.check(OP, rows)?;
    let out = gpu.empty(&[idx.len(), d], dtype)?;
    if idx.is_empty() || d == 0 {
        return Ok(out);
    }
    let kernel = Kernel::new("rows")
        .entry("gather")
        .template("DST_T", storage_type(gpu, OP, &out)?)
        .constant("SRC_DTYPE", code);
    let mut row_start = 0;
    for c in 0..src.num_chunks() {
        let params = RowsParams {
            total: u32_of(OP, idx.len() * d)?,
            d: u32_of(OP, d)?,
            row_start: u32_of(OP, row_start)?,
            src_rows: u32_of(OP, src.chunk_rows(c))?,
            dst_cols: u32_of(OP, d)?,
            col_off: 0,
        };
        let inputs = [src.chunk_arg(c), idx.tensor.arg()?];
        // Each chunk's launch walks every index; picked rows move once.
        let moved = src.dtype().bytes(idx.len() * d) + 4 * (idx.len() * d) as u64;
        let cost = Cost::new(
            0.0,
            (moved + 4 * idx.len() as u64) as f64 / src.num_chunks() as f64,
        );
        gpu.dispatch_costed(
            &kernel,
            &inputs,
            &[out.arg()?],
            bytemuck::bytes_of(&params),
            groups(idx.len() * d, 256)?,
            cost,
        )?;
        row_start += src.chunk_rows(c);
    }
    Ok(out)
}

/// Writes row `i` of `src [len(idx), D]` to row `idx[i]` of `dst [rows, D]`,
/// in place; other rows of `dst` keep their values. Indices should be
/// distinct (which duplicate wins is unspecified).
pub fn scatter(gpu: &Gpu, src: &Tensor, idx: &Indices, dst: &Tensor) -> Result<()> {
    scatter_columns(gpu, src, idx, dst, 0)
}

/// [`scatter`] into columns `col .. col + D` of `dst [rows, C]`, with `src
/// [len(idx), D]` (keys into the first half of a fused K|V cache row); the
/// other columns keep their values.
pub fn scatter_columns(gpu: &Gpu, src: &Tensor, idx: &Indices, dst: &Tensor, col: usize) -> Result<()> {
    const OP: &str = "scatter";
    let src_code = dtype_code(OP, src)?;
    let dst_type = storage_type(gpu, OP, dst)?;
    let d = src.cols();
    if src.shape() != [idx.len(), d] || col + d > dst.cols() {
        return Err(Error::shape(
            OP,
            format!(
                "src {:?} should be [{}, D] with D + {col} ≤ the {} columns of dst",
                src.shape(),
                idx.len(),
                dst.cols()
            ),
        ));
    }
    idx.check(OP, dst.rows())?;
    if idx.is_empty() || d == 0 {
        return Ok(());
    }
    let params = RowsParams {
        total: u32_of(OP, idx.len() * d)?,
        d: u32_of(OP, d)?,
        row_start: 0,
        src_rows: 0,
        dst_cols: u32_of(OP, dst.cols())?,
        col_off: u32_of(OP, col)?,
    };
    let kernel = Kernel::new("rows")
        .entry("scatter")
        .template("DST_T", dst_type)
        .constant("SRC_DTYPE", src_code);
    let cost = Cost::new(
        0.0,
        (src.dtype().bytes(idx.len() * d) + dst.dtype().bytes(idx.len() * d) + 4 * idx.len() as u64) as f64,
    );
    gpu.dispatch_costed(
        &kernel,
        &[src.arg()?, idx.tensor.arg()?],
        &[dst.arg()?],
        bytemuck::bytes_of(&params),
        groups(idx.len() * d, 256)?,
        cost,
    )
}

/// `t` with its elements in `dtype` (f32 ↔ f16 activations); `t` itself
/// when it already is.
pub fn convert(gpu: &Gpu, t: &Tensor, dtype: DType) -> Result<Tensor> {
    const OP: &str = "convert";
    if t.dtype() == dtype {
        return Ok(t.clone());
    }
    let code = dtype_code(OP, t)?;
    if t.num_chunks() != 1 {
        return Err(Error::shape(
            OP,
            format!("{:?} is split over several buffers", t.shape()),
        ));
    }
    let out = gpu.empty(t.shape(), dtype)?;
    let n = t.numel();
    if n == 0 {
        return Ok(out);
    }
    let params = RowsParams {
        total: u32_of(OP, n)?,
        d: 1,
        row_start: 0,
        src_rows: 0,
        dst_cols: 1,
        col_off: 0,
    };
    let kernel = Kernel::new("rows")
        .entry("convert")
        .template("DST_T", storage_type(gpu, OP, &out)?)
        .constant("SRC_DTYPE", code);
    let cost = Cost::new(0.0, (t.dtype().bytes(n) + dtype.bytes(n)) as f64);
    // Binding 1 (the index list) is unused; any buffer fills it.
    gpu.dispatch_costed(
        &kernel,
        &[t.arg()?, t.arg()?],
        &[out.arg()?],
        bytemuck::bytes_of(&params),
        groups(n, 256)?,
        cost,
    )?;
    Ok(out)
}
