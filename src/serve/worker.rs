//! One GPU worker per adapter: a thread that owns its device and one
//! [`Pipeline`] per model (weights kept loaded), takes batches from the
//! queue and runs them step by step, so that it can report progress, make
//! previews and stop between steps (interrupt, every client gone, shutdown
//! deadline).

use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuOptions};
use crate::pipeline::{encode_png, GenerateRequest, Image, Pipeline, PipelineOptions};
use crate::sampling::gaussian_noise;

use super::queue::{Unit, UnitError, UnitOutput};
use super::{Adapters, ServeConfig, Shared};

/// What `/sdapi/v1/progress` reads.
#[derive(Default)]
pub(crate) struct WorkerStatus {
    pub ready: AtomicBool,
    adapter: Mutex<String>,
    /// Stop the running batch at its next step (`/sdapi/v1/interrupt`).
    pub interrupt: AtomicBool,
    /// A client asked for a preview: make one after the next step.
    pub want_preview: AtomicBool,
    running: Mutex<Option<Running>>,
}

/// The batch a worker is running.
#[derive(Debug, Clone)]
pub(crate) struct Running {
    pub started: Instant,
    /// Unix seconds when it started.
    pub timestamp: u64,
    /// Steps done.
    pub step: usize,
    pub steps: usize,
    pub images: usize,
    pub requests: usize,
    /// Base64 PNG of the latest preview.
    pub preview: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl WorkerStatus {
    pub fn adapter(&self) -> String {
        lock(&self.adapter).clone()
    }

    pub fn running(&self) -> Option<Running> {
        lock(&self.running).clone()
    }

    fn set_running(&self, running: Option<Running>) {
        *lock(&self.running) = running;
    }
}

/// The device options of each worker.
pub(crate) fn devices(config: &ServeConfig) -> Result<Vec<GpuOptions>> {
    let with = |adapter: Option<String>, index: Option<usize>| GpuOptions {
        adapter,
        adapter_index: index,
        ..config.gpu.clone()
    };
    Ok(match &config.adapters {
        Adapters::Default => vec![config.gpu.clone()],
        // A number is a position in `ras info`'s list: two cards of one
        // model share a name.
        Adapters::Named(names) => names
            .iter()
            .map(|n| match n.parse() {
                Ok(index) => with(None, Some(index)),
                Err(_) => with(Some(n.clone()), None),
            })
            .collect(),
        Adapters::All => {
            let adapters = crate::gpu::list_adapters();
            let native = |b: &str| ["Vulkan", "Metal", "Dx12"].contains(&b);
            let any_native = adapters.iter().any(|a| a.compute && native(&a.backend));
            let picked: Vec<GpuOptions> = adapters
                .iter()
                .enumerate()
                .filter(|(_, a)| a.compute && (native(&a.backend) || !any_native))
                .map(|(i, _)| with(None, Some(i)))
                .collect();
            if picked.is_empty() {
                return Err(Error::Invalid(
                    "--adapters all: no adapter with compute shaders (`ras info` lists them)".into(),
                ));
            }
            picked
        }
    })
}

/// The worker thread: reports whether its device opened, then serves
/// batches until the queue closes.
pub(crate) fn run(shared: Arc<Shared>, index: usize, options: GpuOptions, opened: mpsc::Sender<Result<()>>) {
    let status = &shared.workers[index];
    let gpu = match Gpu::new(&options).and_then(|gpu| crate::kernels::variant::variants(&gpu).map(|_| gpu)) {
        Ok(gpu) => gpu,
        Err(e) => {
            let _ = opened.send(Err(e));
            return;
        }
    };
    let adapter = gpu.adapter_name().to_owned();
    *lock(&status.adapter) = adapter.clone();
    let _ = opened.send(Ok(()));
    drop(opened);
    let options = PipelineOptions {
        keep_loaded: true,
        ..Default::default()
    };
    let mut pipelines: Vec<Pipeline> = shared
        .models
        .iter()
        .map(|m| Pipeline::new(&gpu, m.config.clone(), options.clone()))
        .collect();
    if shared.config.warmup {
        for (pipeline, model) in pipelines.iter_mut().zip(&shared.models) {
            let started = Instant::now();
            match warm_up(pipeline) {
                Ok(()) => tracing::info!(
                    adapter,
                    model = model.name,
                    seconds = started.elapsed().as_secs_f64(),
                    "warmed up"
                ),
                Err(e) => tracing::error!(adapter, model = model.name, "warm-up failed: {e}"),
            }
        }
    }
    status.ready.store(true, Ordering::SeqCst);
    tracing::info!(adapter, worker = index, "ready");
    while let Some(batch) = shared.queue.take(shared.config.max_batch) {
        let pipeline = &mut pipelines[batch[0].settings.model];
        // A panic is a bug, but one request's bug must not take the
        // worker (and with one GPU, the server) down with it.
        let ran = catch_unwind(AssertUnwindSafe(|| run_batch(&shared, status, pipeline, batch)));
        if ran.is_err() {
            tracing::error!(adapter, "a batch panicked; its requests got 500");
            status.set_running(None);
        }
        let m = gpu.memory();
        shared
            .metrics
            .gpu_memory(index, &adapter, m.live_bytes + m.cached_bytes + m.weight_bytes);
    }
    status.ready.store(false, Ordering::SeqCst);
}

/// Loads every component and compiles the kernels with one tiny two-step
/// generation (its second step a RAS step).
fn warm_up(pipeline: &mut Pipeline) -> Result<()> {
    let mut req = pipeline.request("warm-up");
    let side = 2 * pipeline.size_multiple();
    (req.width, req.height, req.steps) = (side, side, 2);
    req.ras = pipeline.ras_defaults(&req);
    pipeline.generate(&req, |_| ControlFlow::Continue(()))?;
    Ok(())
}

/// The engine request of a batch: the shared settings, each image's own
/// prompts, and each image's noise drawn from its own seed (so an image
/// does not depend on what it was batched with).
fn batch_request(pipeline: &Pipeline, batch: &[Unit]) -> GenerateRequest {
    let s = &batch[0].settings;
    let mut req = pipeline.request(&batch[0].prompt.prompt);
    req.negative_prompt = batch[0].prompt.negative_prompt.clone();
    (req.width, req.height, req.steps, req.guidance) = (s.width, s.height, s.steps, s.guidance);
    req.max_sequence_length = s.max_sequence_length;
    req.ras = s.ras.clone();
    req.precision = s.precision;
    req.num_images = batch.iter().map(|u| u.seeds.len()).sum();
    req.seed = batch[0].seeds[0];
    req.batch_prompts = batch
        .iter()
        .flat_map(|u| std::iter::repeat_n(u.prompt.clone(), u.seeds.len()))
        .collect();
    let per_image: usize = pipeline.latent_shape(&req)[1..].iter().product();
    req.latents_init = Some(
        batch
            .iter()
            .flat_map(|u| &u.seeds)
            .flat_map(|&seed| gaussian_noise(seed, per_image))
            .collect(),
    );
    req
}

fn run_batch(shared: &Shared, status: &WorkerStatus, pipeline: &mut Pipeline, batch: Vec<Unit>) {
    let started = Instant::now();
    let req = batch_request(pipeline, &batch);
    status.interrupt.store(false, Ordering::SeqCst);
    let outcome = run_job(shared, status, pipeline, &req, &batch);
    status.set_running(None);
    let run_s = started.elapsed().as_secs_f64();
    let smoothed = 0.7 * f64::from_bits(shared.batch_seconds.load(Ordering::Relaxed)) + 0.3 * run_s;
    shared.batch_seconds.store(smoothed.to_bits(), Ordering::Relaxed);
    shared.metrics.batch(req.num_images);
    let output = |u: &Unit, images: Vec<Image>, interrupted: bool| UnitOutput {
        images,
        interrupted,
        queued_s: started.duration_since(u.enqueued).as_secs_f64(),
        run_s,
        batch_images: req.num_images,
    };
    match outcome {
        Ok(Some(images)) => {
            shared.metrics.images(images.len());
            let mut images = images.into_iter();
            for u in batch {
                let mine: Vec<Image> = images.by_ref().take(u.seeds.len()).collect();
                let out = output(&u, mine, false);
                let _ = u.reply.send(Ok(out));
            }
        }
        Ok(None) if shared.cancel_running.load(Ordering::SeqCst) => {
            for u in batch {
                let _ = u.reply.send(Err(UnitError::ShuttingDown));
            }
        }
        Ok(None) => {
            for u in batch {
                let out = output(&u, Vec::new(), true);
                let _ = u.reply.send(Ok(out));
            }
        }
        // Together they do not fit where each alone may: run them one by one.
        Err(Error::MemoryBudget { .. }) if batch.len() > 1 => {
            for u in batch {
                run_batch(shared, status, pipeline, vec![u]);
            }
        }
        Err(e) => {
            let error = match e {
                Error::MemoryBudget { .. } | Error::Invalid(_) => UnitError::Refused(e.to_string()),
                _ => {
                    tracing::error!("a batch failed: {e}");
                    UnitError::Failed(e.to_string())
                }
            };
            for u in batch {
                let _ = u.reply.send(Err(error.clone()));
            }
        }
    }
}

/// The batch's images, or `None` when it was stopped between steps.
fn run_job(
    shared: &Shared,
    status: &WorkerStatus,
    pipeline: &mut Pipeline,
    req: &GenerateRequest,
    batch: &[Unit],
) -> Result<Option<Vec<Image>>> {
    // Running from the prompt encoding on, so that progress shows it and
    // an interrupt during it stops the batch before its first step.
    status.set_running(Some(Running {
        started: Instant::now(),
        timestamp: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        step: 0,
        steps: req.steps,
        images: req.num_images,
        requests: batch.len(),
        preview: None,
    }));
    let mut job = pipeline.start(req)?;
    while !job.is_done() {
        if status.interrupt.load(Ordering::SeqCst)
            || shared.cancel_running.load(Ordering::SeqCst)
            || batch.iter().all(Unit::abandoned)
        {
            return Ok(None);
        }
        let t = Instant::now();
        let info = job.step()?;
        shared.metrics.step(&info, req.num_images, t.elapsed());
        let preview = match status.want_preview.swap(false, Ordering::SeqCst) {
            true => Some(preview_png(&job.preview()?[0], info.step + 1)?),
            false => None,
        };
        if let Some(r) = lock(&status.running).as_mut() {
            r.step = info.step + 1;
            r.preview = preview.or(r.preview.take());
        }
    }
    Ok(Some(job.finish()?.images))
}

fn preview_png(image: &Image, step: usize) -> Result<String> {
    use base64::Engine;
    let mut png = Vec::new();
    encode_png(&mut png, image, &format!("ras preview after step {step}")).map_err(|e| Error::Io {
        what: "encoding a preview PNG".into(),
        source: e,
    })?;
    Ok(base64::engine::general_purpose::STANDARD.encode(png))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapters_map_to_one_device_each() {
        let with = |adapters| ServeConfig {
            adapters,
            ..ServeConfig::default()
        };
        let named = devices(&with(Adapters::Named(vec!["llvm".into(), "1".into()]))).unwrap();
        assert_eq!(named[0].adapter.as_deref(), Some("llvm"));
        assert_eq!(
            (named[1].adapter.as_deref(), named[1].adapter_index),
            (None, Some(1))
        );
        // Every native adapter once; GL only where there is no native one.
        let listed = crate::gpu::list_adapters();
        let all = devices(&with(Adapters::All)).unwrap();
        assert!(!all.is_empty());
        for d in &all {
            let a = &listed[d.adapter_index.expect("by position")];
            assert!(a.compute);
            assert!(
                a.backend != "Gl" || listed.iter().all(|b| b.backend == "Gl"),
                "{}",
                a.backend
            );
        }
    }
}
