//! The operator HTTP API: `/v1/status`, `/v1/members`, `/v1/guests` ([`crate::guests`]),
//! `/metrics`, `/healthz`.

use crate::sensors::Snapshot;
use crate::state::{AppState, NodeInfo};
use maxwell_gossip::{MicroWatts, MilliCelsius, NodeId};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `GET /v1/status`: this node, every reading with its unit in the field
/// name, and the summary.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    #[serde(flatten)]
    pub node: NodeInfo,
    pub uptime_s: u64,
    #[serde(flatten)]
    pub snapshot: Snapshot,
    /// This node's price and the terms that made it (absent before the first update).
    pub price: Option<maxwell_pricing::Quote>,
}

/// One row of `GET /v1/members`: a peer with a verified report (or this node).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Member {
    pub id: NodeId,
    pub name: String,
    /// Gossip address.
    pub addr: String,
    /// `alive`, `dead` or `left`.
    pub status: String,
    pub generation: u64,
    pub rack: String,
    pub slot: u16,
    pub hottest_millicelsius: Option<MilliCelsius>,
    pub critical_millicelsius: Option<MilliCelsius>,
    pub power_draw_microwatts: Option<MicroWatts>,
    pub power_cap_microwatts: Option<MicroWatts>,
    pub headroom_microwatts: Option<MicroWatts>,
    pub price_milli: Option<u64>,
    pub sensor_source: Option<String>,
    /// Age of the report, ms.
    pub age_ms: u64,
    /// False once the report is older than the TTL: shown, never acted on.
    pub fresh: bool,
    /// True when the row may be acted on (alive, fresh, verified).
    pub counts: bool,
    pub is_self: bool,
}

/// `GET /v1/members`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Members {
    pub members: Vec<Member>,
    /// Gossip peers without a verified report (not members).
    pub unverified_peers: usize,
}

/// Builds the router over shared state.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/members", get(members))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .merge(crate::guests::routes())
        .fallback(not_found)
        .with_state(state)
}

/// Builds the status document.
pub fn status_of(state: &AppState) -> Status {
    Status {
        node: state.node.clone(),
        uptime_s: state.started.elapsed().as_secs(),
        snapshot: (*state.snapshot()).clone(),
        price: state.quote(),
    }
}

async fn status(State(state): State<Arc<AppState>>) -> Json<Status> {
    Json(status_of(&state))
}

async fn members(State(state): State<Arc<AppState>>) -> Json<Members> {
    Json(state.members())
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    // Guest figures come from the backend, which may block briefly: off the runtime.
    let text = tokio::task::spawn_blocking(move || crate::metrics::render(&state))
        .await
        .unwrap_or_else(|_| "# rendering failed\n".into());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn not_found() -> (StatusCode, &'static str) {
    (
        StatusCode::NOT_FOUND,
        "not found: try /v1/status, /v1/members, /v1/guests, /metrics, /healthz\n",
    )
}
