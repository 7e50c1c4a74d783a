//! Guests on this host: the agent's thin driver over [`maxwell_vmm`].
//!
//! [`Guests`] owns the backend (`guests.backend`: KVM, processes, or none)
//! and carries out what the node core decides about guests: every request
//! to start one (from the API, [`crate::http::guests`], as a [`GuestMsg`] to
//! the agent loop; or a spec of `guests.specs_dir`, before the loop runs)
//! is admitted or refused by the core, and [`desk::Desk`] starts what was
//! admitted and answers the requester. The core also asks for a survey of
//! the live guests each gossip round, which runs here. A failed call is an
//! [`ApiError`]: the API's one error shape, with the HTTP status it maps to.
//! Backend calls block briefly (a pause waits for every vCPU to park), so
//! they run off the async runtime.
//!
//! Every `start` runs on one long-lived thread (`guest-start`): the process
//! backend's children die with the *thread* that forked them
//! (`PR_SET_PDEATHSIG`), and tokio retires idle blocking threads after 10 s.
//! Killing every guest runs there too, behind every start asked for before.
//!
pub mod config;
pub mod desk;

use crate::guests::config::{GuestBackendKind, GuestsConfig};
use anyhow::{anyhow, Context};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use maxwell_core::{Admission, Ticket};
use maxwell_types::sync::lock;
use maxwell_vmm::{
    open_backend, CapConfig, GuestBackend, GuestId, GuestInfo, GuestSpec, KvmBackend,
    ProcessBackend, RawGuestSpec, VmmError,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use tokio::sync::{mpsc as channel, oneshot};

/// A job for the `guest-start` thread.
type Job = Box<dyn FnOnce() + Send>;

/// Where the answer to a start goes.
pub type Reply = oneshot::Sender<Result<GuestInfo, ApiError>>;

/// Where a guest came from, as `maxwell guests` shows it: the node whose
/// placement sent it here (this node's own, for a submission placed here).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Origin {
    pub node: maxwell_types::NodeId,
    pub name: String,
    /// It ran there and moved here (rather than being submitted there).
    #[serde(default)]
    pub moved: bool,
    /// Its move was the heat rule's there, not an operator's.
    #[serde(default)]
    pub by_rule: bool,
}

/// The guests placed here: where each came from (a guest started through
/// `POST /v1/guests` or a spec file has no origin), which are still held
/// for their submitter's confirmation, and which the market has paused.
#[derive(Debug, Default)]
pub struct Placed {
    pub origins: std::collections::BTreeMap<u64, Origin>,
    pub held: std::collections::BTreeSet<u64>,
    market_paused: std::collections::BTreeSet<u64>,
    /// When moved guests arrived (the move rule's cooldown), unix ms.
    pub arrived: std::collections::BTreeMap<u64, u64>,
    /// Guests of `guests.specs_dir`: this host's config runs them (and
    /// starts them again after a restart), so they never move.
    pub pinned: std::collections::BTreeSet<u64>,
}

impl Placed {
    /// Forgets every guest that no longer runs.
    pub fn retain(&mut self, live: impl Fn(u64) -> bool) {
        self.origins.retain(|vm, _| live(*vm));
        self.held.retain(|vm| live(*vm));
        self.market_paused.retain(|vm| live(*vm));
        self.arrived.retain(|vm, _| live(*vm));
        self.pinned.retain(|vm| live(*vm));
    }
}

/// [`Placed`], shared by the desk, the API and the market's actions.
pub type PlacedBook = Arc<std::sync::Mutex<Placed>>;

