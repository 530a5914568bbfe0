//! Serving the router: plain HTTP or TLS, graceful shutdown, and the writer's drain.

use std::time::Duration;

use crate::app::{AppState, app};
#[cfg(feature = "tls")]
use crate::tls;

/// Serves `app` on `listener` until `shutdown` completes, then finishes in-flight requests and
/// drains the writer: every batch already accepted into its queue is committed before this
/// returns. Client addresses reach the rate limiter through connect info.
///
/// # Errors
/// The listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(listener, state, shutdown).await
}

/// [`serve`] over HTTPS ([`tls`]): the same routes, graceful shutdown and writer drain, with
/// client addresses reaching the rate limiter as on plain HTTP. Plain HTTP on this port gets
/// `400 https_required`.
///
/// # Errors
/// The listener fails.
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: &tls::TlsConfig,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    // `tap_io` is a no-op here: it makes axum's connect info (`SocketAddr`, the `Addr` of the
    // listener) available for a custom listener.
    let listener = tls::TlsListener::new(listener, tls)?.tap_io(|_| {});
    serve_on(listener, state, shutdown).await
}

/// [`serve`] on any listener whose connections carry the client's `SocketAddr`.
async fn serve_on<L>(
    listener: L,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
    std::net::SocketAddr:
        for<'a> axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    let writer = state.writer.clone();
    let limits = state.limits.clone();
    let housekeeping = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            limits.forget_idle();
        }
    });
    let result = axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    housekeeping.abort();
    writer.shutdown(Duration::from_secs(30)).await;
    result
}
