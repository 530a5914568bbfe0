//! Loopback servers for delivery tests and the exit-latency harness
//! (`cargo run --release -p optel-cli --example exit_latency`): a real collector that can be
//! stopped and restarted on the same port, a port that refuses connections, a blackhole that
//! accepts and never answers, and a listener that answers 503 after a delay. All bind
//! 127.0.0.1 only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context, Result};
use optel_collector::query::TimeRange;
use optel_collector::storage::{SqliteStore, Store};
use optel_collector::{AppState, generate_ingest_key, hash_key, now_ms};

/// A collector serving on 127.0.0.1 from its own thread, with one project and its ingest key.
#[derive(Debug)]
pub struct LocalCollector {
    addr: SocketAddr,
    key: String,
    project: String,
    store: Arc<SqliteStore>,
    server: Option<Server>,
}

#[derive(Debug)]
struct Server {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: JoinHandle<Result<()>>,
}

impl LocalCollector {
    /// Opens a store in `data_dir`, creates project `project`, and serves on a free port.
    ///
    /// # Errors
    /// The store cannot be opened, the project exists, or no port can be bound.
    pub fn start(data_dir: &Path, project: &str) -> Result<Self> {
        let store = Arc::new(SqliteStore::open(data_dir)?);
        let key = generate_ingest_key().context("cannot generate an ingest key")?;
        store.create_project(project, &hash_key(&key), now_ms())?;
        let mut collector = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            key,
            project: project.to_owned(),
            store,
            server: None,
        };
        collector.restart()?;
        Ok(collector)
    }

    /// The collector's base URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The project's ingest key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Stops serving (in-flight requests finish); the port then refuses connections.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.stop.send(());
            let _ = server.thread.join();
        }
    }

    /// Serves again, on the same port as before (a free one the first time).
    ///
    /// # Errors
    /// The port cannot be bound.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        // No rate limits (0 disables them): the harness drives many runs from one address.
        let state = AppState::with_config(
            self.store.clone(),
            None,
            optel_collector::RateConfig {
                per_key: 0,
                per_addr: 0,
                per_browser_key: 0,
            },
            optel_collector::DEFAULT_QUEUE,
        )?;
        let wanted = self.addr;
        let (bound_tx, bound_rx) = std::sync::mpsc::channel::<std::io::Result<SocketAddr>>();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = thread::Builder::new()
            .name("local-collector".into())
            .spawn(move || -> Result<()> {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    // tokio's bind sets SO_REUSEADDR, so a restart can take the same port
                    // while connections of the previous run linger in TIME_WAIT.
                    let listener = match tokio::net::TcpListener::bind(wanted).await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ =
                                bound_tx.send(Err(std::io::Error::new(e.kind(), e.to_string())));
                            return Err(e);
                        }
                    };
                    let _ = bound_tx.send(listener.local_addr());
                    optel_collector::serve(listener, state, async move {
                        let _ = stopped.await;
                    })
                    .await
                })?;
                Ok(())
            })?;
        self.addr = bound_rx
            .recv()
            .context("the collector thread ended before binding")?
            .with_context(|| format!("cannot listen on {wanted}"))?;
        self.server = Some(Server { stop, thread });
        Ok(())
    }

    /// Events stored for the project in the last 24 hours (each event id counted once).
    ///
    /// # Errors
    /// Storage errors.
    pub fn events(&self) -> Result<u64> {
        Ok(self.stats()?.events)
    }

    /// The project's usage statistics over the last 24 hours.
    ///
    /// # Errors
    /// Storage errors.
    pub fn stats(&self) -> Result<optel_collector::query::Stats> {
        let project = self
            .store
            .project_by_name(&self.project)?
            .context("the project vanished")?;
        let range = TimeRange::last(Duration::from_secs(86_400), now_ms());
        Ok(self.store.stats(&project, range)?)
    }
}

impl Drop for LocalCollector {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An address on which nothing listens: connections are refused.
///
/// # Errors
/// No port can be bound.
pub fn refusing_addr() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    drop(listener);
    Ok(addr)
}

/// A listener that accepts connections and never reads or answers (a blackholed endpoint).
/// Its thread lives as long as the process.
///
/// # Errors
/// No port can be bound.
pub fn blackhole() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::Builder::new()
        .name("blackhole".into())
        .spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                // Keep at most a bounded number of connections open; older ones are closed.
                if held.len() >= 4_096 {
                    held.clear();
                }
                held.push(stream);
            }
        })?;
    Ok(addr)
}

/// A listener that reads each request and answers `503 Service Unavailable` after `delay`.
/// Its thread lives as long as the process.
///
/// # Errors
/// No port can be bound.
pub fn slow_responder(delay: Duration) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::Builder::new()
        .name("slow-responder".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = thread::Builder::new().spawn(move || answer_late(stream, delay));
            }
        })?;
    Ok(addr)
}

fn answer_late(mut stream: TcpStream, delay: Duration) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 4096];
    let _ = stream.read(&mut buf);
    thread::sleep(delay);
    let _ = stream.write_all(
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    );
}
