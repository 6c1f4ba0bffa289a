//! The bounded FIFO in front of the GPU workers. A request becomes one
//! unit per iteration (`n_iter`); a worker takes the oldest live unit and
//! every later unit with the same [`Settings`] while the batch has room, so
//! requests that wait together run together, each with its own prompt and
//! seeds. A unit whose client went away (its reply receiver dropped) is
//! skipped.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::models::Precision;
use crate::pipeline::{BatchPrompt, Image};
use crate::ras::RasConfig;

/// Everything images of one batch must share.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    /// Index into the server's models.
    pub model: usize,
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    pub guidance: f32,
    pub max_sequence_length: usize,
    pub ras: RasConfig,
    pub precision: Precision,
    /// Lumina batches share one prompt pair (see `GenerateRequest::batch_prompts`).
    pub shared_prompt: Option<BatchPrompt>,
}

/// What a unit's request gets back.
#[derive(Debug)]
pub(crate) struct UnitOutput {
    pub images: Vec<Image>,
    /// Stopped by `/sdapi/v1/interrupt` or shutdown before it finished.
    pub interrupted: bool,
    /// Seconds from enqueue to the start of its batch, and of the batch's run.
    pub queued_s: f64,
    pub run_s: f64,
    /// Images in the batch it ran in (its own and others').
    pub batch_images: usize,
}

#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum UnitError {
    /// The request cannot run as given (e.g. over the memory budget).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
    #[error("the server is shutting down; retry on another instance")]
    ShuttingDown,
}

pub(crate) type Reply = Result<UnitOutput, UnitError>;

pub(crate) struct Unit {
    /// Which request it belongs to (counts the requests waiting).
    pub request: u64,
    pub settings: Settings,
    pub prompt: BatchPrompt,
    pub seeds: Vec<u64>,
    pub enqueued: Instant,
    pub reply: oneshot::Sender<Reply>,
}

impl Unit {
    /// The client is gone: nobody will read the result.
    pub fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }
}

pub(crate) struct Queue {
    state: Mutex<State>,
    wake: Condvar,
    max_requests: usize,
}

struct State {
    units: VecDeque<Unit>,
    closed: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    Full,
    Closed,
}

