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
    /// buffer, submits everything recorded and starts mapping it. Work
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
        Ok(self.map_submitted(staging, len))
    }

    /// Starts mapping `staging`, written by the latest submit.
    fn map_submitted(&self, staging: wgpu::Buffer, len: usize) -> PendingBytes {
        let (tx, rx) = std::sync::mpsc::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        PendingBytes {
            submission: self.last_submission(),
            staging,
            len,
            rx,
        }
    }

    /// Waits for a read-back's submit and returns its bytes.
    pub(crate) fn finish_read(&self, pending: PendingBytes) -> Result<Vec<u8>> {
        self.inner
            .device
            .poll(wgpu::PollType::Wait {
                submission_index: pending.submission,
                timeout: None,
            })
            .map_err(|e| Error::DeviceLost {
                message: e.to_string(),
            })?;
        self.check_lost()?;
        pending
            .rx
            .recv()
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

    /// Waits for the latest submit and returns the contents of a
    /// `MAP_READ` buffer it writes. The caller submits that work itself (a
    /// flush here would wait for the flush that caller is part of).
    pub(crate) fn map_read(&self, staging: &wgpu::Buffer) -> Result<Vec<u8>> {
        let len = staging.size() as usize;
        let pending = self.map_submitted(staging.clone(), len);
        self.finish_read(pending)
    }
}

/// A read-back whose copy is submitted and whose mapping is under way.
pub(crate) struct PendingBytes {
    staging: wgpu::Buffer,
    len: usize,
    submission: Option<wgpu::SubmissionIndex>,
    rx: std::sync::mpsc::Receiver<std::result::Result<(), wgpu::BufferAsyncError>>,
}
