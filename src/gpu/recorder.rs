//! Command recording. Kernels and uploads are appended to a list in call
//! order and submitted together in one command encoder at the next flush
//! (a read-back, an explicit `flush`, or when the list grows long), so a
//! forward pass costs one submit, not one per op.

use std::ops::Range;

use super::context::Gpu;
use super::pipelines::Kernel;
use super::profiler::{Cost, ProfileState, Record, Tag, Timer};
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
        tag: Tag,
    },
    /// A buffer copy (an upload's staging buffer into place, or a tensor
    /// into a read-back buffer).
    Copy {
        src: wgpu::Buffer,
        dst: wgpu::Buffer,
        size: u64,
    },
}

pub(crate) struct Recorder {
    entries: Vec<Entry>,
    params: Vec<u8>,
    align: u64,
    pub state: ProfileState,
    /// The latest submit, which a read-back waits for (and no later one).
    last_submission: Option<wgpu::SubmissionIndex>,
}

/// Past this many entries a flush happens on its own, bounding the memory
/// that pending bind groups and staging buffers hold.
const AUTO_FLUSH: usize = 4096;
/// The same while profiling: two timestamps per launch must fit one query
/// set (at most `wgpu::QUERY_SET_MAX_QUERIES`).
const AUTO_FLUSH_PROFILED: usize = 1024;

impl Recorder {
    pub fn new(align: u32) -> Self {
        Recorder {
            entries: Vec::new(),
            params: Vec::new(),
            align: align.max(16) as u64,
            state: ProfileState::default(),
            last_submission: None,
        }
    }
}

/// How `encode` times the launches it records.
#[derive(Clone, Copy)]
enum Stamps<'a> {
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
        let buffers: Vec<wgpu::Buffer> = inputs.iter().chain(outputs).map(|a| a.0.clone()).collect();
        let bytes = cost
            .bytes
            .unwrap_or_else(|| buffers.iter().map(|b| b.size() as f64).sum());
        let tag = Tag {
            family: kernel.shader,
            entry: kernel.entry,
            region: rec.state.region,
            step: rec.state.step,
            flops: cost.flops,
            bytes,
        };
        rec.state.count_dispatch();
        rec.entries.push(Entry::Dispatch {
            pipeline,
            layout,
            buffers,
            params: start..end,
            grid: [x, y, 1],
            tag,
        });
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

    /// Submits one command buffer, counting it.
    pub(crate) fn submit(&self, commands: wgpu::CommandBuffer) {
        let mut rec = self.recorder();
        rec.state.count_submit();
        rec.last_submission = Some(self.inner.queue.submit([commands]));
    }

    /// Submits everything recorded so far in one command buffer (timed
    /// launch by launch while a profile is being taken).
    pub fn flush(&self) -> Result<()> {
        // Threads sharing this Gpu record into one list, so a batch taken
        // here may hold another thread's work that its next batch depends
        // on (an upload, a kernel writing its input), and that thread's
        // read-back waits for the latest submit: batches must reach the
        // queue in the order they were taken, and a flush that finds the
        // list empty must wait for one under way.
        let _order = self.inner.flushing.lock().unwrap_or_else(|p| p.into_inner());
        self.check_lost()?;
        let (entries, params, timer) = {
            let mut rec = self.recorder();
            let timer = rec.state.profile.as_ref().map(|p| p.timer);
            (
                std::mem::take(&mut rec.entries),
                std::mem::take(&mut rec.params),
                timer,
            )
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
        let launches = entries
            .iter()
            .filter(|e| matches!(e, Entry::Dispatch { .. }))
            .count();
        // Unprofiled, or copies alone (a read-back): nothing to time.
        let Some(timer) = timer.filter(|_| launches > 0) else {
            self.scoped("running recorded kernels", || {
                let mut encoder = device.create_command_encoder(&Default::default());
                self.encode(&mut encoder, &entries, &uniforms, Stamps::None);
                self.submit(encoder.finish());
            })?;
            return self.check_lost();
        };
        let seconds = match timer {
            Timer::Timestamps { inside_passes } => self.timestamped(launches, |encoder, set| {
                let stamps = match inside_passes {
                    true => Stamps::InsidePass(set),
                    false => Stamps::PerPass(set),
                };
                self.encode(encoder, &entries, &uniforms, stamps);
            })?,
            Timer::WallClock => self.wall_clocked(entries.len(), |encoder, i| {
                self.encode(encoder, &entries[i..=i], &uniforms, Stamps::None)
            })?,
        };
        let tags = entries.iter().filter_map(|e| match e {
            Entry::Dispatch { tag, .. } => Some(tag),
            Entry::Copy { .. } => None,
        });
        // Wall-clock timing has one figure per entry, writes included.
        let seconds: Vec<f64> = match timer {
            Timer::WallClock => entries
                .iter()
                .zip(seconds)
                .filter(|(e, _)| matches!(e, Entry::Dispatch { .. }))
                .map(|(_, s)| s)
                .collect(),
            _ => seconds,
        };
        let records: Vec<Record> = tags
            .zip(seconds)
            .map(|(t, seconds)| Record {
                family: t.family,
                entry: t.entry,
                region: t.region,
                step: t.step,
                seconds,
                flops: t.flops,
                bytes: t.bytes,
            })
            .collect();
        if let Some(p) = &mut self.recorder().state.profile {
            p.records.extend(records);
        }
        self.check_lost()
    }

    /// Encodes `entries`: consecutive launches share a compute pass unless
    /// each needs its own for timestamps.
    fn encode(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        entries: &[Entry],
        uniforms: &wgpu::Buffer,
        stamps: Stamps,
    ) {
        let device = &self.inner.device;
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

    /// Flushes and waits until the device is idle.
    pub fn sync(&self) -> Result<()> {
        self.flush()?;
        self.wait_idle()
    }

    pub(crate) fn wait_idle(&self) -> Result<()> {
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::DeviceLost {
                message: e.to_string(),
            })?;
        self.check_lost()
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

    /// The latest submit.
    pub(crate) fn last_submission(&self) -> Option<wgpu::SubmissionIndex> {
        self.recorder().last_submission.clone()
    }
}
