//! Command recording. Kernels and uploads are appended to a list in call
//! order and submitted together in one command encoder at the next flush
//! (a read-back, an explicit `flush`, or when the list grows long), so a
//! forward pass costs one submit, not one per op.

use std::ops::Range;

use super::context::Gpu;
use super::pipelines::Kernel;
use super::tensor::Arg;
use crate::error::{Error, Result};

/// Fills the start of a buffer created with `mapped_at_creation` and unmaps it.
pub(crate) fn write_mapped(buffer: &wgpu::Buffer, bytes: &[u8]) -> Result<()> {
    let mut view = buffer
        .slice(..)
        .get_mapped_range_mut()
        .map_err(|e| Error::Validation {
            context: "writing a mapped buffer".into(),
            message: e.to_string(),
        })?;
    view.slice(..bytes.len()).copy_from_slice(bytes);
    drop(view);
    buffer.unmap();
    Ok(())
}

enum Entry {
    Dispatch {
        pipeline: wgpu::ComputePipeline,
        layout: wgpu::BindGroupLayout,
        buffers: Vec<wgpu::Buffer>,
        params: Range<u64>,
        grid: [u32; 3],
    },
    Write {
        src: wgpu::Buffer,
        dst: wgpu::Buffer,
        size: u64,
    },
}

pub(crate) struct Recorder {
    entries: Vec<Entry>,
    params: Vec<u8>,
    align: u64,
}

/// Past this many entries a flush happens on its own, bounding the memory
/// that pending bind groups and staging buffers hold.
const AUTO_FLUSH: usize = 4096;

impl Recorder {
    pub fn new(align: u32) -> Self {
        Recorder {
            entries: Vec::new(),
            params: Vec::new(),
            align: align.max(16) as u64,
        }
    }
}

impl Gpu {
    fn recorder(&self) -> std::sync::MutexGuard<'_, Recorder> {
        self.inner.recorder.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one kernel launch over `workgroups` workgroups. Counts above
    /// the per-dimension limit are folded into a 2-D grid; shaders recover
    /// the flat index with `flat_workgroup()` from common.wgsl.
    pub fn dispatch(
        &self,
        kernel: &Kernel,
        inputs: &[Arg<'_>],
        outputs: &[Arg<'_>],
        params: &[u8],
        workgroups: u32,
    ) -> Result<()> {
        let max = self.inner.limits.max_compute_workgroups_per_dimension;
        let x = workgroups.clamp(1, max);
        let y = workgroups.div_ceil(x);
        if y > max {
            return Err(Error::Limit {
                what: format!("{} launch of {workgroups} workgroups", kernel.shader),
                needed: workgroups as u64,
                max: max as u64 * max as u64,
                hint: String::new(),
            });
        }
        let (pipeline, layout) = self.pipeline(kernel, inputs.len(), outputs.len())?;
        let mut rec = self.recorder();
        let start = rec.params.len() as u64;
        rec.params.extend_from_slice(params);
        // Uniform bindings are whole 16-byte rows; the next one starts aligned.
        let end = start + (params.len() as u64).max(16).div_ceil(16) * 16;
        let next = end.div_ceil(rec.align) * rec.align;
        rec.params.resize(next as usize, 0);
        let buffers = inputs.iter().chain(outputs).map(|a| a.0.clone()).collect();
        rec.entries.push(Entry::Dispatch {
            pipeline,
            layout,
            buffers,
            params: start..end,
            grid: [x, y, 1],
        });
        let full = rec.entries.len() >= AUTO_FLUSH;
        drop(rec);
        if full {
            self.flush()?;
        }
        Ok(())
    }

    /// Records a write of `words` into the start of `dst`, ordered with
    /// the kernels around it.
    pub(crate) fn record_write(&self, dst: &wgpu::Buffer, words: &[u32]) -> Result<()> {
        let size = (words.len() * 4) as u64;
        if size == 0 {
            return Ok(());
        }
        let src = self.scoped("allocating an upload buffer", || {
            self.inner.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("upload"),
                size,
                usage: wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: true,
            })
        })?;
        write_mapped(&src, bytemuck::cast_slice(words))?;
        self.recorder().entries.push(Entry::Write {
            src,
            dst: dst.clone(),
            size,
        });
        Ok(())
    }

    /// Submits everything recorded so far in one command buffer.
    pub fn flush(&self) -> Result<()> {
        self.check_lost()?;
        let (entries, params) = {
            let mut rec = self.recorder();
            (std::mem::take(&mut rec.entries), std::mem::take(&mut rec.params))
        };
        if entries.is_empty() {
            return Ok(());
        }
        let device = &self.inner.device;
        let uniforms = self.scoped("allocating kernel parameters", || {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("params"),
                size: params.len().max(16) as u64,
                usage: wgpu::BufferUsages::UNIFORM,
                mapped_at_creation: true,
            })
        })?;
        write_mapped(&uniforms, &params)?;
        self.scoped("running recorded kernels", || {
            let mut encoder = device.create_command_encoder(&Default::default());
            let mut i = 0;
            while i < entries.len() {
                if let Entry::Write { src, dst, size } = &entries[i] {
                    encoder.copy_buffer_to_buffer(src, 0, dst, 0, *size);
                    i += 1;
                    continue;
                }
                let mut pass = encoder.begin_compute_pass(&Default::default());
                while let Some(Entry::Dispatch {
                    pipeline,
                    layout,
                    buffers,
                    params,
                    grid,
                }) = entries.get(i)
                {
                    let mut bind: Vec<wgpu::BindGroupEntry> = buffers
                        .iter()
                        .enumerate()
                        .map(|(b, buf)| wgpu::BindGroupEntry {
                            binding: b as u32,
                            resource: buf.as_entire_binding(),
                        })
                        .collect();
                    bind.push(wgpu::BindGroupEntry {
                        binding: buffers.len() as u32,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &uniforms,
                            offset: params.start,
                            size: std::num::NonZeroU64::new(params.end - params.start),
                        }),
                    });
                    let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: None,
                        layout,
                        entries: &bind,
                    });
                    pass.set_pipeline(pipeline);
                    pass.set_bind_group(0, &group, &[]);
                    pass.dispatch_workgroups(grid[0], grid[1], grid[2]);
                    i += 1;
                }
            }
            self.inner.queue.submit([encoder.finish()]);
        })?;
        self.check_lost()
    }

    /// Flushes and waits until the device is idle.
    pub fn sync(&self) -> Result<()> {
        self.flush()?;
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::DeviceLost {
                message: e.to_string(),
            })?;
        self.check_lost()
    }

    /// Copies the first `len` bytes of `buffer` to the host.
    pub(crate) fn read_buffer(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<u8>> {
        self.flush()?;
        let size = (len as u64).div_ceil(4) * 4;
        let device = &self.inner.device;
        let staging = self.scoped("reading a tensor back", || {
            let staging = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut encoder = device.create_command_encoder(&Default::default());
            encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, size);
            self.inner.queue.submit([encoder.finish()]);
            staging
        })?;
        let (tx, rx) = std::sync::mpsc::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.sync()?;
        rx.recv()
            .map_err(|_| Error::DeviceLost {
                message: "read-back never completed".into(),
            })?
            .map_err(|e| Error::Validation {
                context: "mapping a read-back buffer".into(),
                message: e.to_string(),
            })?;
        let view = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| Error::Validation {
                context: "mapping a read-back buffer".into(),
                message: e.to_string(),
            })?;
        Ok(view[..len].to_vec())
    }
}