/// What reaches the agent loop about guests, in the order it happened.
#[derive(Debug)]
pub enum GuestMsg {
    /// Start this (validated) guest if the node admits it; answer on
    /// `reply`. A placed guest (`origin`) must also bid at least our price,
    /// and starts held (paused before it runs) until its submitter confirms.
    Start {
        spec: GuestSpec,
        reply: Reply,
        origin: Option<Origin>,
        /// A migrated KVM guest's memory and registers: it is restored
        /// (held) rather than started afresh.
        snapshot: Option<Box<maxwell_vmm::GuestSnapshot>>,
    },
    /// Where to offer a submitted guest (`maxwell submit`).
    Place {
        need: maxwell_core::Need,
        reply: oneshot::Sender<maxwell_core::Placement>,
    },
    /// Where member `node` takes offers now, as gossiped.
    Endpoint {
        node: maxwell_types::NodeId,
        reply: oneshot::Sender<Option<std::net::SocketAddr>>,
    },
    /// Where a guest could move (`maxwell move`): the member `to`, or any.
    MoveTarget {
        need: maxwell_core::Need,
        to: Option<String>,
        reply: oneshot::Sender<Result<maxwell_core::Target, String>>,
    },
    /// An admitted start finished on the `guest-start` thread: `guest` runs
    /// (if it does), and `result` is the requester's answer.
    Started {
        ticket: Ticket,
        guest: Option<GuestId>,
        result: Result<GuestInfo, ApiError>,
    },
    /// A guest was killed through the API.
    Killed(GuestId),
    /// The backend's live guests, listed on the `guest-start` thread (so
    /// after the outcome of every start begun before).
    Surveyed(Vec<(u64, maxwell_core::GuestLoad)>),
    /// A call on the market (a top-up, a bid).
    Market(MarketCall),
    /// A move the heat rule asked for did not happen: the guest runs on here.
    MoveFailed(u64),
}

/// A market call from the API, answered once its entry is on disk.
#[derive(Debug)]
pub enum MarketCall {
    Fund {
        vm: u64,
        amount_milli: u64,
        reply: oneshot::Sender<Result<crate::market::AccountRow, ApiError>>,
    },
    Bid {
        vm: u64,
        bid_milli: u64,
        reply: oneshot::Sender<Result<crate::market::AccountRow, ApiError>>,
    },
    /// A wallet transfer's steps (docs/placement.md): see
    /// [`crate::market::Moving`].
    Move(Box<crate::market::Moving>),
}

/// The agent loop's end of the [`GuestMsg`] channel.
pub type Inbox = channel::UnboundedReceiver<GuestMsg>;

/// This host's guests: the backend, or why there is none.
#[derive(Debug)]
pub struct Guests {
    backend: Option<Arc<dyn GuestBackend>>,
    /// Why guests are disabled (when `backend` is `None`).
    disabled: String,
    /// The `guest-start` thread's queue.
    starter: Option<mpsc::Sender<Job>>,
    /// How much of the host guests may take.
    share: Admission,
    /// Where Linux kernels load from.
    kernel_dir: Option<PathBuf>,
    /// To the agent loop.
    loop_tx: channel::UnboundedSender<GuestMsg>,
    /// A survey is queued and has not run: the next one is not queued.
    surveying: Arc<AtomicBool>,
    /// The guests placed here: origins, holds.
    pub placed: PlacedBook,
    /// CPU time spent on the market's work (metering, ticks, the ledger,
    /// and carrying out its actions), ns.
    pub market_cpu_ns: Arc<std::sync::atomic::AtomicU64>,
}

/// CPU time of the calling thread, ns.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// This host's cores and memory, with the configured fractions.
pub fn host_share(cfg: &GuestsConfig) -> Admission {
    // SAFETY: sysconf has no preconditions.
    let (cores, pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_NPROCESSORS_ONLN),
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let n = |v: libc::c_long| u64::try_from(v).unwrap_or(0);
    Admission {
        cores: n(cores).max(1),
        memory_mib: n(pages).saturating_mul(n(page)) >> 20,
        cpu_fraction: cfg.cpu_fraction,
        memory_fraction: cfg.memory_fraction,
    }
}

/// What `spec` takes of the host, as admission counts it.
pub fn load_of(spec: &GuestSpec) -> maxwell_core::GuestLoad {
    maxwell_core::GuestLoad {
        vcpus: u64::from(spec.vcpus.get()),
        memory_mib: u64::from(spec.memory.mib()),
    }
}

impl Guests {
    /// No guests on this node; `why` is what API callers are told.
    fn disabled(why: impl Into<String>) -> (Self, Inbox) {
        let (loop_tx, inbox) = channel::unbounded_channel();
        let guests = Guests {
            backend: None,
            disabled: why.into(),
            starter: None,
            share: Admission::NONE,
            kernel_dir: None,
            loop_tx,
            surveying: Arc::default(),
            placed: PlacedBook::default(),
            market_cpu_ns: Arc::default(),
        };
        (guests, inbox)
    }

