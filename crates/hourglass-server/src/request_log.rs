//! The one place requests are logged: server errors at warn, the rest at debug.
//!
//! A plain tower layer rather than `axum::middleware::from_fn`: `from_fn` clones the
//! router's boxed service and boxes a new future for every request, which under webhook
//! load took about a tenth of the HTTP side's CPU (BENCHMARKS.md, session 7). This one
//! wraps the inner future in place and remembers only what the log line needs.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant as Stopwatch;

use axum::extract::Request;
use axum::http::{Method, Uri};
use axum::response::Response;
use tower_layer::Layer;
use tower_service::Service;

/// Logs every request the wrapped service answers.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogRequestsLayer;

impl<S> Layer<S> for LogRequestsLayer {
    type Service = LogRequests<S>;

    fn layer(&self, inner: S) -> LogRequests<S> {
        LogRequests { inner }
    }
}

/// The service [`LogRequestsLayer`] makes.
#[derive(Clone, Debug)]
pub struct LogRequests<S> {
    inner: S,
}

impl<S> Service<Request> for LogRequests<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = LoggedResponse<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        LoggedResponse {
            // Both clones share the request's buffers (no allocation).
            method: request.method().clone(),
            uri: request.uri().clone(),
            started: Stopwatch::now(),
            inner: self.inner.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner service's answer, logged when it is ready.
    pub struct LoggedResponse<F> {
        #[pin]
        inner: F,
        method: Method,
        uri: Uri,
        started: Stopwatch,
    }
}

impl<F> Future for LoggedResponse<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = ready!(this.inner.poll(cx));
        let status = response.status();
        let micros = this.started.elapsed().as_micros() as u64;
        let (method, path) = (this.method, this.uri.path());
        if status.is_server_error() {
            tracing::warn!(%method, %path, status = status.as_u16(), micros, "request failed");
        } else {
            tracing::debug!(%method, %path, status = status.as_u16(), micros, "request");
        }
        Poll::Ready(Ok(response))
    }
}