impl Queue {
    /// At most `max_requests` requests waiting (running ones not counted).
    pub fn new(max_requests: usize) -> Queue {
        Queue {
            state: Mutex::new(State {
                units: VecDeque::new(),
                closed: false,
            }),
            wake: Condvar::new(),
            max_requests,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A worker that panicked mid-take leaves the queue consistent (every
        // change is one VecDeque call), so the poison is not contagious.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues all units of one request, or none.
    pub fn push(&self, units: Vec<Unit>) -> Result<(), PushError> {
        let mut s = self.lock();
        if s.closed {
            return Err(PushError::Closed);
        }
        s.units.retain(|u| !u.abandoned());
        if waiting_requests(&s.units) >= self.max_requests {
            return Err(PushError::Full);
        }
        s.units.extend(units);
        drop(s);
        self.wake.notify_all();
        Ok(())
    }

    /// Requests waiting (not yet taken by a worker).
    pub fn depth(&self) -> usize {
        waiting_requests(&self.lock().units)
    }

    /// Blocks until a batch is ready (up to `max_images` images of one
    /// settings, at least one unit) or the queue is closed (`None`).
    pub fn take(&self, max_images: usize) -> Option<Vec<Unit>> {
        let mut s = self.lock();
        loop {
            if s.closed {
                return None;
            }
            s.units.retain(|u| !u.abandoned());
            if let Some(first) = s.units.pop_front() {
                let mut images = first.seeds.len();
                let mut batch = vec![first];
                let mut i = 0;
                while i < s.units.len() {
                    let u = &s.units[i];
                    if u.settings == batch[0].settings && images + u.seeds.len() <= max_images {
                        images += u.seeds.len();
                        batch.push(s.units.remove(i).expect("index in range"));
                    } else {
                        i += 1;
                    }
                }
                return Some(batch);
            }
            s = self.wake.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Refuses new units, answers the waiting ones with `ShuttingDown` and
    /// wakes the workers (whose `take` then returns `None`).
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        for u in s.units.drain(..) {
            let _ = u.reply.send(Err(UnitError::ShuttingDown));
        }
        drop(s);
        self.wake.notify_all();
    }
}

fn waiting_requests(units: &VecDeque<Unit>) -> usize {
    let mut ids: Vec<u64> = units.iter().map(|u| u.request).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(width: usize) -> Settings {
        Settings {
            model: 0,
            width,
            height: 64,
            steps: 4,
            guidance: 7.0,
            max_sequence_length: 256,
            ras: RasConfig::sd3_example(4),
            precision: Precision::F32,
            shared_prompt: None,
        }
    }

    fn unit(request: u64, width: usize, images: usize) -> (Unit, oneshot::Receiver<Reply>) {
        let (tx, rx) = oneshot::channel();
        let u = Unit {
            request,
            settings: settings(width),
            prompt: BatchPrompt {
                prompt: format!("request {request}"),
                negative_prompt: String::new(),
            },
            seeds: (0..images as u64).collect(),
            enqueued: Instant::now(),
            reply: tx,
        };
        (u, rx)
    }

    #[test]
    fn batches_equal_settings_in_order_up_to_the_limit() {
        let q = Queue::new(10);
        let mut keep = Vec::new();
        for (req, width, images) in [(1, 64, 2), (2, 128, 1), (3, 64, 1), (4, 64, 2), (5, 64, 1)] {
            let (u, rx) = unit(req, width, images);
            keep.push(rx);
            q.push(vec![u]).unwrap();
        }
        let ids = |b: Vec<Unit>| b.iter().map(|u| u.request).collect::<Vec<_>>();
        // 1 (2 images) + 3 (1) fit in 4; 4 (2 more) does not, 5 (1) does.
        assert_eq!(ids(q.take(4).unwrap()), [1, 3, 5]);
        assert_eq!(ids(q.take(4).unwrap()), [2]);
        assert_eq!(ids(q.take(4).unwrap()), [4]);
        assert_eq!(q.depth(), 0);
    }

    #[test]
    fn a_unit_larger_than_the_batch_still_runs_alone() {
        let q = Queue::new(10);
        let (a, _ra) = unit(1, 64, 6);
        let (b, _rb) = unit(2, 64, 1);
        q.push(vec![a]).unwrap();
        q.push(vec![b]).unwrap();
        assert_eq!(q.take(4).unwrap().len(), 1);
    }

    #[test]
    fn full_counts_requests_and_abandoned_units_free_their_place() {
        let q = Queue::new(2);
        let (a1, ra) = unit(1, 64, 1);
        let (a2, _) = unit(1, 64, 1);
        q.push(vec![a1, a2]).unwrap();
        let (b, _rb) = unit(2, 64, 1);
        q.push(vec![b]).unwrap();
        let (c, _rc) = unit(3, 64, 1);
        assert_eq!(q.push(vec![c]), Err(PushError::Full));
        drop(ra); // request 1's client disconnects
        let (c, _rc) = unit(3, 64, 1);
        q.push(vec![c]).unwrap();
        assert_eq!(q.depth(), 2);
        let batch = q.take(8).unwrap();
        assert_eq!(batch.iter().map(|u| u.request).collect::<Vec<_>>(), [2, 3]);
    }

    #[test]
    fn close_answers_waiting_units_and_stops_takers() {
        let q = std::sync::Arc::new(Queue::new(4));
        let (a, mut ra) = unit(1, 64, 1);
        q.push(vec![a]).unwrap();
        q.close();
        assert!(matches!(ra.try_recv(), Ok(Err(UnitError::ShuttingDown))));
        let taker = {
            let q = q.clone();
            std::thread::spawn(move || q.take(4).is_none())
        };
        assert!(taker.join().unwrap());
        let (b, _rb) = unit(2, 64, 1);
        assert_eq!(q.push(vec![b]), Err(PushError::Closed));
    }
}