    /// Where Linux kernels load from, if anywhere.
    pub fn kernel_dir(&self) -> Option<&Path> {
        self.kernel_dir.as_deref()
    }

    /// The host's share for guests (none when guests are disabled).
    pub fn share(&self) -> Admission {
        self.share
    }

    /// Opens the configured backend, and the channel its requests reach the
    /// agent loop by. `auto` never fails: KVM where `/dev/kvm` works, else
    /// processes. An explicitly requested backend that cannot be opened is
    /// an error (the agent refuses to start).
    pub fn open(cfg: &GuestsConfig) -> anyhow::Result<(Self, Inbox)> {
        let caps = CapConfig::default();
        let backend: Box<dyn GuestBackend> = match cfg.backend {
            GuestBackendKind::None => return Ok(Self::disabled("guests.backend is \"none\"")),
            GuestBackendKind::Auto => match open_backend(caps.clone()) {
                Ok((b, None)) => b,
                Ok((b, Some(why))) => {
                    tracing::info!(reason = %why, "/dev/kvm not usable: guests run on the process backend");
                    b
                }
                Err(e) => {
                    tracing::warn!(error = %e, "KVM backend failed to open: guests run on the process backend");
                    Box::new(ProcessBackend::with_caps(caps))
                }
            },
            GuestBackendKind::Kvm => Box::new(
                KvmBackend::with_caps(caps)
                    .context("guests.backend is \"kvm\" but KVM cannot be used")?,
            ),
            GuestBackendKind::Process => Box::new(ProcessBackend::with_caps(caps)),
        };
        let starter = match spawn_starter() {
            Ok(s) => s,
            Err(e) if cfg.backend == GuestBackendKind::Auto => {
                tracing::warn!(error = %e, "cannot start the guest-start thread: guests are disabled");
                return Ok(Self::disabled(format!(
                    "cannot start the guest-start thread: {e}"
                )));
            }
            Err(e) => return Err(anyhow!("guests: cannot start the guest-start thread: {e}")),
        };
        let share = host_share(cfg);
        tracing::info!(
            backend = %backend.name(),
            max_vcpus = share.max_vcpus(),
            max_memory_mib = share.max_memory_mib(),
            "guests enabled"
        );
        let (loop_tx, inbox) = channel::unbounded_channel();
        let guests = Guests {
            backend: Some(Arc::from(backend)),
            disabled: String::new(),
            starter: Some(starter),
            share,
            kernel_dir: cfg.kernel_dir.clone(),
            loop_tx,
            surveying: Arc::default(),
            placed: PlacedBook::default(),
            market_cpu_ns: Arc::default(),
        };
        Ok((guests, inbox))
    }

    /// The backend's name, or `None` when guests are disabled.
    pub fn backend_name(&self) -> Option<maxwell_vmm::BackendName> {
        self.backend.as_ref().map(|b| b.name())
    }

