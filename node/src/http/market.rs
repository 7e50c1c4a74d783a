//! The market's routes: top-ups, bids and receipts.
//!
//! `POST /v1/guests/{id}/fund` `{"amount_milli": N}` and
//! `PUT /v1/guests/{id}/bid` `{"bid_milli": N}` answer with the guest's
//! account once the entry is synced to the ledger (507 while the ledger's
//! disk is full). `GET /v1/guests/{id}/receipts` is the guest's signed
//! receipt chain, oldest first, from every retained ledger segment.

use crate::guests::{parse_id, ApiError, MarketCall};
use crate::http::state::AppState;
use crate::market::AccountRow;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use maxwell_market::Receipt;
use serde::Deserialize;
use std::sync::Arc;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/guests/{id}/fund", post(fund))
        .route("/v1/guests/{id}/bid", put(bid))
        .route("/v1/guests/{id}/receipts", get(receipts))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FundBody {
    amount_milli: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BidBody {
    bid_milli: u64,
}

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8], shape: &str) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("expected {shape}: {e}")))
}

async fn fund(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    bytes: Bytes,
) -> Result<Json<AccountRow>, ApiError> {
    let vm = parse_id(&id).map_err(ApiError::bad_request)?.0;
    let b: FundBody = body(&bytes, "{\"amount_milli\": <milli-credits>}")?;
    let row = state
        .guests
        .market_call(|reply| MarketCall::Fund {
            vm,
            amount_milli: b.amount_milli,
            reply,
        })
        .await?;
    Ok(Json(row))
}

async fn bid(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    bytes: Bytes,
) -> Result<Json<AccountRow>, ApiError> {
    let vm = parse_id(&id).map_err(ApiError::bad_request)?.0;
    let b: BidBody = body(&bytes, "{\"bid_milli\": <milli-credits per CPU-second>}")?;
    let row = state
        .guests
        .market_call(|reply| MarketCall::Bid {
            vm,
            bid_milli: b.bid_milli,
            reply,
        })
        .await?;
    Ok(Json(row))
}

async fn receipts(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Vec<Receipt>>, ApiError> {
    let vm = parse_id(&id).map_err(ApiError::bad_request)?.0;
    let view = state.market().ok_or_else(|| {
        state
            .guests
            .backend()
            .err()
            .unwrap_or_else(|| ApiError::internal("no market"))
    })?;
    let account = view
        .accounts
        .iter()
        .filter(|a| a.guest == vm)
        .max_by_key(|a| a.account)
        .map(|a| a.account);
    let account = account.ok_or_else(|| ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("guest g{vm} has no market account on this node"),
        state_changed: false,
    })?;
    let dir = view.ledger_dir.clone();
    let list =
        tokio::task::spawn_blocking(move || maxwell_market::ledger::receipts_in(&dir, account))
            .await
            .map_err(|e| ApiError::internal(format!("reading receipts failed: {e}")))?
            .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(list))
}

/// The market's series: per guest (by guest id, live accounts only) its
/// share, wallet, rent, CPU and joules; and the market's totals.
pub fn metrics(reg: &mut prometheus_client::registry::Registry, view: &crate::market::MarketView) {
    use crate::http::metrics::{counter_family, family, gauge, labels, set};
    gauge(
        "maxwell_market_price_milli",
        "The local price the market charges, milli-credits per CPU-second",
        Some(view.price_milli as f64),
        reg,
    );
    gauge(
        "maxwell_market_capacity_cores",
        "CPU on sale to guests this tick (the capacity curve), cores",
        Some(view.capacity_mcores as f64 / 1000.0),
        reg,
    );
    gauge(
        "maxwell_market_halted",
        "1 while the ledger cannot be written and the market is halted",
        Some(f64::from(u8::from(view.halted.is_some()))),
        reg,
    );
    let t = &view.totals;
    let credits = |micro: u64| micro as f64 / 1e6;
    gauge(
        "maxwell_market_revenue_credits",
        "Rent collected since the ledger began (counter), credits",
        Some(credits(t.revenue_micro)),
        reg,
    );
    gauge(
        "maxwell_market_tax_credits",
        "Landauer tax collected on released memory (counter), credits",
        Some(credits(t.taxed_micro)),
        reg,
    );
    gauge(
        "maxwell_market_deposits_credits",
        "Credits deposited by guests' wallets and top-ups (counter)",
        Some(credits(t.deposited_micro)),
        reg,
    );
    gauge(
        "maxwell_market_refunds_credits",
        "Credits returned from closed accounts (counter)",
        Some(credits(t.refunded_micro)),
        reg,
    );
    gauge(
        "maxwell_market_moved_in_credits",
        "Credits that arrived with moved guests' wallets (counter)",
        Some(credits(t.moved_in_micro)),
        reg,
    );
    gauge(
        "maxwell_market_moved_out_credits",
        "Credits delivered with guests moved away (counter)",
        Some(credits(t.moved_out_micro)),
        reg,
    );
    gauge(
        "maxwell_market_escrow_credits",
        "Credits of guests moving away, held until the target answers",
        Some(credits(t.escrow_micro)),
        reg,
    );
    let kills: Vec<(&str, &str, u64)> = maxwell_market::Reason::ALL
        .iter()
        .map(|r| ("reason", r.as_str(), t.kills.get(r).copied().unwrap_or(0)))
        .collect();
    counter_family(
        reg,
        "maxwell_market_kills",
        "Guests killed (or lost), by reason; rent is apoptosis",
        &kills,
    );
    counter_family(
        reg,
        "maxwell_market_pauses",
        "Guests paused (outbid) and resumed by the market",
        &[("what", "pause", t.pauses), ("what", "resume", t.resumes)],
    );
    let share = family(
        reg,
        "maxwell_guest_share_cores",
        "The guest's market share this tick, cores",
    );
    let wallet = family(
        reg,
        "maxwell_guest_wallet_credits",
        "The guest's wallet, credits",
    );
    let rent = family(
        reg,
        "maxwell_guest_rent_credits_per_second",
        "The guest's rent over the last tick, credits per second",
    );
    let joules = family(
        reg,
        "maxwell_guest_joules",
        "Energy attributed to the guest since it joined (counter), joules",
    );
    let cpu = family(
        reg,
        "maxwell_guest_market_cpu_seconds",
        "CPU time the market metered and charged for (counter), seconds",
    );
    for a in view
        .accounts
        .iter()
        .filter(|a| !a.state.starts_with("killed"))
    {
        let l = labels(&[("guest", &format!("g{}", a.guest))]);
        set(&share, l.clone(), a.share_mcores as f64 / 1000.0);
        set(&wallet, l.clone(), a.wallet_milli as f64 / 1000.0);
        set(&rent, l.clone(), a.rent_milli_per_s as f64 / 1000.0);
        set(&joules, l.clone(), a.joules);
        set(&cpu, l, a.cpu_ms as f64 / 1000.0);
    }
}
