//! Submitting recorded work. A flush seals what was recorded into groups of
//! at most the submit budget's estimated time (see `gpu::budget`) and
//! submits them one command buffer each, in order. While the recorder is
//! held (`Gpu::held`) sealed groups wait instead, and a host hands them to
//! the GPU a budget at a time with `Gpu::submit_for` (the embedding API's
//! `Job::advance`). Each sealed group has a ticket, so a read-back whose
//! copy is in a group still waiting submits up to that group when the host
//! asks for its bytes, and then waits for that submit only.

use super::context::Gpu;
use super::profiler::{Record, Timer};
use super::recorder::{Entry, Recorder, Stamps};
use crate::error::{Error, Result};

/// One submit's worth of flushed work.
pub(crate) struct Sealed {
    entries: Vec<Entry>,
    /// The flush's parameter buffer, shared by its groups.
    uniforms: wgpu::Buffer,
    ms: f64,
    ticket: u64,
}

impl Recorder {
    fn push_sealed(&mut self, entries: Vec<Entry>, uniforms: &wgpu::Buffer, ms: f64) {
        self.sealed_ticket += 1;
        self.sealed.push_back(Sealed {
            entries,
            uniforms: uniforms.clone(),
            ms,
            ticket: self.sealed_ticket,
        });
    }
}

/// Submits remembered for read-backs waiting on them.
const RECENT: usize = 64;

impl Gpu {
    /// Submits everything recorded so far: as several command buffers when
    /// it is more than the submit budget, as one otherwise (timed launch by
    /// launch while a profile is being taken). While the recorder is held
    /// the work is sealed for `submit_for` instead.
    pub fn flush(&self) -> Result<()> {
        self.check_lost()?;
        if self.recorder().state.profile.is_some() {
            self.submit_through(u64::MAX)?;
            return self.flush_profiled();
        }
        self.seal()?;
        if self.recorder().held != Some(std::thread::current().id()) {
            self.submit_through(u64::MAX)?;
        }
        self.check_lost()
    }

    /// Flushes and waits until the device is idle.
    pub fn sync(&self) -> Result<()> {
        self.flush()?;
        self.wait_idle()
    }

    /// Runs `f` with the recorder held by this thread: its flushes seal
    /// their work without submitting it (another thread's flushes submit
    /// as usual, everything sealed before theirs included), in groups and
    /// launches of at most `ms` estimated milliseconds. What `f` leaves
    /// sealed goes out with the next unheld flush or with
    /// [`submit_for`](Self::submit_for).
    pub(crate) fn held<T>(&self, ms: f64, f: impl FnOnce() -> T) -> T {
        let budget = {
            let mut rec = self.recorder();
            rec.held = Some(std::thread::current().id());
            let budget = rec.budget;
            rec.budget.max_ms = budget.max_ms.min(ms);
            budget
        };
        let value = f();
        let mut rec = self.recorder();
        rec.held = None;
        rec.budget.max_ms = budget.max_ms;
        value
    }

    /// Submits sealed work, whole groups in order, until about `ms`
    /// estimated milliseconds went out (at least one group, so every call
    /// advances). Returns whether sealed work is left.
    pub(crate) fn submit_for(&self, ms: f64) -> Result<bool> {
        let mut spent = 0.0;
        loop {
            let next = self.recorder().sealed.front().map(|s| s.ms);
            match next {
                None => return Ok(false),
                Some(m) if spent > 0.0 && spent + m > ms => return Ok(true),
                Some(m) => spent += m,
            }
            self.submit_next()?;
        }
    }

