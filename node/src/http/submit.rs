//! `POST /v1/submit` (and `maxwell submit`): a guest submitted to any node
//! lands on a cool, cheap one. The node core picks the candidates from this
//! node's verified gossip view (power of d choices, `maxwell_core::placement`);
//! each is offered the guest in turn, over the p2p endpoint (or, for this
//! node, through its own admission), until one starts it or
//! `placement.max_offers` have refused. docs/placement.md.

use crate::guests::{ApiError, Origin};
use crate::http::state::AppState;
use crate::p2p::{Answer, Request};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use maxwell_core::{GuestLoad, Need, Skipped, Target};
use maxwell_types::NodeId;
use maxwell_vmm::{GuestSpec, RawGuestSpec};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One offer a submission made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attempt {
    pub node: NodeId,
    pub name: String,
    /// Its price as this node saw it, milli-credits per CPU-second.
    pub price_milli: u64,
    /// `started`, or why not.
    pub outcome: String,
}

/// `POST /v1/submit`: where the guest landed, and how.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Submitted {
    pub node: NodeId,
    pub name: String,
    /// The guest's id on that node.
    pub guest: u64,
    pub guest_name: String,
    /// Every offer made, the last one taken.
    pub offers: Vec<Attempt>,
    /// Nodes that were candidates.
    pub candidates: usize,
}

/// The route, merged into [`crate::http::router`].
pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/v1/submit", post(submit))
}

async fn submit(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Submitted>, ApiError> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("the guest spec is not UTF-8 JSON"))?
        .to_owned();
    // Offers carry the spec whole; leave room for the message around it.
    if text.len() > crate::p2p::MAX_MESSAGE - 1024 {
        return Err(ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!(
                "the guest spec is {} bytes; an offer carries at most {}",
                text.len(),
                crate::p2p::MAX_MESSAGE - 1024
            ),
            state_changed: false,
        });
    }
    // Its own task: a client that hangs up must not cut a placement short
    // between a start and its confirmation.
    let task = tokio::spawn({
        let state = Arc::clone(&state);
        async move { place(&state, &text).await }
    });
    let landed = task
        .await
        .map_err(|e| ApiError::internal(format!("the placement task failed: {e}")))??;
    tracing::info!(node = %landed.name, guest = landed.guest, offers = landed.offers.len(), "submitted guest placed");
    Ok(Json(landed))
}

/// Places the guest of `spec_json`: candidates first, then offers.
pub async fn place(state: &AppState, spec_json: &str) -> Result<Submitted, ApiError> {
    let raw: RawGuestSpec = serde_json::from_str(spec_json)
        .map_err(|e| ApiError::bad_request(format!("guest spec: {e}")))?;
    // A workload needs no file: check it here, as every target would.
    if raw.kind == "workload" {
        raw.validate()?;
    }
    let p2p = state.p2p.get().ok_or_else(|| ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: "the p2p endpoint is not running yet".into(),
        state_changed: false,
    })?;
    let need = Need {
        load: GuestLoad {
            vcpus: u64::from(raw.vcpus),
            memory_mib: raw.memory_mib,
        },
        bid_milli: raw.bid_milli,
    };
    let placement = state.guests.place(need).await?;
    let me = Origin {
        node: state.node.id,
        name: state.node.name.clone(),
        moved: false,
        by_rule: false,
    };
    // A new offer starts only while one more (offer and confirmation) fits
    // in the API's request timeout.
    let per_offer = 2 * (p2p.offer_timeout() + std::time::Duration::from_secs(1));
    let deadline = std::time::Instant::now()
        + state
            .gate
            .config
            .request_timeout
            .saturating_sub(per_offer + std::time::Duration::from_secs(1));
    let mut offers = Vec::new();
    let mut cut = false;
    for target in placement.targets {
        if std::time::Instant::now() > deadline {
            cut = true;
            break;
        }
        let (node, name, price_milli, landed) = match target {
            Target::Local { price_milli } => {
                let landed = here(state, spec_json, me.clone()).await;
                (me.node, me.name.clone(), price_milli, landed)
            }
            Target::Peer {
                node,
                name,
                endpoint,
                price_milli,
            } => {
                let landed =
                    there(p2p, node, endpoint, spec_json)
                        .await
                        .map_err(|Unsure(why)| ApiError {
                            status: StatusCode::GATEWAY_TIMEOUT,
                            message: format!(
                                "the guest may run on {name}: {why}; it was offered nowhere else"
                            ),
                            state_changed: true,
                        })?;
                (node, name, price_milli, landed)
            }
        };
        let outcome = match &landed {
            Ok(_) => "started".to_string(),
            Err(why) => why.clone(),
        };
        offers.push(Attempt {
            node,
            name: name.clone(),
            price_milli,
            outcome,
        });
        if let Ok((guest, guest_name)) = landed {
            return Ok(Submitted {
                node,
                name,
                guest,
                guest_name,
                offers,
                candidates: placement.candidates,
            });
        }
    }
    let mut message = nowhere(placement.candidates, &placement.skipped, &offers);
    if cut {
        message.push_str("; no time was left for more offers within api.request_timeout_ms");
    }
    Err(ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message,
        state_changed: false,
    })
}

