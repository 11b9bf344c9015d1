//! What is not JSON: the web UI's files, the OpenAPI document, Prometheus
//! metrics, and the live events views wait on.

use std::sync::Arc;

use axum::extract::State as AxumState;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use cloudshell_store_api as wire;

use super::error::ApiError;
use crate::state::State;

type Shared = Arc<State>;

/// Server-sent events: a `change` event (data: a counter) whenever files,
/// nodes, jobs or the scrubber change, bursts coalesced, so views refresh
/// when something happened instead of polling.
pub(super) async fn events(
    AxumState(state): AxumState<Shared>,
) -> axum::response::sse::Sse<
    impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let rx = state.subscribe();
    let first = futures_util::stream::once(async { Ok(Event::default().event("hello").data("0")) });
    let changes = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        let v = *rx.borrow_and_update();
        Some((Ok(Event::default().event("change").data(v.to_string())), rx))
    });
    Sse::new(futures_util::StreamExt::chain(first, changes)).keep_alive(KeepAlive::default())
}

/// The web UI, built into the binary: plain HTML, CSS and JavaScript
/// modules, no build step.
pub(super) const UI: [(&str, &str, &str); 4] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../ui/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../ui/app.js"),
    ),
    (
        "map.js",
        "text/javascript; charset=utf-8",
        include_str!("../../ui/map.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../ui/style.css"),
    ),
];

pub(super) async fn asset(name: &str) -> Response {
    match UI.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, body)) => (
            [
                (header::CONTENT_TYPE, *kind),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => ApiError::new(StatusCode::NOT_FOUND, "NoSuchAsset", format!("no {name}"))
            .into_response(),
    }
}

pub(super) async fn asset_owned(name: String) -> Response {
    asset(&name).await
}

/// The OpenAPI document, generated from the API crate's types.
pub(super) async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        wire::openapi::document(),
    )
}

pub(super) async fn metrics(AxumState(state): AxumState<Shared>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::http::metrics::render(&state),
    )
}
