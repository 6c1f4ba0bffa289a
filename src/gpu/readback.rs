//! Reading buffers back to the host. A read-back's copy rides in the same
//! submit as the kernels before it, and waiting for it waits for that
//! submit only, so work recorded after it keeps the GPU busy meanwhile.

use super::context::Gpu;
use crate::error::{Error, Result};

impl Gpu {
    /// Copies the first `len` bytes of `buffer` to the host. The copy goes
    /// into the same submit as the recorded kernels.
    pub(crate) fn read_buffer(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<u8>> {
        let pending = self.start_read(buffer, len)?;
        self.finish_read(pending)
    }

    /// Records a copy of the first `len` bytes of `buffer` into a read-back
    /// buffer and flushes (submits, unless the recorder is held). Work
    /// recorded afterwards runs on while [`finish_read`](Self::finish_read)
    /// waits for this submit only.
    pub(crate) fn start_read(&self, buffer: &wgpu::Buffer, len: usize) -> Result<PendingBytes> {
        let size = (len as u64).div_ceil(4) * 4;
        let staging = self.scoped("reading a tensor back", || {
            self.inner.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        self.record_copy(buffer, &staging, size);
        self.flush()?;
        Ok(PendingBytes {
            staging,
            len,
            ticket: self.latest_ticket(),
        })
    }

    /// Submits a read-back's copy if it is still sealed, waits for its
    /// submit and returns its bytes.
    pub(crate) fn finish_read(&self, pending: PendingBytes) -> Result<Vec<u8>> {
        let submission = self.submit_through(pending.ticket)?;
        let (tx, rx) = std::sync::mpsc::channel();
        pending
            .staging
            .slice(..)
            .map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
        self.wait_for(submission)?;
        // The mapping resolves on a poll after its submit is done; the wait
        // above is normally that poll.
        let mapped = match rx.try_recv() {
            Ok(r) => Ok(r),
            Err(_) => {
                self.wait_idle()?;
                rx.recv()
            }
        };
        mapped
            .map_err(|_| Error::DeviceLost {
                message: "read-back never completed".into(),
            })?
            .map_err(|e| Error::Validation {
                context: "mapping a read-back buffer".into(),
                message: e.to_string(),
            })?;
        let view = pending
            .staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| Error::Validation {
                context: "mapping a read-back buffer".into(),
                message: e.to_string(),
            })?;
        Ok(view[..pending.len].to_vec())
    }

    /// Submits the recorded work, waits for it and returns the contents of
    /// a `MAP_READ` buffer the work writes.
    pub(crate) fn map_read(&self, staging: &wgpu::Buffer) -> Result<Vec<u8>> {
        self.flush()?;
        self.finish_read(PendingBytes {
            staging: staging.clone(),
            len: staging.size() as usize,
            // Written by a submit outside the sealed groups (a profiled
            // run's): everything sealed goes first, then the latest submit
            // is waited for.
            ticket: u64::MAX,
        })
    }
}

/// A read-back whose copy is recorded and flushed.
pub(crate) struct PendingBytes {
    staging: wgpu::Buffer,
    len: usize,
    /// The sealed group that carries the copy.
    ticket: u64,
}
