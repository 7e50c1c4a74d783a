//! `/v1/guests`: list, start, pause, resume, cap and kill guests over
//! [`Guests`].
//!
//! HTTP errors are JSON `{"error": "...", "state_changed": bool}`: 400 bad
//! input, 404 unknown guest, 409 wrong state, 503 guests disabled, 504 a
//! pause or resume not acknowledged in time (still pending), 500 host
//! failures.

use crate::guests::ApiError;
use crate::http::state::AppState;
use crate::market::AccountRow;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use maxwell_vmm::{
    BackendName, CapMode, CpuCap, GuestInfo, GuestSpec, GuestState, KindName, VmmError,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One guest in `GET /v1/guests` and the answers of the actions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GuestRow {
    /// The guest's number; shown as `g<id>`.
    pub id: u64,
    pub name: String,
    pub kind: KindName,
    pub backend: BackendName,
    pub state: GuestState,
    pub vcpus: u8,
    pub memory_mib: u32,
    /// Fraction of one core per vCPU, (0, 1].
    pub cap: f64,
    /// How the cap is enforced.
    pub cap_mode: CapMode,
    /// CPU time used by all vCPUs since start.
    pub cpu_time_ns: u64,
    /// Finished work blocks (workload) or console bytes (linux).
    pub progress: u64,
    /// Start to the guest's first exit to the host, if seen.
    pub first_exit_us: Option<u64>,
    /// Why the guest exited, if it did.
    pub exit_reason: Option<String>,
    /// Its account in the market, if it is in it.
    #[serde(default)]
    pub market: Option<AccountRow>,
    /// The node whose placement sent it here (`maxwell submit`), if any.
    #[serde(default)]
    pub origin: Option<crate::guests::Origin>,
}

/// `GET /v1/guests`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GuestList {
    pub backend: BackendName,
    pub guests: Vec<GuestRow>,
    /// The market: price, capacity, totals, and the guests it killed
    /// lately (closed accounts, newest last).
    #[serde(default)]
    pub market: Option<MarketSummary>,
}

impl GuestList {
    /// The market account of guest `vm`: its live one, else the newest
    /// closed one (a guest the market killed).
    pub fn account(&self, vm: u64) -> Option<AccountRow> {
        let live = self
            .guests
            .iter()
            .find(|g| g.id == vm)
            .and_then(|g| g.market.clone());
        live.or_else(|| {
            self.market
                .as_ref()?
                .closed
                .iter()
                .rev()
                .find(|a| a.guest == vm)
                .cloned()
        })
    }
}

/// The market part of `GET /v1/guests`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MarketSummary {
    /// When the last tick ran, unix ms.
    pub at_ms: Option<u64>,
    pub price_milli: u64,
    pub capacity_mcores: u64,
    pub totals: maxwell_market::Totals,
    pub halted: Option<String>,
    pub closed: Vec<AccountRow>,
}

impl From<&GuestInfo> for GuestRow {
    fn from(g: &GuestInfo) -> Self {
        GuestRow {
            id: g.id.0,
            name: g.name.clone(),
            kind: g.kind,
            backend: g.backend,
            state: g.state,
            vcpus: g.vcpus,
            memory_mib: g.memory_mib,
            cap: g.cap.fraction(),
            cap_mode: g.cap_mode,
            cpu_time_ns: g.cpu_time_ns,
            progress: g.progress,
            first_exit_us: g.first_exit_us,
            exit_reason: g.exit_reason.clone(),
            market: None,
            origin: None,
        }
    }
}

/// The `/v1/guests` routes, merged into [`crate::http::router`].
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/guests", get(list).post(create))
        .route("/v1/guests/{id}", get(one))
        .route("/v1/guests/{id}/pause", post(pause))
        .route("/v1/guests/{id}/resume", post(resume))
        .route("/v1/guests/{id}/kill", post(kill))
        .route("/v1/guests/{id}/cap", put(cap))
        .merge(crate::http::market::routes())
}

type Answer = Result<Json<GuestRow>, ApiError>;

