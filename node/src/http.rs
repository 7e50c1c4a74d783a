//! The operator HTTP API: `/v1/status`, `/v1/members`, `/metrics`, `/healthz`.

use crate::sensors::Snapshot;
use crate::state::{AppState, NodeInfo};
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
}

/// One row of `GET /v1/members`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Member {
    #[serde(flatten)]
    pub node: NodeInfo,
    /// `alive`, `suspect`, `dead` or `left`.
    pub status: String,
    /// True for the row describing the answering node itself.
    pub is_self: bool,
}

/// `GET /v1/members`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Members {
    pub members: Vec<Member>,
}

/// Builds the router over shared state.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/members", get(members))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .with_state(state)
}

/// Builds the status document.
pub fn status_of(state: &AppState) -> Status {
    Status {
        node: state.node.clone(),
        uptime_s: state.started.elapsed().as_secs(),
        snapshot: (*state.snapshot()).clone(),
    }
}

async fn status(State(state): State<Arc<AppState>>) -> Json<Status> {
    Json(status_of(&state))
}

async fn members(State(state): State<Arc<AppState>>) -> Json<Members> {
    // Until the gossip layer lands, the cluster this node knows is itself.
    Json(Members {
        members: vec![Member {
            node: state.node.clone(),
            status: "alive".into(),
            is_self: true,
        }],
    })
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::render(&state),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn not_found() -> (StatusCode, &'static str) {
    (
        StatusCode::NOT_FOUND,
        "not found: try /v1/status, /v1/members, /metrics, /healthz\n",
    )
}
