//! The ring probe: each probe period a node also probes the next member up
//! the ring of node ids, beside foca's own probe of a member in turn.
//!
//! foca probes its members in a shuffled round robin, so the chance that
//! nobody has probed a dead member k periods after it died falls only as
//! e^-k: at n = 30, about one kill in twenty waited a fourth period before
//! anyone asked, and its detection took 6–7 s. With each node also probing
//! its successor, every member is probed by its predecessor each period,
//! and a kill is suspected within one period of it.
//!
//! The probe is SWIM's, in foca's own messages so that any member answers
//! it: a `Ping`, then a `PingReq` through `fanout` members if no answer
//! came within the round trip, and a suspicion if none came by the end of
//! the period. The suspicion then runs as foca's own: the same down timer,
//! the same notices to the suspect. Any sealed datagram from the target
//! answers the probe: it proves life as well as an ack does.
//!
//! The node whose down timer declares a member down then tells every
//! member straight away ([`Swim::push_down`]), as a record is pushed:
//! infection alone left about one member in a few hundred without word
//! of a death for several seconds more.
//!
//! [`Ring`] is a plain state machine: its `handle_timeout` says what to
//! send or suspect, and the datagrams heard are fed in; the `impl Swim`
//! here carries that out.

use super::{Peer, Swim};
use crate::node_id::NodeId;
use foca::{Incarnation, ProbeNumber, Timer};

/// What the driver must do for the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// Send a foca `Ping(number)` to the target.
    Ping(Peer, ProbeNumber),
    /// Ask members to probe the target (foca `PingReq`).
    PingReq(Peer, ProbeNumber),
    /// The target did not answer within a period: suspect it, at the
    /// incarnation it had when the probe began.
    Suspect(Peer, Incarnation),
}

#[derive(Debug)]
struct Probe {
    target: Peer,
    incarnation: Incarnation,
    number: ProbeNumber,
    answered: bool,
    /// When to ask others, while unanswered.
    indirect_at_ms: Option<u64>,
}

/// The ring probe of one node.
#[derive(Debug)]
pub(super) struct Ring {
    probe: Option<Probe>,
    number: ProbeNumber,
    next_ms: u64,
    period_ms: u64,
    rtt_ms: u64,
}

impl Ring {
    /// A ring that probes every `period_ms`, asking others after `rtt_ms`.
    pub(super) fn new(now_ms: u64, period_ms: u64, rtt_ms: u64) -> Self {
        Self {
            probe: None,
            number: 0,
            next_ms: now_ms + period_ms,
            period_ms,
            rtt_ms: rtt_ms.min(period_ms),
        }
    }

    /// When [`Self::handle_timeout`] is next due.
    pub(super) fn poll_timeout(&self) -> u64 {
        let indirect = self.probe.as_ref().and_then(|p| p.indirect_at_ms);
        indirect.map_or(self.next_ms, |at| at.min(self.next_ms))
    }

    /// Runs what is due at `now_ms`. `successor` names the next member up
    /// the ring and its incarnation (asked only when a new probe begins).
    pub(super) fn handle_timeout(
        &mut self,
        now_ms: u64,
        successor: impl FnOnce() -> Option<(Peer, Incarnation)>,
    ) -> Vec<Step> {
        let mut steps = Vec::new();
        if let Some(p) = self.probe.as_mut() {
            if p.indirect_at_ms.is_some_and(|at| at <= now_ms) {
                p.indirect_at_ms = None;
                if !p.answered {
                    steps.push(Step::PingReq(p.target.clone(), p.number));
                }
            }
        }
        if now_ms < self.next_ms {
            return steps;
        }
        if let Some(p) = self.probe.take() {
            if !p.answered {
                steps.push(Step::Suspect(p.target, p.incarnation));
            }
        }
        self.next_ms = now_ms + self.period_ms;
        if let Some((target, incarnation)) = successor() {
            self.number = self.number.wrapping_add(1);
            steps.push(Step::Ping(target.clone(), self.number));
            self.probe = Some(Probe {
                target,
                incarnation,
                number: self.number,
                answered: false,
                indirect_at_ms: Some(now_ms + self.rtt_ms),
            });
        }
        steps
    }

    /// A sealed datagram from `sender` arrived.
    pub(super) fn heard(&mut self, sender: NodeId) {
        if let Some(p) = self.probe.as_mut().filter(|p| p.target.id == sender) {
            p.answered = true;
        }
    }

    /// A member forwarded `origin`'s answer to our `PingReq(number)`.
    pub(super) fn forwarded(&mut self, origin: NodeId, number: ProbeNumber) {
        if let Some(p) = self
            .probe
            .as_mut()
            .filter(|p| p.target.id == origin && p.number == number)
        {
            p.answered = true;
        }
    }
}

impl Swim {
    /// A member we declared down is pushed so straight to every member,
    /// up to `push_max` (rack neighbours first).
    pub(super) fn push_down(&mut self, member: Peer, incarnation: foca::Incarnation) {
        let down = self
            .foca
            .iter_membership_state()
            .any(|m| m.id() == &member && m.state() == foca::State::Down);
        if !down {
            return;
        }
        let update = foca::Member::new(member, incarnation, foca::State::Down);
        for peer in self.push_set(self.config.push_max) {
            self.send_foca(&peer, foca::Message::Gossip, Some(&update));
        }
    }

