//! GPU tensors: a buffer (or, for weights over the binding limit, several
//! buffers split along the first dimension), a shape and a dtype.
//!
//! Compute is f32. 16-bit tensors (f16, bf16) are stored as raw halves packed
//! two to a `u32` and unpacked in the shader, so adapters without SHADER_F16
//! run them too.

use std::sync::Arc;

use super::context::Gpu;
use super::pool::{rounded, Pool};
use super::recorder::write_mapped;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    U32,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::U32 => "u32",
        }
    }

    /// Little-endian values of this dtype widened to f32 (u32 converted).
    pub fn to_f32(self, bytes: &[u8]) -> Vec<f32> {
        match self {
            DType::F32 => bytemuck::pod_collect_to_vec(bytes),
            DType::U32 => bytes
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
                .collect(),
            DType::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            DType::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        }
    }

    /// Bytes for `n` elements, padded to whole 32-bit words.
    pub fn bytes(self, n: usize) -> u64 {
        (n * self.size()).div_ceil(4) as u64 * 4
    }
}

pub(crate) struct Chunk {
    pub buffer: wgpu::Buffer,
    /// Rows of dimension 0 held by this chunk.
    pub rows: usize,
}

pub(crate) struct Storage {
    pub chunks: Vec<Chunk>,
    /// Pooled storage goes back to the pool on drop; weights are freed.
    pool: Option<Arc<Pool>>,
    weight_bytes: u64,
    stats: Arc<Pool>,
}

impl Drop for Storage {
    fn drop(&mut self) {
        match &self.pool {
            Some(pool) => {
                for c in self.chunks.drain(..) {
                    pool.give_back(c.buffer);
                }
            }
            None => self.stats.note_weight(-(self.weight_bytes as i64)),
        }
    }
}

/// A GPU tensor. Cloning shares the buffer.
#[derive(Clone)]
pub struct Tensor {
    pub(crate) storage: Arc<Storage>,
    shape: Vec<usize>,
    dtype: DType,
}

/// A read-back under way (see [`Gpu::read_f32_async`]).
pub struct PendingRead {
    bytes: super::readback::PendingBytes,
    dtype: DType,
}

/// One storage buffer bound to a kernel, with the tensor's shape and type
/// for error messages.
pub struct Arg<'a> {
    pub(crate) buffer: &'a wgpu::Buffer,
    pub(crate) shape: &'a [usize],
    pub(crate) dtype: DType,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?}, {})", self.shape, self.dtype.name())
    }
}

impl Tensor {
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Size of the last dimension.
    pub fn cols(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }

    /// Product of all but the last dimension.
    pub fn rows(&self) -> usize {
        self.numel() / self.cols().max(1)
    }

    pub fn num_chunks(&self) -> usize {
        self.storage.chunks.len()
    }

    /// Rows of dimension 0 in chunk `i`. A single-buffer tensor holds all
    /// of them whatever its view's shape; split tensors keep dimension 0
    /// through reshapes.
    pub fn chunk_rows(&self, i: usize) -> usize {
        match self.num_chunks() {
            1 => self.shape.first().copied().unwrap_or(1),
            _ => self.storage.chunks[i].rows,
        }
    }

    /// The same storage seen with another shape of equal size.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != self.numel() || (self.num_chunks() > 1 && shape.first() != self.shape.first()) {
            return Err(Error::shape("reshape", format!("{:?} -> {shape:?}", self.shape)));
        }
        Ok(Tensor {
            storage: self.storage.clone(),
            shape: shape.to_vec(),
            dtype: self.dtype,
        })
    }

    /// The single buffer of this tensor, for binding to a kernel.
    pub fn arg(&self) -> Result<Arg<'_>> {
        match self.storage.chunks.as_slice() {
            [c] => Ok(Arg {
                buffer: &c.buffer,
                shape: &self.shape,
                dtype: self.dtype,
            }),
            _ => Err(Error::Invalid(format!(
                "tensor {:?} is split into {} buffers; this operation needs it in one",
                self.shape,
                self.num_chunks()
            ))),
        }
    }

    pub fn chunk_arg(&self, i: usize) -> Arg<'_> {
        Arg {
            buffer: &self.storage.chunks[i].buffer,
            shape: &self.shape,
            dtype: self.dtype,
        }
    }
}

