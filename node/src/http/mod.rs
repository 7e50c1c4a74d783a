//! The operator HTTP API: `/v1/status`, `/v1/members`, `/v1/guests` ([`guests`]),
//! `/metrics`, `/healthz`, the dashboard at `/ui` with its `/v1/history`
//! and `/v1/events` ([`ui`]), and `/v1/emulated` on emulated nodes only.
//!
//! Every request passes [`auth::gate`] first; [`serve::serve`] bounds
//! connections and times out slow or idle ones. Every error, of every
//! route, the gate and the router, is one JSON shape ([`ApiError`]):
//! `{"error": "...", "state_changed": bool}`, `state_changed` true only when
//! a guest action changed the guest before it failed.

pub mod auth;
pub mod guests;
pub mod market;
pub mod metrics;
pub mod moves;
pub mod serve;
pub mod state;
pub mod submit;
pub mod ui;

pub use auth::{ApiConfig, AuthMode, RawApi, Token};

pub use crate::guests::ApiError;
use crate::http::state::{AppState, NodeInfo};
use crate::sensors::Snapshot;
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

pub use maxwell_core::{MemberRow, Members};

/// Builds the router over shared state. `/v1/emulated` exists only when the
/// sensors are emulated: on real sensors no request can touch what is reported.
pub fn router(state: Arc<AppState>, emulated: bool) -> Router {
    let mut r = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/members", get(members))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz));
    if emulated {
        r = r.route("/v1/emulated", get(get_emulated).put(put_emulated));
    }
    r.merge(crate::http::guests::routes())
        .merge(crate::http::submit::routes())
        .merge(crate::http::moves::routes())
        .merge(crate::http::ui::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::gate,
        ))
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
    let text = tokio::task::spawn_blocking(move || crate::http::metrics::render(&state))
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

/// `GET /healthz`: 200 while the sensor loop completes reads, 503 once its
/// last read is older than [`AppState::sensor_stuck_after`].
async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let (code, body) = health(state.sensor_age(), state.sensor_stuck_after());
    (code, Json(body)).into_response()
}

/// The health answer for a sensor loop whose last read is `age` old.
fn health(age: std::time::Duration, limit: std::time::Duration) -> (StatusCode, serde_json::Value) {
    let age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
    if age <= limit {
        let body = serde_json::json!({ "status": "ok", "sensor_age_ms": age_ms });
        (StatusCode::OK, body)
    } else {
        let body = serde_json::json!({
            "status": "unhealthy",
            "sensor_age_ms": age_ms,
            "error": format!("the sensor loop has not completed a read for {} s", age.as_secs()),
        });
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not found: try /ui, /v1/status, /v1/members, /v1/guests, /metrics, /healthz".into(),
    )
}

/// The API's one error shape ([`ApiError`]), for an error that changed nothing.
pub fn error(code: StatusCode, message: String) -> Response {
    ApiError {
        status: code,
        message,
        state_changed: false,
    }
    .into_response()
}

/// `GET /v1/emulated`: the emulated host's parameters.
async fn get_emulated(State(state): State<Arc<AppState>>) -> Response {
    match state.emulated() {
        Some(p) => Json(emulated_doc(&p)).into_response(),
        None => not_found().await,
    }
}

/// `PUT /v1/emulated`: changes the emulated host (fault injection for demos
/// and tests: a hotter inlet, a failed fan, extra load). Fields as in the
/// `[emulated]` config section; absent ones keep their value.
async fn put_emulated(State(state): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    let Some(current) = state.emulated() else {
        return not_found().await;
    };
    match parse_emulated_body(&body, current) {
        Ok(params) => {
            state.request_emulated(params);
            Json(emulated_doc(&params)).into_response()
        }
        Err(message) => error(StatusCode::BAD_REQUEST, message),
    }
}

/// The `PUT /v1/emulated` body over the parameters in force; a bad body is
/// one line saying why.
pub fn parse_emulated_body(
    body: &[u8],
    current: crate::sensors::config::EmulatedParams,
) -> Result<crate::sensors::config::EmulatedParams, String> {
    let raw: crate::sensors::config::RawEmulated =
        serde_json::from_slice(body).map_err(|e| format!("bad body: {e}"))?;
    raw.validate_over(current).map_err(|e| e.to_string())
}

fn emulated_doc(p: &crate::sensors::config::EmulatedParams) -> serde_json::Value {
    serde_json::json!({
        "idle_w": p.idle.as_watts(),
        "peak_w": p.peak.as_watts(),
        "cap_w": p.cap.as_watts(),
        "inlet_celsius": p.inlet.as_celsius(),
        "thermal_resistance_c_per_w": p.resistance_k_per_w,
        "time_constant_s": p.time_constant.as_secs_f64(),
        "critical_celsius": p.critical.as_celsius(),
        "extra_load": p.extra_load,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_stuck_sensor_loop_is_unhealthy() {
        let limit = Duration::from_secs(5);
        let (code, body) = health(Duration::from_millis(300), limit);
        assert_eq!(
            (code, body["status"].as_str()),
            (StatusCode::OK, Some("ok"))
        );
        let (code, body) = health(Duration::from_secs(12), limit);
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["sensor_age_ms"], 12_000);
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("12 s")),
            "{body}"
        );
    }
}