/// An offer taken whose confirmation got no answer: the guest may run
/// there, so it is offered nowhere else.
#[derive(Debug)]
struct Unsure(String);

/// The guest on this node: started held, then run (the offer and its
/// confirmation, without the network).
async fn here(state: &AppState, spec_json: &str, me: Origin) -> Result<(u64, String), String> {
    let spec = GuestSpec::from_json_in(spec_json, state.guests.kernel_dir())
        .map_err(|e| ApiError::from(e).message)?;
    let g = state
        .guests
        .start_from(spec, Some(me), None)
        .await
        .map_err(|e| e.message)?;
    if let Err(e) = state.guests.release(g.id.0).await {
        let _ = state.guests.kill(&g.id.0.to_string()).await;
        return Err(format!("started but could not run: {}", e.message));
    }
    Ok((g.id.0, g.name))
}

/// The guest offered to `node`, then confirmed. `Ok(Err(why))`: refused,
/// nothing runs there; `Err(Unsure)`: it was taken and may run there.
async fn there(
    p2p: &crate::p2p::P2p,
    node: NodeId,
    endpoint: std::net::SocketAddr,
    spec_json: &str,
) -> Result<Result<(u64, String), String>, Unsure> {
    let offer = Request::Offer {
        spec_json: spec_json.to_owned(),
    };
    // No answer to the offer: the target never confirmed, so it never runs it.
    let (guest, name) = match p2p.send(node, endpoint, offer).await {
        Ok(Answer::Started { guest, name, .. }) => (guest, name),
        Ok(Answer::Refused { reason }) => return Ok(Err(reason)),
        Ok(
            Answer::Confirmed | Answer::Outcome { .. } | Answer::Pending | Answer::Gossip { .. },
        ) => return Ok(Err("an answer out of turn".into())),
        Err(e) => return Ok(Err(e.to_string())),
    };
    match p2p.send(node, endpoint, Request::Confirm { guest }).await {
        Ok(Answer::Confirmed) => Ok(Ok((guest, name))),
        // Its hold ended first: it killed the guest.
        Ok(Answer::Refused { reason }) => Ok(Err(reason)),
        Ok(
            Answer::Started { .. }
            | Answer::Outcome { .. }
            | Answer::Pending
            | Answer::Gossip { .. },
        ) => Err(Unsure("an answer out of turn".into())),
        Err(e) => Err(Unsure(format!(
            "guest g{guest} was held there, and its confirmation got no answer ({e})"
        ))),
    }
}

/// Why a guest landed nowhere, in one line.
fn nowhere(candidates: usize, s: &Skipped, offers: &[Attempt]) -> String {
    let mut why = format!("the guest landed nowhere: {candidates} candidate nodes");
    let parts: Vec<String> = [
        (s.not_counting, "dead, stale or unverified"),
        (s.hot, "hot"),
        (s.above_bid, "priced above the bid"),
        (s.no_room, "without room"),
        (s.no_endpoint, "without an offer endpoint"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if !parts.is_empty() {
        why.push_str(&format!(" (left out: {})", parts.join(", ")));
    }
    for a in offers {
        why.push_str(&format!("; {} refused: {}", a.name, a.outcome));
    }
    why
}
