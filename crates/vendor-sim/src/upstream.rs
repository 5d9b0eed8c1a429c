//! What the upstream simulators (BEX, Nexudus) share: each serves its own router on its own
//! port and stops on demand.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::Router;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::SimError;

/// A running upstream simulator's server. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Served {
    pub(crate) addr: SocketAddr,
    cancel: CancellationToken,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Served {
    /// Binds `addr` (port 0: any free port) and serves `app`.
    pub(crate) async fn start(
        what: &'static str,
        addr: SocketAddr,
        app: Router,
    ) -> Result<Served, SimError> {
        let bind = |source| SimError::Bind { what, addr, source };
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(bind)?;
        let local = listener.local_addr().map_err(bind)?;
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        tracing::info!(server = what, %local, "upstream simulator listening");
        Ok(Served {
            addr: local,
            cancel,
            task: Arc::new(Mutex::new(Some(task))),
        })
    }

    /// `http://<addr>`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and waits for it.
    pub(crate) async fn shutdown(&self) {
        self.cancel.cancel();
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}
