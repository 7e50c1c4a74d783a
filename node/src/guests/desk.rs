//! The agent's desk for guest requests: it hands each to the node core,
//! carries out the core's [`GuestAction`]s on [`Guests`], and answers each
//! requester once its guest started, failed to start or was refused.

use super::{load_of, ApiError, GuestMsg, Guests, Inbox, Origin, PlacedBook, Reply};
use crate::market::Bazaar;
use axum::http::StatusCode;
use maxwell_core::{GuestAction, NodeCore, Output, Refusal, Ticket};
use maxwell_types::sync::lock;
use maxwell_vmm::{GuestId, GuestInfo, GuestSpec};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Requests between the core's ticket and their answer.
#[derive(Debug)]
pub struct Desk {
    /// Asked of the core, not yet admitted or refused.
    asked: BTreeMap<Ticket, Asked>,
    /// Admitted and starting.
    starting: BTreeMap<Ticket, Asked>,
    /// Where placed guests came from, and which are held, once they start.
    placed: PlacedBook,
}

/// One request: the spec (for its market terms), the requester, and where
/// a placed guest came from.
#[derive(Debug)]
struct Asked {
    spec: GuestSpec,
    reply: Reply,
    origin: Option<Origin>,
    snapshot: Option<Box<maxwell_vmm::GuestSnapshot>>,
}

/// A guest that started with market terms: it joins the market before its
/// requester hears (the deposit is in the ledger first).
#[derive(Debug)]
pub struct Joining {
    pub vm: GuestId,
    pub spec: GuestSpec,
    pub reply: Reply,
    pub info: GuestInfo,
}

impl Joining {
    /// Joins `bazaar` (if any), then answers: on a refusal the guest is
    /// killed and the requester told why.
    pub async fn settle(self, bazaar: Option<&mut Bazaar>, guests: &Guests, now_ms: u64) {
        let joined = match bazaar {
            Some(b) => b.join(self.vm.0, &self.spec, now_ms),
            None => Ok(()),
        };
        match joined {
            Ok(()) => {
                let _ = self.reply.send(Ok(self.info));
            }
            Err(e) => {
                let id = format!("{}", self.vm.0);
                let _ = guests.kill(&id).await;
                let _ = self.reply.send(Err(ApiError {
                    state_changed: false,
                    ..e
                }));
            }
        }
    }
}

impl Desk {
    /// A desk that records placed guests in `placed`.
    pub fn new(placed: PlacedBook) -> Self {
        Self {
            asked: BTreeMap::new(),
            starting: BTreeMap::new(),
            placed,
        }
    }

    /// Feeds one message to the core. The core's answer is among its
    /// outputs: carry them out with [`Self::act`]. A started guest with
    /// market terms is handed back to join the market before it is answered.
    pub fn handle(&mut self, core: &mut NodeCore, now_ms: u64, msg: GuestMsg) -> Option<Joining> {
        match msg {
            GuestMsg::Start {
                spec,
                reply,
                origin,
                snapshot,
            } => {
                let load = load_of(&spec);
                let bid = spec.terms.map(|t| t.bid_milli);
                let ticket = match &origin {
                    Some(o) if o.by_rule => core.offer_moved_guest(now_ms, load, bid),
                    Some(_) => core.offer_guest(now_ms, load, bid),
                    None => core.request_guest(now_ms, load),
                };
                self.asked.insert(
                    ticket,
                    Asked {
                        spec,
                        reply,
                        origin,
                        snapshot,
                    },
                );
            }
            GuestMsg::Started {
                ticket,
                guest,
                result,
            } => {
                core.handle_guest_started(now_ms, ticket, guest.map(|g| g.0));
                let Asked {
                    spec,
                    reply,
                    origin,
                    ..
                } = self.starting.remove(&ticket)?;
                // A moved guest's account opens with its wallet when the
                // move commits, not with a deposit now.
                let moved = origin.as_ref().is_some_and(|o| o.moved);
                if let (Some(vm), Some(origin)) = (guest, origin) {
                    let mut p = lock(&self.placed);
                    p.origins.insert(vm.0, origin);
                    p.held.insert(vm.0);
                    if moved {
                        p.arrived.insert(vm.0, now_ms);
                    }
                }
                match (guest, result) {
                    (Some(vm), Ok(info)) if spec.terms.is_some() && !moved => {
                        return Some(Joining {
                            vm,
                            spec,
                            reply,
                            info,
                        })
                    }
                    // The requester may have gone; the guest runs regardless.
                    (_, result) => {
                        let _ = reply.send(result);
                    }
                }
            }
            GuestMsg::Killed(id) => core.handle_guest_gone(now_ms, id.0),
            GuestMsg::Surveyed(live) => {
                lock(&self.placed).retain(|vm| live.iter().any(|(id, _)| *id == vm));
                core.handle_guests(now_ms, &live)
            }
            // The market's and placement's requests are the agent's, never the desk's.
            GuestMsg::Market(_)
            | GuestMsg::MoveFailed(_)
            | GuestMsg::Place { .. }
            | GuestMsg::MoveTarget { .. }
            | GuestMsg::Endpoint { .. } => {}
        }
        None
    }