    /// Carries out what the ring probe says is due.
    pub(super) fn run_ring(&mut self, now_ms: u64) {
        if now_ms < self.ring.poll_timeout() {
            return;
        }
        let me = self.me.id;
        let foca = &self.foca;
        let steps = self.ring.handle_timeout(now_ms, || {
            let next = successor(me, foca.iter_members().map(|m| m.id()))?.clone();
            let incarnation = foca
                .iter_membership_state()
                .find(|m| m.id() == &next)
                .map(|m| m.incarnation())?;
            Some((next, incarnation))
        });
        for step in steps {
            match step {
                Step::Ping(target, number) => {
                    self.send_foca(&target, foca::Message::Ping(number), None);
                }
                Step::PingReq(target, probe_number) => {
                    for via in
                        self.random_members(self.config.fanout, std::slice::from_ref(&target))
                    {
                        let ask = foca::Message::PingReq {
                            target: target.clone(),
                            probe_number,
                        };
                        self.send_foca(&via, ask, None);
                    }
                }
                Step::Suspect(target, incarnation) => self.suspect(target, incarnation),
            }
        }
        self.drain_runtime();
    }

    /// Suspects a member that failed the ring probe, as foca suspects one
    /// that failed its own: the suspicion is gossiped, and a down timer
    /// runs, unless it refuted meanwhile (a higher incarnation) or is gone.
    fn suspect(&mut self, target: Peer, incarnation: foca::Incarnation) {
        let Some(token) = self.token else { return };
        let standing = self.foca.iter_membership_state().any(|m| {
            m.id() == &target && m.incarnation() == incarnation && m.state() != foca::State::Down
        });
        if !standing {
            return;
        }
        let suspicion = foca::Member::new(target.clone(), incarnation, foca::State::Suspect);
        if self
            .foca
            .apply_many(std::iter::once(suspicion), true, &mut self.runtime)
            .is_ok()
        {
            let timer = Timer::ChangeSuspectToDown {
                member_id: target,
                incarnation,
                token,
            };
            self.schedule(self.config.suspect_to_down_ms, timer);
        }
    }
}

/// The member with the smallest id above `me`, or else the smallest.
pub(super) fn successor<'a>(
    me: NodeId,
    members: impl Iterator<Item = &'a Peer>,
) -> Option<&'a Peer> {
    let mut above: Option<&Peer> = None;
    let mut lowest: Option<&Peer> = None;
    for p in members {
        if p.id > me && above.is_none_or(|a| p.id < a.id) {
            above = Some(p);
        }
        if lowest.is_none_or(|l| p.id < l.id) {
            lowest = Some(p);
        }
    }
    above.or(lowest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn peer(b: u8) -> Peer {
        let mut id = [0u8; crate::node_id::NODE_ID_LEN];
        id[0] = b;
        Peer {
            id: NodeId(id),
            generation: 1,
            addr: SocketAddr::from(([127, 0, 0, 1], 7000 + u16::from(b))),
        }
    }

    #[test]
    fn the_successor_is_the_next_id_up_and_wraps() {
        let ps = [peer(9), peer(3), peer(5)];
        assert_eq!(successor(peer(4).id, ps.iter()), Some(&ps[2]));
        assert_eq!(successor(peer(5).id, ps.iter()), Some(&ps[0]));
        assert_eq!(successor(peer(9).id, ps.iter()), Some(&ps[1]));
        assert_eq!(successor(peer(1).id, [].iter()), None);
    }

    #[test]
    fn an_unanswered_probe_asks_others_then_suspects_and_an_answer_stops_it() {
        let mut ring = Ring::new(0, 800, 250);
        let next = || Some((peer(2), 7));
        assert_eq!(ring.poll_timeout(), 800);
        assert_eq!(ring.handle_timeout(800, next), vec![Step::Ping(peer(2), 1)]);
        assert_eq!(ring.poll_timeout(), 1_050);
        assert_eq!(
            ring.handle_timeout(1_050, next),
            vec![Step::PingReq(peer(2), 1)]
        );
        assert_eq!(
            ring.handle_timeout(1_600, next),
            vec![Step::Suspect(peer(2), 7), Step::Ping(peer(2), 2)]
        );
        // A forwarded answer for an older probe, or from another node, is no answer.
        ring.forwarded(peer(2).id, 1);
        ring.heard(peer(3).id);
        assert_eq!(
            ring.handle_timeout(1_850, next),
            vec![Step::PingReq(peer(2), 2)]
        );
        ring.forwarded(peer(2).id, 2);
        assert_eq!(
            ring.handle_timeout(2_400, next),
            vec![Step::Ping(peer(2), 3)]
        );
        ring.heard(peer(2).id);
        assert_eq!(ring.handle_timeout(2_650, next), vec![]);
        assert_eq!(ring.handle_timeout(3_200, || None), vec![]);
        assert_eq!(ring.poll_timeout(), 4_000);
    }
}
