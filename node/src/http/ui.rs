//! The dashboard: `GET /ui`, one page whose script and style this agent
//! serves too (`/ui/app.js`, `/ui/app.css`, compiled into the binary), and
//! the two reads it adds to the API: `GET /v1/history/{node}` and
//! `GET /v1/events` ([`crate::board`]).
//!
//! The page polls `/v1/members`, `/v1/status`, `/v1/guests`, the events and
//! the selected host's history, asking each only for what is new. Its
//! Content-Security-Policy lets it load and connect to nothing but this
//! agent. The page itself holds no data, so it is served without the token
//! even under `api.auth_reads`; it asks for the token to read and to act,
//! and keeps it in the tab's session storage.

use crate::board::{EventRow, Point};
use crate::http::state::AppState;
use crate::http::ApiError;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use maxwell_gossip::NodeId;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

const PAGE: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

/// The page's paths: open even when reads need the token.
pub const OPEN_PATHS: [&str; 3] = ["/ui", "/ui/app.js", "/ui/app.css"];

/// Nothing from anywhere but this agent; no plugins, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// The dashboard's routes, merged into [`crate::http::router`].
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/ui", get(|| asset(PAGE, "text/html; charset=utf-8")))
        .route(
            "/ui/app.js",
            get(|| asset(SCRIPT, "text/javascript; charset=utf-8")),
        )
        .route(
            "/ui/app.css",
            get(|| asset(STYLE, "text/css; charset=utf-8")),
        )
        .route("/v1/history/{node}", get(history))
        .route("/v1/events", get(events))
}

async fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Since {
    since_ms: Option<u64>,
}

/// `GET /v1/history/{node}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct History {
    pub node: NodeId,
    /// One point per this many ms.
    pub every_ms: u64,
    /// How far back the ring goes, s.
    pub span_s: u64,
    /// `[t_ms, millicelsius, price_milli]`, oldest first; `null` where the
    /// member was dead or its report stale.
    pub points: Vec<Point>,
}

async fn history(
    State(state): State<Arc<AppState>>,
    UrlPath(node): UrlPath<String>,
    Query(q): Query<Since>,
) -> Result<Json<History>, ApiError> {
    let id: NodeId = node
        .parse()
        .map_err(|e| ApiError::bad_request(format!("{node:?} is not a node id: {e}")))?;
    Ok(Json(History {
        node: id,
        every_ms: crate::board::SAMPLE_EVERY_MS,
        span_s: state.gate.config.ui_history.as_secs(),
        points: state.board().history(&id, q.since_ms.unwrap_or(0)),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct After {
    after: Option<u64>,
}

/// `GET /v1/events`.
#[derive(Debug, Clone, Serialize)]
pub struct Events {
    /// When the agent started, unix ms: after a restart the numbering
    /// begins again, and a reader that sees this change starts over.
    pub boot_ms: u64,
    /// Oldest first; page on with `?after=` the last `seq`.
    pub events: Vec<EventRow>,
}

async fn events(State(state): State<Arc<AppState>>, Query(q): Query<After>) -> Json<Events> {
    let board = state.board();
    Json(Events {
        boot_ms: board.boot_ms(),
        events: board.events(q.after.unwrap_or(0)),
    })
}