    pub(crate) fn backend(&self) -> Result<Arc<dyn GuestBackend>, ApiError> {
        self.backend.clone().ok_or_else(|| ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!("guests are disabled on this node: {}", self.disabled),
            state_changed: false,
        })
    }

    /// Every live guest, now. Blocks briefly: call it off the runtime.
    pub fn list_blocking(&self) -> Vec<GuestInfo> {
        self.backend.as_ref().map(|b| b.list()).unwrap_or_default()
    }

    /// Asks the node to start `spec` and waits for the answer: the guest's
    /// first snapshot, or why not.
    pub async fn start(&self, spec: GuestSpec) -> Result<GuestInfo, ApiError> {
        self.start_from(spec, None, None).await
    }

    /// As [`Self::start`], for a guest placed here from `origin`.
    pub async fn start_from(
        &self,
        spec: GuestSpec,
        origin: Option<Origin>,
        snapshot: Option<Box<maxwell_vmm::GuestSnapshot>>,
    ) -> Result<GuestInfo, ApiError> {
        self.backend()?;
        let (reply, answer) = oneshot::channel();
        self.loop_tx
            .send(GuestMsg::Start {
                spec,
                reply,
                origin,
                snapshot,
            })
            .map_err(|_| shutting_down())?;
        answer.await.map_err(|_| shutting_down())?
    }

    /// Tells the agent loop that the heat rule's move of `vm` did not
    /// happen (a loop that has stopped has nothing left to tell).
    pub fn move_failed(&self, vm: u64) {
        let _ = self.loop_tx.send(GuestMsg::MoveFailed(vm));
    }

    /// Asks the agent loop where a guest that needs `need` should go.
    pub async fn place(
        &self,
        need: maxwell_core::Need,
    ) -> Result<maxwell_core::Placement, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.loop_tx
            .send(GuestMsg::Place { need, reply })
            .map_err(|_| shutting_down())?;
        answer.await.map_err(|_| shutting_down())
    }

    /// Where member `node` takes offers now, if it is known.
    pub async fn endpoint_of(&self, node: maxwell_types::NodeId) -> Option<std::net::SocketAddr> {
        let (reply, answer) = oneshot::channel();
        self.loop_tx.send(GuestMsg::Endpoint { node, reply }).ok()?;
        answer.await.ok().flatten()
    }

    /// Asks the agent loop where a guest that needs `need` could move.
    pub async fn move_target(
        &self,
        need: maxwell_core::Need,
        to: Option<String>,
    ) -> Result<Result<maxwell_core::Target, String>, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.loop_tx
            .send(GuestMsg::MoveTarget { need, to, reply })
            .map_err(|_| shutting_down())?;
        answer.await.map_err(|_| shutting_down())
    }

    /// Runs a held guest: its submitter confirmed it. One the market paused
    /// meanwhile (outbid) stays paused: the market resumes it when it may.
    pub async fn release(&self, vm: u64) -> Result<GuestInfo, ApiError> {
        let run = {
            let mut p = lock(&self.placed);
            p.held.remove(&vm);
            !p.market_paused.contains(&vm)
        };
        self.act(&vm.to_string(), move |b, id| {
            if run {
                b.resume(id)?;
            }
            b.info(id)
        })
        .await
    }

    /// Marks guest `vm` as moving: held, so nothing but the move runs it
    /// (the market's resumes wait, an operator's are refused).
    pub fn begin_move(&self, vm: u64) -> Result<(), ApiError> {
        let paused = self.backend.as_ref().is_some_and(|b| {
            b.info(GuestId(vm))
                .is_ok_and(|i| i.state == maxwell_vmm::GuestState::Paused)
        });
        let mut p = lock(&self.placed);
        may_move(&p, vm)?;
        // The target runs what arrives, unless its own market pauses it:
        // an operator's pause would be lost on the way.
        if paused && !p.market_paused.contains(&vm) {
            return Err(ApiError {
                status: StatusCode::CONFLICT,
                message: format!(
                    "guest g{vm} is paused by an operator: resume it first (it would run on the target)"
                ),
                state_changed: false,
            });
        }
        p.held.insert(vm);
        Ok(())
    }

    /// Why guest `vm` cannot move now, if it cannot.
    pub fn may_move(&self, vm: u64) -> Result<(), ApiError> {
        may_move(&lock(&self.placed), vm)
    }

    /// Guest `vm` is no longer moving (it left, or was killed).
    pub fn end_move(&self, vm: u64) {
        lock(&self.placed).held.remove(&vm);
    }

    /// Of the market's `accounts`, those that can move now: running or
    /// paused (not exited), not held, pinned or moving, and of a kind that moves (a KVM Linux guest's devices do
    /// not), each with its arrival time if it moved here.
    pub fn movable(
        &self,
        accounts: &[maxwell_core::Movable],
        moving: impl Fn(u64) -> bool,
    ) -> Vec<maxwell_core::Movable> {
        let Some(backend) = &self.backend else {
            return Vec::new();
        };
        // The book's lock is not held across the backend's calls.
        let candidates: Vec<(maxwell_core::Movable, bool)> = {
            let p = lock(&self.placed);
            accounts
                .iter()
                .filter(|m| !p.held.contains(&m.vm) && !p.pinned.contains(&m.vm) && !moving(m.vm))
                .map(|m| {
                    let movable = maxwell_core::Movable {
                        arrived_at_ms: p.arrived.get(&m.vm).copied(),
                        ..*m
                    };
                    (movable, p.market_paused.contains(&m.vm))
                })
                .collect()
        };
        candidates
            .into_iter()
            .filter(|(m, market_paused)| {
                // Paused by the market it moves (and stays paused there);
                // paused by an operator it stays.
                let live = backend.info(GuestId(m.vm)).is_ok_and(|i| match i.state {
                    maxwell_vmm::GuestState::Running => true,
                    maxwell_vmm::GuestState::Paused => *market_paused,
                    _ => false,
                });
                live && backend.spec(GuestId(m.vm)).is_ok_and(|s| {
                    backend.name() != maxwell_vmm::BackendName::Kvm
                        || matches!(s.kind, maxwell_vmm::GuestKind::Workload(_))
                })
            })
            .map(|(m, _)| m)
            .collect()
    }

    /// The node a guest was placed from, if it was.
    pub fn origin(&self, vm: u64) -> Option<Origin> {
        lock(&self.placed).origins.get(&vm).cloned()
    }

    /// True while guest `vm` is held for its submitter's confirmation:
    /// nothing but the confirmation may run it.
    pub fn is_held(&self, vm: u64) -> bool {
        lock(&self.placed).held.contains(&vm)
    }

    /// Runs `job` on the `guest-start` thread; false if it has stopped.
    fn on_starter(&self, job: Job) -> bool {
        self.starter.as_ref().is_some_and(|s| s.send(job).is_ok())
    }

    /// Starts an admitted guest on the `guest-start` thread; its outcome
    /// reaches the agent loop as [`GuestMsg::Started`].
    /// A `held` guest starts paused (a placed guest, until its submitter confirms).
    /// A `snapshot` is restored (held) instead.
    pub(crate) fn dispatch_start(
        &self,
        ticket: Ticket,
        spec: GuestSpec,
        held: bool,
        snapshot: Option<Box<maxwell_vmm::GuestSnapshot>>,
    ) {
        // Reported when dropped: after the start, if the backend panics, or
        // if the job never runs.
        let mut outcome = Outcome {
            ticket,
            tx: self.loop_tx.clone(),
            guest: None,
            result: None,
        };
        let backend = match self.backend() {
            Ok(b) => b,
            Err(e) => {
                outcome.result = Some(Err(e));
                return;
            }
        };
        let job: Job = Box::new(move || {
            let mut outcome = outcome;
            let started = match (snapshot, held) {
                (Some(snap), _) => backend.restore_held(&spec, &snap),
                (None, true) => backend.start_held(&spec),
                (None, false) => backend.start(&spec),
            };
            match started {
                Ok(id) => {
                    outcome.guest = Some(id);
                    outcome.result = Some(backend.info(id).map_err(|e| ApiError {
                        message: format!("guest {id} started, but reading it failed: {e}"),
                        state_changed: true,
                        ..ApiError::from(e)
                    }));
                }
                Err(e) => outcome.result = Some(Err(e.into())),
            }
        });
        self.on_starter(job);
    }

    /// Lists the live guests on the `guest-start` thread; the list reaches
    /// the agent loop as [`GuestMsg::Surveyed`].
    pub(crate) fn dispatch_survey(&self) {
        let Some(backend) = self.backend.clone() else {
            return;
        };
        // One survey waits at a time, so a slow start does not pile them up.
        if self.surveying.swap(true, Ordering::SeqCst) {
            return;
        }
        let (tx, surveying) = (self.loop_tx.clone(), Arc::clone(&self.surveying));
        let job: Job = Box::new(move || {
            surveying.store(false, Ordering::SeqCst);
            // A guest killed while the list is taken shows as killed.
            let live = backend
                .list()
                .iter()
                .filter(|g| g.state != maxwell_vmm::GuestState::Killed)
                .map(|g| (g.id.0, load_of_info(g)))
                .collect();
            let _ = tx.send(GuestMsg::Surveyed(live));
        });
        if !self.on_starter(job) {
            self.surveying.store(false, Ordering::SeqCst);
        }
    }

    /// Kills every guest and logs how many were stopped. Runs on the
    /// `guest-start` thread, after every start queued before it.
    pub async fn stop_all(&self) {
        let stopped = self.stop_all_counted().await;
        tracing::info!(guests = stopped, "guests stopped");
    }

    async fn stop_all_counted(&self) -> usize {
        let Some(backend) = self.backend.clone() else {
            return 0;
        };
        let (tx, rx) = oneshot::channel();
        let b = Arc::clone(&backend);
        let job: Job = Box::new(move || {
            let _ = tx.send(b.shutdown().len());
        });
        if self.on_starter(job) {
            if let Ok(n) = rx.await {
                return n;
            }
        }
        // Only if the job did not run or failed; kill from here instead.
        tracing::warn!(
            "the guest-start thread did not stop the guests: stopping them from the blocking pool"
        );
        tokio::task::spawn_blocking(move || backend.shutdown().len())
            .await
            .unwrap_or(0)
    }

    /// Runs `f` on the blocking pool with the backend and a parsed id.
    pub(crate) async fn act<T: Send + 'static>(
        &self,
        id: &str,
        f: impl FnOnce(&dyn GuestBackend, GuestId) -> maxwell_vmm::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let backend = self.backend()?;
        let id = parse_id(id).map_err(ApiError::bad_request)?;
        tokio::task::spawn_blocking(move || f(backend.as_ref(), id))
            .await
            .map_err(|e| ApiError::internal(format!("guest call failed: {e}")))?
            .map_err(ApiError::from)
    }

    /// Each metered guest's CPU time since its start, ms, and the
    /// milli-cores the guests outside the market may take.
    pub fn meter(&self, metered: &[(u64, u64)]) -> (std::collections::BTreeMap<u64, u64>, u64) {
        let Some(backend) = &self.backend else {
            return Default::default();
        };
        let usage = metered
            .iter()
            .filter_map(|&(account, vm)| {
                let t = backend.cpu_time(GuestId(vm)).ok()?;
                Some((account, u64::try_from(t.as_millis()).unwrap_or(u64::MAX)))
            })
            .collect();
        let unmetered = backend
            .list()
            .iter()
            .filter(|g| {
                g.state != maxwell_vmm::GuestState::Killed && !metered.iter().any(|m| m.1 == g.id.0)
            })
            .map(|g| (f64::from(g.vcpus) * g.cap.fraction() * 1000.0) as u64)
            .sum();
        (usage, unmetered)
    }

    /// Sends a market call to the agent loop and waits for its answer.
    pub async fn market_call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ApiError>>) -> MarketCall,
    ) -> Result<T, ApiError> {
        self.backend()?;
        let (reply, answer) = oneshot::channel();
        self.loop_tx
            .send(GuestMsg::Market(make(reply)))
            .map_err(|_| shutting_down())?;
        answer.await.map_err(|_| shutting_down())?
    }

    /// A step of a wallet transfer, answered once its entry is on disk.
    pub async fn moving<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ApiError>>) -> crate::market::Moving,
    ) -> Result<T, ApiError> {
        self.market_call(|reply| MarketCall::Move(Box::new(make(reply))))
            .await
    }

    /// Carries out one of the market's actions off the runtime; a kill is
    /// reported to the agent loop like any other.
    pub fn market_act(&self, action: maxwell_market::Action) {
        let Some(backend) = self.backend.clone() else {
            return;
        };
        let tx = self.loop_tx.clone();
        let spent = Arc::clone(&self.market_cpu_ns);
        let placed = Arc::clone(&self.placed);
        // On the guest-start thread: one guest's pause and resume must not
        // overtake each other, and a kill waits behind any start.
        self.on_starter(Box::new(move || {
            let t0 = thread_cpu_ns();
            let id = GuestId(action.vm);
            // A held guest runs only when confirmed: the market's resume is
            // remembered as "not paused by the market", not carried out.
            let held = {
                let mut p = lock(&placed);
                match action.act {
                    maxwell_market::Act::Pause => p.market_paused.insert(action.vm),
                    maxwell_market::Act::Resume => p.market_paused.remove(&action.vm),
                    _ => false,
                };
                p.held.contains(&action.vm)
            };
            let r = match action.act {
                maxwell_market::Act::Resume if held => Ok(()),
                maxwell_market::Act::Cap { per_vcpu_milli } => {
                    // The adapter's cgroup quota has a floor of 1 %.
                    let f = (f64::from(per_vcpu_milli) / 1000.0).clamp(0.01, 1.0);
                    maxwell_vmm::CpuCap::new(f).and_then(|c| backend.set_cap(id, c))
                }
                maxwell_market::Act::Pause => backend.pause(id),
                maxwell_market::Act::Resume => backend.resume(id),
                maxwell_market::Act::Kill(_) => backend.kill(id).map(|_| {
                    let _ = tx.send(GuestMsg::Killed(id));
                }),
            };
            if let Err(e) = r {
                // A guest that is already gone is reported by the survey.
                tracing::warn!(guest = %id, action = ?action.act, error = %e, "market: cannot carry out an action on a guest");
            }
            spent.fetch_add(thread_cpu_ns() - t0, Ordering::Relaxed);
        }));
    }

    /// Kills guest `id` and tells the node its share is free (from the
    /// blocking call itself, so a requester that goes away loses nothing).
    pub(crate) async fn kill(&self, id: &str) -> Result<GuestInfo, ApiError> {
        let tx = self.loop_tx.clone();
        self.act(id, move |b, id| {
            let g = b.kill(id)?;
            // Only fails once the agent loop has stopped: nothing is admitted then.
            let _ = tx.send(GuestMsg::Killed(id));
            Ok(g)
        })
        .await
    }
}

