//! A server on its own thread and Tokio runtime: what tests and
//! embedding hosts start instead of `ras serve`.

use std::net::SocketAddr;
use std::thread::JoinHandle;

use crate::error::{Error, Result};

use super::{ServeConfig, Server};

/// A running server; dropping it shuts it down gracefully.
pub struct Handle {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Handle {
    pub fn spawn(config: ServeConfig) -> Result<Handle> {
        let server = Server::start(config)?;
        let addr = server.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("ras-serve".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Error::Io {
                        what: "starting the Tokio runtime".into(),
                        source: e,
                    })?;
                runtime.block_on(server.run(async {
                    let _ = stopped.await;
                }))
            })
            .expect("spawning a thread");
        Ok(Handle {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Begins a graceful shutdown and waits for it to finish.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(Error::Invalid("the server thread panicked".into()))),
            None => Ok(()),
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}
