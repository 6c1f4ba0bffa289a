//! Command recording. Kernels and uploads are appended to a list in call
//! order and submitted at the next flush (a read-back, an explicit `flush`,
//! or when the list grows long), so a forward pass costs a few submits, not
//! one per op. How many: at most the submit budget's worth of estimated
//! work each (see `gpu::budget` and `gpu::submit`); a launch larger than
//! the budget is recorded as several launches over consecutive ranges of
//! its workgroups, which `flat_workgroup()` in common.wgsl offsets by the
//! range's start.

use std::collections::VecDeque;
use std::ops::Range;

use super::budget::SubmitBudget;
use super::context::Gpu;
use super::pipelines::Kernel;
use super::profiler::{Cost, ProfileState, Tag};
use super::submit::Sealed;
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

pub(crate) enum Entry {
    Dispatch {
        pipeline: wgpu::ComputePipeline,
        layout: wgpu::BindGroupLayout,
        buffers: Vec<wgpu::Buffer>,
        params: Range<u64>,
        /// Where the launch's first workgroup index (16 bytes) sits in the
        /// same uniform buffer; offset 0 holds zero for unsplit launches.
        split: u64,
        grid: [u32; 3],
        tag: Tag,
        /// Estimated milliseconds (see `SubmitBudget`).
        ms: f64,
        /// Shapes and types of the bound tensors, inputs then outputs,
        /// to name the launch in a validation error.
        args: Vec<(Vec<usize>, &'static str)>,
        inputs: usize,
    },
    /// A buffer copy (an upload's staging buffer into place, or a tensor
    /// into a read-back buffer).
    Copy {
        src: wgpu::Buffer,
        dst: wgpu::Buffer,
        size: u64,
    },
}

impl Entry {
    /// The launch as a person would name it: `kernel linear/main over
    /// [77, 64] f32, [64, 64] f16 → [77, 64] f32 (12 workgroups)`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Entry::Dispatch {
                tag,
                args,
                inputs,
                grid,
                ..
            } => {
                let list = |a: &[(Vec<usize>, &str)]| {
                    a.iter()
                        .map(|(shape, dtype)| format!("{shape:?} {dtype}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                format!(
                    "kernel {}/{} over {} → {} ({} workgroups)",
                    tag.family,
                    tag.entry,
                    list(&args[..*inputs]),
                    list(&args[*inputs..]),
                    grid[0] * grid[1] * grid[2]
                )
            }
            Entry::Copy { size, .. } => format!("a buffer copy of {size} bytes"),
        }
    }

    pub(crate) fn ms(&self) -> f64 {
        match self {
            Entry::Dispatch { ms, .. } => *ms,
            Entry::Copy { .. } => 0.0,
        }
    }
}

pub(crate) struct Recorder {
    pub entries: Vec<Entry>,
    pub params: Vec<u8>,
    align: u64,
    pub state: ProfileState,
    pub budget: SubmitBudget,
    /// Flushed work not submitted yet, oldest first: one submit each.
    pub sealed: VecDeque<Sealed>,
    /// The thread whose flushes seal without submitting (see `Gpu::held`).
    pub held: Option<std::thread::ThreadId>,
    /// Tickets of the latest sealed and the latest submitted work.
    pub sealed_ticket: u64,
    pub submitted_ticket: u64,
    /// Recent submits by ticket, so a read-back waits for its own only.
    pub recent: VecDeque<(u64, wgpu::SubmissionIndex)>,
    /// The latest submit.
    pub last_submission: Option<wgpu::SubmissionIndex>,
}

/// Past this many entries a flush happens on its own, bounding the memory
/// that pending bind groups and staging buffers hold.
const AUTO_FLUSH: usize = 4096;
/// The same while profiling: two timestamps per launch must fit one query
/// set (at most `wgpu::QUERY_SET_MAX_QUERIES`).
const AUTO_FLUSH_PROFILED: usize = 1024;

impl Recorder {
    pub fn new(align: u32, budget: SubmitBudget) -> Self {
        Recorder {
            entries: Vec::new(),
            params: Vec::new(),
            align: align.max(16) as u64,
            state: ProfileState::default(),
            budget,
            sealed: VecDeque::new(),
            held: None,
            sealed_ticket: 0,
            submitted_ticket: 0,
            recent: VecDeque::new(),
            last_submission: None,
        }
    }

    /// Appends a uniform block, aligned for binding at its own offset.
    fn push_uniform(&mut self, bytes: &[u8]) -> Range<u64> {
        if self.params.is_empty() {
            // The zero first-workgroup block every unsplit launch binds.
            self.params.resize(self.align as usize, 0);
        }
        let start = self.params.len() as u64;
        self.params.extend_from_slice(bytes);
        // Uniform bindings are whole 16-byte rows; the next one starts aligned.
        let end = start + (bytes.len() as u64).max(16).div_ceil(16) * 16;
        let next = end.div_ceil(self.align) * self.align;
        self.params.resize(next as usize, 0);
        start..end
    }
}