fn may_move(p: &Placed, vm: u64) -> Result<(), ApiError> {
    let why = if p.pinned.contains(&vm) {
        "was started from guests.specs_dir: this host's config runs it, so it does not move"
    } else if p.held.contains(&vm) {
        "is held: placed here and not yet confirmed, or already moving"
    } else {
        return Ok(());
    };
    Err(ApiError {
        status: StatusCode::CONFLICT,
        message: format!("guest g{vm} {why}"),
        state_changed: false,
    })
}

/// What a start came to; reported to the agent loop when dropped, so a
/// start that panics still frees its reservation and gets an answer.
struct Outcome {
    ticket: Ticket,
    tx: channel::UnboundedSender<GuestMsg>,
    guest: Option<GuestId>,
    result: Option<Result<GuestInfo, ApiError>>,
}

impl Drop for Outcome {
    fn drop(&mut self) {
        let result = self.result.take().unwrap_or_else(|| {
            Err(ApiError::internal(
                "the guest start did not finish (the backend failed unexpectedly)",
            ))
        });
        let (ticket, guest) = (self.ticket, self.guest);
        let _ = self.tx.send(GuestMsg::Started {
            ticket,
            guest,
            result,
        });
    }
}

/// What a running guest takes, as admission counts it.
fn load_of_info(g: &GuestInfo) -> maxwell_core::GuestLoad {
    maxwell_core::GuestLoad {
        vcpus: u64::from(g.vcpus),
        memory_mib: u64::from(g.memory_mib),
    }
}