    /// Carries out one of the core's guest actions.
    pub async fn act(&mut self, guests: &Guests, action: GuestAction) {
        match action {
            GuestAction::Start(ticket) => {
                if let Some(mut asked) = self.asked.remove(&ticket) {
                    let (spec, held) = (asked.spec.clone(), asked.origin.is_some());
                    let snapshot = asked.snapshot.take();
                    self.starting.insert(ticket, asked);
                    guests.dispatch_start(ticket, spec, held, snapshot);
                }
            }
            GuestAction::Refuse(ticket, why) => {
                if let Some(asked) = self.asked.remove(&ticket) {
                    let _ = asked.reply.send(Err(refused(&why)));
                }
            }
            GuestAction::Survey => guests.dispatch_survey(),
            GuestAction::StopAll => guests.stop_all().await,
        }
    }

    /// Starts the specs of `guests.specs_dir`, one after the other, before
    /// the agent serves (the core has asked for nothing else yet). A spec
    /// that cannot be started is the error; the guests started so far are
    /// killed.
    pub async fn start_specs(
        &mut self,
        core: &mut NodeCore,
        now: impl Fn() -> u64,
        guests: &Guests,
        inbox: &mut Inbox,
        specs: Vec<(PathBuf, GuestSpec)>,
        mut bazaar: Option<&mut Bazaar>,
    ) -> anyhow::Result<()> {
        if specs.is_empty() {
            return Ok(());
        }
        if let Err(e) = guests.backend() {
            tracing::warn!(specs = specs.len(), reason = %e.message, "the specs in guests.specs_dir are not started");
            return Ok(());
        }
        for (path, spec) in specs {
            match self
                .start_one(core, &now, guests, inbox, spec, bazaar.as_deref_mut())
                .await
            {
                Ok(g) => {
                    // This host's config runs it: it never moves away.
                    lock(&self.placed).pinned.insert(g.id.0);
                    tracing::info!(
                        guest = %g.id,
                        name = %g.name,
                        file = %path.display(),
                        backend = %g.backend,
                        "guest started"
                    )
                }
                Err(e) => {
                    guests.stop_all().await;
                    anyhow::bail!("guest spec {}: cannot start: {}", path.display(), e.message);
                }
            }
        }
        Ok(())
    }

    async fn start_one(
        &mut self,
        core: &mut NodeCore,
        now: &impl Fn() -> u64,
        guests: &Guests,
        inbox: &mut Inbox,
        spec: GuestSpec,
        mut bazaar: Option<&mut Bazaar>,
    ) -> Result<GuestInfo, ApiError> {
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        let mut msg = GuestMsg::Start {
            spec,
            reply,
            origin: None,
            snapshot: None,
        };
        loop {
            if let Some(joining) = self.handle(core, now(), msg) {
                joining.settle(bazaar.as_deref_mut(), guests, now()).await;
            }
            while let Some(output) = core.poll_output() {
                match output {
                    Output::Guest(action) => self.act(guests, action).await,
                    other => debug_assert!(false, "before the first reading: {other:?}"),
                }
            }
            if let Ok(answer) = answer.try_recv() {
                return answer;
            }
            msg = inbox
                .recv()
                .await
                .ok_or_else(|| ApiError::internal("the guest channel closed"))?;
        }
    }
}

/// A refusal as the requester hears it: 409 when the host is full, its
/// price above the bid or a moved guest came too soon after another, 503
/// when the node is leaving.
fn refused(why: &Refusal) -> ApiError {
    match why {
        Refusal::Vcpus { .. }
        | Refusal::Memory { .. }
        | Refusal::AboveBid { .. }
        | Refusal::Paced { .. } => ApiError {
            status: StatusCode::CONFLICT,
            message: why.to_string(),
            state_changed: false,
        },
        Refusal::Leaving => super::shutting_down(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use maxwell_core::Admission;

    fn start(desk: &mut Desk, core: &mut NodeCore, now: u64, by_rule: Option<bool>) -> GuestAction {
        let spec = GuestSpec::from_json(
            r#"{"kind": "workload", "vcpus": 1, "memory_mib": 4, "payload": "count"}"#,
        )
        .expect("spec");
        let origin = by_rule.map(|by_rule| Origin {
            node: maxwell_types::NodeId([1; 10]),
            name: "src".into(),
            moved: true,
            by_rule,
        });
        let (reply, _answer) = tokio::sync::oneshot::channel();
        let msg = GuestMsg::Start {
            spec,
            reply,
            origin,
            snapshot: None,
        };
        assert!(desk.handle(core, now, msg).is_none());
        std::iter::from_fn(|| core.poll_output())
            .find_map(|o| match o {
                Output::Guest(a) => Some(a),
                _ => None,
            })
            .expect("an answer")
    }

    #[test]
    fn a_guest_moved_by_the_heat_rule_is_paced_and_one_an_operator_moved_is_not() {
        let config = crate::config::RawConfig::from_toml("")
            .expect("empty")
            .validate()
            .expect("defaults");
        let admission = Admission {
            cores: 8,
            memory_mib: 1024,
            cpu_fraction: 1.0,
            memory_fraction: 1.0,
        };
        let mut core = NodeCore::new(config.core(admission), 0, 1);
        let mut desk = Desk::new(PlacedBook::default());
        let started = |a: &GuestAction| matches!(a, GuestAction::Start(_));
        assert!(started(&start(&mut desk, &mut core, 0, Some(true))));
        let paced = start(&mut desk, &mut core, 1_000, Some(true));
        assert!(
            matches!(paced, GuestAction::Refuse(_, Refusal::Paced { .. })),
            "{paced:?}"
        );
        for now in [1_000, 1_001] {
            assert!(started(&start(&mut desk, &mut core, now, Some(false))));
            assert!(started(&start(&mut desk, &mut core, now, None)));
        }
    }
}