const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

impl Gpu {
    fn check_size(&self, what: &str, bytes: u64, max: u64) -> Result<()> {
        if bytes > max {
            return Err(Error::Limit {
                what: format!("{what} ({bytes} bytes)"),
                needed: bytes,
                max,
                hint: "; use a smaller size or a GPU with larger buffer limits".into(),
            });
        }
        Ok(())
    }

    fn create_buffer(&self, size: u64, mapped: bool, context: &str) -> Result<wgpu::Buffer> {
        self.check_size(context, size, self.inner.limits.max_buffer_size)?;
        self.inner.pool.reserve(size, self.memory_budget(), context)?;
        self.scoped(context, || {
            self.inner.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size,
                usage: USAGE,
                mapped_at_creation: mapped,
            })
        })
    }

    /// An uninitialised activation tensor from the pool (NaN-filled when the
    /// device was opened with `poison`).
    pub fn empty(&self, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let size = rounded(dtype.bytes(n));
        self.check_size(
            &format!("a {shape:?} {} tensor", dtype.name()),
            size,
            self.inner.max_binding,
        )?;
        let pool = &self.inner.pool;
        let buffer = match pool.take(size) {
            Some(b) => b,
            None => self.create_buffer(size, false, "allocating an activation buffer")?,
        };
        pool.note_live(size);
        if pool.poison {
            self.record_write(&buffer, &vec![0x7fc0_0000u32; (size / 4) as usize])?;
        }
        let storage = Storage {
            chunks: vec![Chunk {
                buffer,
                rows: shape.first().copied().unwrap_or(1),
            }],
            pool: Some(pool.clone()),
            weight_bytes: 0,
            stats: pool.clone(),
        };
        Ok(Tensor {
            storage: Arc::new(storage),
            shape: shape.to_vec(),
            dtype,
        })
    }

    /// An activation tensor holding `data`. The copy is ordered with the
    /// recorded kernels, so recycled buffers are safe.
    pub fn upload_f32(&self, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        self.upload_bytes(bytemuck::cast_slice(data), shape, DType::F32)
    }

    pub fn upload_u32(&self, data: &[u32], shape: &[usize]) -> Result<Tensor> {
        self.upload_bytes(bytemuck::cast_slice(data), shape, DType::U32)
    }

    pub fn upload_bytes(&self, bytes: &[u8], shape: &[usize], dtype: DType) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if bytes.len() != n * dtype.size() {
            return Err(Error::shape(
                "upload",
                format!("{} bytes for {shape:?} {}", bytes.len(), dtype.name()),
            ));
        }
        let t = self.empty(shape, dtype)?;
        let mut words = vec![0u32; dtype.bytes(n) as usize / 4];
        bytemuck::cast_slice_mut::<u32, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        self.record_write(&t.storage.chunks[0].buffer, &words)?;
        Ok(t)
    }

    /// A weight tensor (not pooled). When it exceeds the storage-binding
    /// limit it is split along dimension 0 into several buffers; kernels
    /// that accept weights (linear, gather) walk the chunks.
    pub fn upload_weight(&self, bytes: &[u8], shape: &[usize], dtype: DType) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if bytes.len() != n * dtype.size() || shape.is_empty() {
            return Err(Error::shape(
                "upload_weight",
                format!("{} bytes for {shape:?} {}", bytes.len(), dtype.name()),
            ));
        }
        let rows = shape[0];
        let row_bytes = (n / rows.max(1)) * dtype.size();
        // Chunks must start on a 32-bit word, so 16-bit rows of odd length
        // split at even row counts.
        let step = if row_bytes.is_multiple_of(4) { 1 } else { 2 };
        let max_rows = (self.inner.max_binding as usize / row_bytes.max(1)) / step * step;
        if max_rows == 0 {
            return Err(Error::Limit {
                what: format!("one row of weight {shape:?}"),
                needed: (row_bytes * step) as u64,
                max: self.inner.max_binding,
                hint: String::new(),
            });
        }
        let mut chunks = Vec::new();
        let mut total = 0;
        for start in (0..rows.max(1)).step_by(max_rows) {
            let count = max_rows.min(rows - start);
            let part = &bytes[start * row_bytes..(start + count) * row_bytes];
            let size = rounded(part.len() as u64);
            let buffer = self.create_buffer(size, true, "uploading a weight")?;
            write_mapped(&buffer, part)?;
            total += size;
            chunks.push(Chunk { buffer, rows: count });
        }
        let pool = self.inner.pool.clone();
        pool.note_weight(total as i64);
        let storage = Storage {
            chunks,
            pool: None,
            weight_bytes: total,
            stats: pool,
        };
        Ok(Tensor {
            storage: Arc::new(storage),
            shape: shape.to_vec(),
            dtype,
        })
    }

    pub fn upload_weight_f32(&self, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        self.upload_weight(bytemuck::cast_slice(data), shape, DType::F32)
    }

    /// Reads a tensor back as f32 (16-bit dtypes are widened, u32 is converted).
    pub fn read_f32(&self, t: &Tensor) -> Result<Vec<f32>> {
        Ok(t.dtype.to_f32(&self.read_bytes(t)?))
    }

    /// Starts reading `t` back: submits the work recorded so far (with the
    /// copy) and returns at once, so the host can record and submit more
    /// work while the values travel; [`wait_read`](Self::wait_read) waits
    /// for this submit only. For tensors in one buffer.
    pub fn read_f32_async(&self, t: &Tensor) -> Result<PendingRead> {
        self.start_tensor_read(t)
    }

    fn start_tensor_read(&self, t: &Tensor) -> Result<PendingRead> {
        if t.num_chunks() != 1 {
            return Err(Error::Invalid(format!(
                "read_f32_async reads tensors in one buffer; {:?} is split in {}",
                t.shape,
                t.num_chunks()
            )));
        }
        let bytes = self.start_read(&t.storage.chunks[0].buffer, t.dtype.bytes(t.numel()) as usize)?;
        Ok(PendingRead {
            bytes,
            dtype: t.dtype,
        })
    }

    /// The values of a read started with [`read_f32_async`](Self::read_f32_async).
    pub fn wait_read(&self, pending: PendingRead) -> Result<Vec<f32>> {
        Ok(pending.dtype.to_f32(&self.finish_read(pending.bytes)?))
    }

    /// [`read_f32_async`](Self::read_f32_async) for a u32 tensor; the
    /// values come with [`wait_read_u32`](Self::wait_read_u32).
    pub fn read_u32_async(&self, t: &Tensor) -> Result<PendingRead> {
        if t.dtype != DType::U32 {
            return Err(Error::DType {
                op: "read_u32_async",
                dtype: t.dtype.name().into(),
                message: "tensor is not u32".into(),
            });
        }
        self.start_tensor_read(t)
    }

    pub fn wait_read_u32(&self, pending: PendingRead) -> Result<Vec<u32>> {
        Ok(bytemuck::pod_collect_to_vec(&self.finish_read(pending.bytes)?))
    }

    pub fn read_u32(&self, t: &Tensor) -> Result<Vec<u32>> {
        if t.dtype != DType::U32 {
            return Err(Error::DType {
                op: "read_u32",
                dtype: t.dtype.name().into(),
                message: "tensor is not u32".into(),
            });
        }
        Ok(bytemuck::pod_collect_to_vec(&self.read_bytes(t)?))
    }

    /// The tensor's raw bytes (exactly `numel * dtype.size()`).
    pub fn read_bytes(&self, t: &Tensor) -> Result<Vec<u8>> {
        let row_bytes = (t.numel() / t.shape.first().copied().unwrap_or(1).max(1)) * t.dtype.size();
        let mut out = Vec::with_capacity(t.numel() * t.dtype.size());
        for c in &t.storage.chunks {
            let len = if t.num_chunks() == 1 {
                t.numel() * t.dtype.size()
            } else {
                c.rows * row_bytes
            };
            out.extend_from_slice(&self.read_buffer(&c.buffer, len)?);
        }
        Ok(out)
    }
}