/// The answer once the agent has stopped taking requests.
pub(crate) fn shutting_down() -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: maxwell_core::Refusal::Leaving.to_string(),
        state_changed: false,
    }
}

fn spawn_starter() -> std::io::Result<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("guest-start".into())
        .spawn(move || {
            for job in rx {
                // A panicking job must not end the thread: the process
                // backend's guests die with it.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                    tracing::error!("a guest job panicked; the guest-start thread goes on");
                }
            }
        })?;
    Ok(tx)
}

/// `g3` or `3`.
pub fn parse_id(text: &str) -> Result<GuestId, String> {
    let digits = text.strip_prefix('g').unwrap_or(text);
    digits.parse::<u64>().map(GuestId).map_err(|_| {
        format!(
            "{} is not a guest id (expected g<N> or <N>)",
            crate::fsutil::excerpt(text, 32)
        )
    })
}

// ---------------------------------------------------------------- specs

/// Reads a spec file as written: JSON if it ends in `.json`, else TOML.
/// Errors are one line naming the file (and the line for TOML).
pub fn read_spec_file(path: &Path) -> anyhow::Result<RawGuestSpec> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow!("guest spec {}: {e}", path.display()))?;
    if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| anyhow!("guest spec {}: {e}", path.display()))
    } else {
        toml::from_str(&text).map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(1);
            anyhow!(
                "guest spec {}, line {line}: {}",
                path.display(),
                e.message().replace('\n', " ")
            )
        })
    }
}

