//! `POST /v1/guests/{id}/move` (and `maxwell move`): moves a running guest,
//! with its wallet, to another node (docs/placement.md, "Moving a guest"):
//! the member named in `{"to": …}` if it is a candidate, else one drawn as
//! a submission's first offer would be.

use crate::guests::{parse_id, ApiError};
use crate::http::state::AppState;
use crate::market::Moving;
use crate::p2p::migrate::{self, Moved, Peer};
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use maxwell_core::{GuestLoad, Need, Target};
use serde::Deserialize;
use std::sync::Arc;

/// The request's body (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    /// A member's name or id.
    pub to: Option<String>,
}

/// The route, merged into [`crate::http::router`].
pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/v1/guests/{id}/move", post(move_guest))
}

fn unavailable(message: String) -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message,
        state_changed: false,
    }
}

async fn move_guest(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    body: Option<Json<MoveRequest>>,
) -> Result<Json<Moved>, ApiError> {
    let vm = parse_id(&id).map_err(ApiError::bad_request)?.0;
    let to = body.and_then(|Json(b)| b.to);
    // Its own task: a client that hangs up must not cut a move short.
    let task = tokio::spawn(async move { move_to(&state, vm, to).await });
    let moved = task
        .await
        .map_err(|e| ApiError::internal(format!("the move task failed: {e}")))??;
    Ok(Json(moved))
}

/// Moves guest `vm` to `to` (or anywhere it can go).
pub async fn move_to(state: &AppState, vm: u64, to: Option<String>) -> Result<Moved, ApiError> {
    let p2p = state
        .p2p
        .get()
        .ok_or_else(|| unavailable("the p2p endpoint is not running yet".into()))?;
    let info = state
        .guests
        .act(&vm.to_string(), |b, id| b.info(id))
        .await?;
    state.guests.may_move(vm)?;
    let terms = state
        .guests
        .moving(|reply| Moving::Terms { vm, reply })
        .await?;
    let need = Need {
        load: GuestLoad {
            vcpus: u64::from(info.vcpus),
            memory_mib: u64::from(info.memory_mib),
        },
        bid_milli: terms.map(|(_, o)| o.bid_milli),
    };
    let target = state
        .guests
        .move_target(need, to)
        .await?
        .map_err(|why| unavailable(format!("guest g{vm} cannot move: {why}")))?;
    let Target::Peer {
        node,
        name,
        endpoint,
        ..
    } = target
    else {
        return Err(unavailable("the only candidate is this node".into()));
    };
    let peer = Peer {
        node,
        name,
        endpoint,
    };
    let moved = migrate::migrate(&state.guests, p2p, vm, &peer, false).await?;
    tracing::info!(guest = vm, to = %moved.to, to_guest = moved.to_guest, paused_ms = moved.paused_ms, bytes = moved.bytes, "guest moved");
    state.note(
        state.node.id,
        "moved",
        format!("guest g{vm} ({}) to {}", info.name, moved.to),
    );
    Ok(moved)
}