    /// Waits for the latest submit of ours (not for a host's later work on
    /// the same device).
    pub(crate) fn wait_submitted(&self) -> Result<()> {
        let last = self.recorder().last_submission.clone();
        self.wait_for(last)
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

    /// Waits for one submit (`None`: for everything).
    pub(crate) fn wait_for(&self, submission: Option<wgpu::SubmissionIndex>) -> Result<()> {
        self.inner
            .device
            .poll(wgpu::PollType::Wait {
                submission_index: submission,
                timeout: None,
            })
            .map_err(|e| Error::DeviceLost {
                message: e.to_string(),
            })?;
        self.check_lost()
    }

    /// The ticket of the latest sealed group: a read-back's copy recorded
    /// before a flush is in it.
    pub(crate) fn latest_ticket(&self) -> u64 {
        self.recorder().sealed_ticket
    }

    /// Submits sealed groups up to and including `ticket` and returns the
    /// submit that carried it, when it is still remembered.
    pub(crate) fn submit_through(&self, ticket: u64) -> Result<Option<wgpu::SubmissionIndex>> {
        while self.recorder().submitted_ticket < ticket && self.submit_next()? {}
        let rec = self.recorder();
        Ok(rec
            .recent
            .iter()
            .find(|(t, _)| *t == ticket)
            .map(|(_, s)| s.clone())
            .or_else(|| rec.last_submission.clone()))
    }

    /// Submits one command buffer outside the recorder (texture writes,
    /// profiled runs), counting it.
    pub(crate) fn submit(&self, commands: wgpu::CommandBuffer) {
        let mut rec = self.recorder();
        rec.state.count_submit();
        rec.last_submission = Some(self.inner.queue.submit([commands]));
    }

    /// Moves what was recorded into sealed groups of at most the submit
    /// budget each (a launch alone may be more: it is not split further).
    fn seal(&self) -> Result<()> {
        // One lock from taking the entries to queueing their groups: two
        // threads sharing this Gpu must queue in the order they recorded,
        // since later work may depend on earlier (an upload, a recycled
        // buffer, a read-back's copy).
        let mut rec = self.recorder();
        if rec.entries.is_empty() {
            return Ok(());
        }
        let entries = std::mem::take(&mut rec.entries);
        let params = std::mem::take(&mut rec.params);
        let uniforms = self.uniforms(&params)?;
        let max_ms = rec.budget.max_ms;
        let mut group: Vec<Entry> = Vec::new();
        let mut spent = 0.0;
        for entry in entries {
            let ms = entry.ms();
            if !group.is_empty() && spent + ms > max_ms {
                rec.push_sealed(std::mem::take(&mut group), &uniforms, spent);
                spent = 0.0;
            }
            group.push(entry);
            spent += ms;
        }
        rec.push_sealed(group, &uniforms, spent);
        Ok(())
    }

    /// Submits the oldest sealed group; false when there is none.
    fn submit_next(&self) -> Result<bool> {
        // The recorder stays locked from taking the group to submitting it,
        // so two threads sharing this Gpu cannot swap the order of groups.
        let mut rec = self.recorder();
        let Some(group) = rec.sealed.pop_front() else {
            return Ok(false);
        };
        let device = &self.inner.device;
        let commands = self
            .scoped("running recorded kernels", || {
                let mut encoder = device.create_command_encoder(&Default::default());
                self.encode(&mut encoder, &group.entries, &group.uniforms, Stamps::None);
                encoder.finish()
            })
            .map_err(|e| self.culprit(&group, e))?;
        rec.state.count_submit();
        let submission = self.inner.queue.submit([commands]);
        rec.last_submission = Some(submission.clone());
        rec.submitted_ticket = group.ticket;
        rec.recent.push_back((group.ticket, submission));
        if rec.recent.len() > RECENT {
            rec.recent.pop_front();
        }
        Ok(true)
    }

    /// A validation error of a group, named after the launch that causes
    /// it: each entry is encoded again on its own (not submitted) until one
    /// fails. Only runs on the error path, so launches carry no labels.
    fn culprit(&self, group: &Sealed, error: Error) -> Error {
        if !matches!(error, Error::Validation { .. }) {
            return error;
        }
        let device = &self.inner.device;
        for entry in group.entries.chunks(1) {
            let alone = self.scoped("checking one launch", || {
                let mut encoder = device.create_command_encoder(&Default::default());
                self.encode(&mut encoder, entry, &group.uniforms, Stamps::None);
                encoder.finish()
            });
            if let Err(Error::Validation { message, .. }) = alone {
                return Error::Validation {
                    context: format!("running {}", entry[0].describe()),
                    message,
                };
            }
        }
        error
    }

    /// A uniform buffer holding `params`.
    fn uniforms(&self, params: &[u8]) -> Result<wgpu::Buffer> {
        let uniforms = self.scoped("allocating kernel parameters", || {
            self.inner.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("params"),
                size: params.len().max(16) as u64,
                usage: wgpu::BufferUsages::UNIFORM,
                mapped_at_creation: true,
            })
        })?;
        super::recorder::write_mapped(&uniforms, params)?;
        Ok(uniforms)
    }

    /// A profiled flush: everything recorded in one submit (a profile is a
    /// measurement, not a host's frame), each launch timed.
    fn flush_profiled(&self) -> Result<()> {
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
        let uniforms = self.uniforms(&params)?;
        let launches = entries
            .iter()
            .filter(|e| matches!(e, Entry::Dispatch { .. }))
            .count();
        // Copies alone (a read-back): nothing to time.
        let Some(timer) = timer.filter(|_| launches > 0) else {
            self.scoped("running recorded kernels", || {
                let mut encoder = self.inner.device.create_command_encoder(&Default::default());
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
        let records: Vec<Record> = entries
            .iter()
            .filter_map(|e| match e {
                Entry::Dispatch { tag, .. } => Some(tag),
                Entry::Copy { .. } => None,
            })
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
}