/// Reads and validates one spec file; a Linux kernel must be in `kernel_dir`.
pub fn load_spec_file(path: &Path, kernel_dir: Option<&Path>) -> anyhow::Result<GuestSpec> {
    read_spec_file(path)?
        .validate_in(kernel_dir)
        .map_err(|e| match e {
            VmmError::InvalidSpec { field, reason } => {
                anyhow!("guest spec {}: field `{field}`: {reason}", path.display())
            }
            e => anyhow!("guest spec {}: {e}", path.display()),
        })
}

/// Every `*.toml` and `*.json` in `dir`, by file name, validated. The first
/// bad one is the error.
pub fn load_specs(
    dir: &Path,
    kernel_dir: Option<&Path>,
) -> anyhow::Result<Vec<(PathBuf, GuestSpec)>> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| anyhow!("guests.specs_dir {}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| anyhow!("guests.specs_dir {}: {e}", dir.display()))?
            .path();
        let spec_like = path.extension().is_some_and(|e| e == "toml" || e == "json");
        if spec_like && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|p| load_spec_file(&p, kernel_dir).map(|s| (p, s)))
        .collect()
}

// ---------------------------------------------------------------- errors

/// An API error: a status and one line.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Whether the guest changed before the error ([`VmmError::state_changed`]).
    pub state_changed: bool,
}