async fn list(State(state): State<Arc<AppState>>) -> Result<Json<GuestList>, ApiError> {
    let backend = state.guests.backend()?;
    let name = backend.name();
    let infos = tokio::task::spawn_blocking(move || backend.list())
        .await
        .map_err(|e| ApiError::internal(format!("guest list failed: {e}")))?;
    let view = state.market();
    let account = |vm: u64| {
        view.as_ref()
            .and_then(|v| {
                v.accounts
                    .iter()
                    .filter(|a| a.guest == vm && !a.state.starts_with("killed"))
                    .max_by_key(|a| a.account)
            })
            .cloned()
    };
    let guests = infos
        .iter()
        .map(|g| GuestRow {
            market: account(g.id.0),
            origin: state.guests.origin(g.id.0),
            ..GuestRow::from(g)
        })
        .collect();
    let market = view.map(|v| MarketSummary {
        at_ms: v.at_ms,
        price_milli: v.price_milli,
        capacity_mcores: v.capacity_mcores,
        totals: v.totals,
        halted: v.halted,
        closed: v
            .accounts
            .into_iter()
            .filter(|a| a.state.starts_with("killed"))
            .collect(),
    });
    Ok(Json(GuestList {
        backend: name,
        guests,
        market,
    }))
}

async fn one(State(state): State<Arc<AppState>>, UrlPath(id): UrlPath<String>) -> Answer {
    let g = state.guests.act(&id, |b, id| b.info(id)).await?;
    Ok(Json(GuestRow::from(&g)))
}

async fn create(State(state): State<Arc<AppState>>, body: Bytes) -> Answer {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("the guest spec is not UTF-8 JSON"))?;
    state.guests.backend()?;
    let spec = GuestSpec::from_json_in(text, state.guests.kernel_dir())?;
    let g = state.guests.start(spec).await?;
    tracing::info!(guest = %g.id, name = %g.name, backend = %g.backend, "guest started");
    Ok(Json(GuestRow::from(&g)))
}

async fn pause(State(state): State<Arc<AppState>>, UrlPath(id): UrlPath<String>) -> Answer {
    let g = state
        .guests
        .act(&id, |b, id| b.pause(id).and_then(|()| b.info(id)))
        .await?;
    Ok(Json(GuestRow::from(&g)))
}

async fn resume(State(state): State<Arc<AppState>>, UrlPath(id): UrlPath<String>) -> Answer {
    let vm = crate::guests::parse_id(&id).map_err(ApiError::bad_request)?;
    if state.guests.is_held(vm.0) {
        return Err(ApiError {
            status: axum::http::StatusCode::CONFLICT,
            message: format!(
                "guest {vm} is held: placed here and awaiting its submitter's confirmation, or moving to another node (docs/placement.md); only that runs it"
            ),
            state_changed: false,
        });
    }
    let g = state
        .guests
        .act(&id, |b, id| b.resume(id).and_then(|()| b.info(id)))
        .await?;
    Ok(Json(GuestRow::from(&g)))
}

async fn kill(State(state): State<Arc<AppState>>, UrlPath(id): UrlPath<String>) -> Answer {
    let g = state.guests.kill(&id).await?;
    tracing::info!(guest = %g.id, name = %g.name, "guest killed");
    Ok(Json(GuestRow::from(&g)))
}

/// `PUT /v1/guests/{id}/cap` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CapBody {
    cap: f64,
}

/// The `PUT /v1/guests/{id}/cap` body: `{"cap": <fraction in (0, 1]>}`.
pub fn parse_cap_body(body: &[u8]) -> Result<CpuCap, ApiError> {
    let body: CapBody = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("expected {{\"cap\": <fraction in (0, 1]>}}: {e}"))
    })?;
    CpuCap::new(body.cap).map_err(|e| match e {
        VmmError::InvalidSpec { field, reason } => {
            ApiError::bad_request(format!("{field}: {reason}"))
        }
        e => e.into(),
    })
}

async fn cap(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Answer {
    state.guests.backend()?;
    let cap = parse_cap_body(&body)?;
    let g = state
        .guests
        .act(&id, move |b, id| {
            b.set_cap(id, cap).and_then(|()| b.info(id))
        })
        .await?;
    Ok(Json(GuestRow::from(&g)))
}