/// How `encode` times the launches it records.
#[derive(Clone, Copy)]
pub(crate) enum Stamps<'a> {
    None,
    /// Timestamps 2i and 2i+1 around launch i, inside one pass.
    InsidePass(&'a wgpu::QuerySet),
    /// One pass per launch, timed at its beginning and end.
    PerPass(&'a wgpu::QuerySet),
}

impl Gpu {
    pub(crate) fn recorder(&self) -> std::sync::MutexGuard<'_, Recorder> {
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
        self.dispatch_costed(kernel, inputs, outputs, params, workgroups, Cost::default())
    }

    /// [`dispatch`](Self::dispatch) with the launch's FLOPs and bytes for
    /// the profiler.
    pub fn dispatch_costed(
        &self,
        kernel: &Kernel,
        inputs: &[Arg<'_>],
        outputs: &[Arg<'_>],
        params: &[u8],
        workgroups: u32,
        cost: Cost,
    ) -> Result<()> {
        let max = self.inner.limits.max_compute_workgroups_per_dimension;
        let workgroups = workgroups.max(1);
        if workgroups.div_ceil(max) > max {
            return Err(Error::Limit {
                what: format!("{} launch of {workgroups} workgroups", kernel.shader),
                needed: workgroups as u64,
                max: max as u64 * max as u64,
                hint: String::new(),
            });
        }
        let (pipeline, layout) = self.pipeline(kernel, inputs.len(), outputs.len())?;
        let buffers: Vec<wgpu::Buffer> = inputs.iter().chain(outputs).map(|a| a.buffer.clone()).collect();
        let args: Vec<(Vec<usize>, &'static str)> = inputs
            .iter()
            .chain(outputs)
            .map(|a| (a.shape.to_vec(), a.dtype.name()))
            .collect();
        let bytes = cost
            .bytes
            .unwrap_or_else(|| buffers.iter().map(|b| b.size() as f64).sum());
        let mut rec = self.recorder();
        let params = rec.push_uniform(params);
        let ms = rec.budget.estimate_ms(cost.flops, bytes);
        let (chunk, count) = rec.budget.chunks(workgroups, ms, max);
        for c in 0..count {
            let first = c * chunk;
            let n = chunk.min(workgroups - first);
            let share = n as f64 / workgroups as f64;
            let split = match first {
                0 => 0,
                _ => rec.push_uniform(bytemuck::bytes_of(&[first, 0, 0, 0])).start,
            };
            let tag = Tag {
                family: kernel.shader,
                entry: kernel.entry,
                region: rec.state.region,
                step: rec.state.step,
                flops: cost.flops * share,
                bytes: bytes * share,
            };
            rec.state.count_dispatch();
            let x = n.min(max);
            rec.entries.push(Entry::Dispatch {
                pipeline: pipeline.clone(),
                layout: layout.clone(),
                buffers: buffers.clone(),
                params: params.clone(),
                split,
                grid: [x, n.div_ceil(x), 1],
                tag,
                ms: ms * share,
                args: args.clone(),
                inputs: inputs.len(),
            });
        }
        let limit = match rec.state.profile {
            Some(_) => AUTO_FLUSH_PROFILED,
            None => AUTO_FLUSH,
        };
        let full = rec.entries.len() >= limit;
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
        self.record_copy(&src, dst, size);
        Ok(())
    }

    /// Encodes `entries`: consecutive launches share a compute pass unless
    /// each needs its own for timestamps.
    pub(crate) fn encode(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        entries: &[Entry],
        uniforms: &wgpu::Buffer,
        stamps: Stamps,
    ) {
        let device = &self.inner.device;
        let split_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("first workgroup"),
            layout: &self.split_layout(),
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: uniforms,
                    offset: 0,
                    size: std::num::NonZeroU64::new(16),
                }),
            }],
        });
        let mut launch = 0u32;
        let mut i = 0;
        while i < entries.len() {
            if let Entry::Copy { src, dst, size } = &entries[i] {
                encoder.copy_buffer_to_buffer(src, 0, dst, 0, *size);
                i += 1;
                continue;
            }
            let timestamp_writes = match stamps {
                Stamps::PerPass(set) => Some(wgpu::ComputePassTimestampWrites {
                    query_set: set,
                    beginning_of_pass_write_index: Some(2 * launch),
                    end_of_pass_write_index: Some(2 * launch + 1),
                }),
                _ => None,
            };
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes,
            });
            while let Some(Entry::Dispatch {
                pipeline,
                layout,
                buffers,
                params,
                split,
                grid,
                ..
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
                        buffer: uniforms,
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
                pass.set_bind_group(1, &split_group, &[*split as u32]);
                if let Stamps::InsidePass(set) = stamps {
                    pass.write_timestamp(set, 2 * launch);
                }
                pass.dispatch_workgroups(grid[0], grid[1], grid[2]);
                if let Stamps::InsidePass(set) = stamps {
                    pass.write_timestamp(set, 2 * launch + 1);
                }
                launch += 1;
                i += 1;
                if let Stamps::PerPass(_) = stamps {
                    break;
                }
            }
        }
    }

    /// Records a copy of `size` bytes from the start of `src` to `dst`,
    /// ordered with the kernels around it.
    pub(crate) fn record_copy(&self, src: &wgpu::Buffer, dst: &wgpu::Buffer, size: u64) {
        self.recorder().entries.push(Entry::Copy {
            src: src.clone(),
            dst: dst.clone(),
            size,
        });
    }
}