impl ApiError {
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            state_changed: false,
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            state_changed: false,
        }
    }
}

impl From<VmmError> for ApiError {
    fn from(e: VmmError) -> Self {
        let status = match &e {
            VmmError::SpecParse(_)
            | VmmError::InvalidSpec { .. }
            | VmmError::Kernel { .. }
            | VmmError::Unsupported { .. } => StatusCode::BAD_REQUEST,
            VmmError::NoSuchGuest(_) => StatusCode::NOT_FOUND,
            VmmError::InvalidState { .. } => StatusCode::CONFLICT,
            VmmError::KvmUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            VmmError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            VmmError::Kvm { .. } | VmmError::Host { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError {
            status,
            message: e.to_string(),
            state_changed: e.state_changed(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": self.message,
            "state_changed": self.state_changed,
        });
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_with_or_without_the_g() {
        assert_eq!(parse_id("g3"), Ok(GuestId(3)));
        assert_eq!(parse_id("17"), Ok(GuestId(17)));
        assert!(parse_id("x").is_err());
        assert!(parse_id("g").is_err());
        assert!(parse_id("-1").is_err());
    }

    #[test]
    fn bad_spec_files_name_the_file_and_the_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("a.toml");
        std::fs::write(
            &good,
            "name = \"a\"\nkind = \"workload\"\nvcpus = 1\nmemory_mib = 4\npayload = \"hash\"\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("notes.txt"), "ignored").expect("write");
        let specs = load_specs(dir.path(), None).expect("valid");
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].1.name, "a");

        let bad = dir.path().join("b.json");
        std::fs::write(
            &bad,
            r#"{"kind":"workload","vcpus":1,"memory_mib":0,"payload":"hash"}"#,
        )
        .expect("write");
        let err = load_specs(dir.path(), None).expect_err("bad").to_string();
        assert!(
            err.contains("b.json") && err.contains("`memory_mib`"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");

        std::fs::remove_file(&bad).expect("rm");
        std::fs::write(dir.path().join("b.toml"), "kind = \"workload\"\nvcpu = 1\n")
            .expect("write");
        let err = load_specs(dir.path(), None).expect_err("bad").to_string();
        assert!(
            err.contains("b.toml, line 2") && err.contains("vcpu"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");

        let err = load_specs(&dir.path().join("missing"), None).expect_err("missing");
        assert!(err.to_string().contains("guests.specs_dir"), "{err}");
    }
}
