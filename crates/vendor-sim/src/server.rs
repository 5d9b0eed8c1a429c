//! A small accept loop instead of `axum::serve`, so that a fault can drop the TCP connection
//! without writing any response (the `DropConnection` fault), and shutdown closes everything.

use std::sync::Arc;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Request extension: notifying it closes the request's TCP connection immediately.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnKill(pub(crate) Arc<Notify>);

pub(crate) async fn serve(listener: TcpListener, router: Router, cancel: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, _) = match accepted {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let kill = ConnKill::default();
        let router = router.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let k = kill.clone();
            let svc = tower::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(k.clone());
                router.clone().oneshot(req)
            });
            let builder = Builder::new(TokioExecutor::new());
            let conn =
                builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
            tokio::select! {
                _ = conn => {}
                () = kill.0.notified() => {}
                () = cancel.cancelled() => {}
            }
        });
    }
}
