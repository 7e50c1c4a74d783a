//! The agent's desk for guest requests: it hands each to the node core,
//! carries out the core's [`GuestAction`]s on [`Guests`], and answers each
//! requester once its guest started, failed to start or was refused.

use super::{load_of, ApiError, GuestMsg, Guests, Inbox, Reply};
use axum::http::StatusCode;
use maxwell_core::{GuestAction, NodeCore, Output, Refusal, Ticket};
use maxwell_vmm::{GuestInfo, GuestSpec};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Requests between the core's ticket and their answer.
#[derive(Debug, Default)]
pub struct Desk {
    /// Asked of the core, not yet admitted or refused.
    asked: BTreeMap<Ticket, (GuestSpec, Reply)>,
    /// Admitted and starting.
    starting: BTreeMap<Ticket, Reply>,
}

impl Desk {
    /// Feeds one message to the core. The core's answer is among its
    /// outputs: carry them out with [`Self::act`].
    pub fn handle(&mut self, core: &mut NodeCore, now_ms: u64, msg: GuestMsg) {
        match msg {
            GuestMsg::Start { spec, reply } => {
                let ticket = core.request_guest(now_ms, load_of(&spec));
                self.asked.insert(ticket, (spec, reply));
            }
            GuestMsg::Started {
                ticket,
                guest,
                result,
            } => {
                core.handle_guest_started(now_ms, ticket, guest.map(|g| g.0));
                if let Some(reply) = self.starting.remove(&ticket) {
                    // The requester may have gone; the guest runs regardless.
                    let _ = reply.send(result);
                }
            }
            GuestMsg::Killed(id) => core.handle_guest_gone(now_ms, id.0),
            GuestMsg::Surveyed(live) => core.handle_guests(now_ms, &live),
        }
    }

    /// Carries out one of the core's guest actions.
    pub async fn act(&mut self, guests: &Guests, action: GuestAction) {
        match action {
            GuestAction::Start(ticket) => {
                if let Some((spec, reply)) = self.asked.remove(&ticket) {
                    self.starting.insert(ticket, reply);
                    guests.dispatch_start(ticket, spec);
                }
            }
            GuestAction::Refuse(ticket, why) => {
                if let Some((_, reply)) = self.asked.remove(&ticket) {
                    let _ = reply.send(Err(refused(&why)));
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
    ) -> anyhow::Result<()> {
        if specs.is_empty() {
            return Ok(());
        }
        if let Err(e) = guests.backend() {
            tracing::warn!(specs = specs.len(), reason = %e.message, "the specs in guests.specs_dir are not started");
            return Ok(());
        }
        for (path, spec) in specs {
            match self.start_one(core, &now, guests, inbox, spec).await {
                Ok(g) => tracing::info!(
                    guest = %g.id,
                    name = %g.name,
                    file = %path.display(),
                    backend = %g.backend,
                    "guest started"
                ),
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
    ) -> Result<GuestInfo, ApiError> {
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        let mut msg = GuestMsg::Start { spec, reply };
        loop {
            self.handle(core, now(), msg);
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

/// A refusal as the requester hears it: 409 when the host is full, 503 when
/// the node is leaving.
fn refused(why: &Refusal) -> ApiError {
    match why {
        Refusal::Vcpus { .. } | Refusal::Memory { .. } => ApiError {
            status: StatusCode::CONFLICT,
            message: why.to_string(),
            state_changed: false,
        },
        Refusal::Leaving => super::shutting_down(),
    }
}
