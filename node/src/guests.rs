//! Guests on this host: the agent's thin driver over [`maxwell_vmm`].
//!
//! [`Guests`] owns the backend (`guests.backend`: KVM, processes, or none),
//! starts the specs of `guests.specs_dir` with the agent, serves
//! `/v1/guests` and kills every guest on a clean shutdown. Backend calls
//! block briefly (a pause waits for every vCPU to park), so they run off the
//! async runtime.
//!
//! Every `start` runs on one long-lived thread (`guest-start`): the process
//! backend's children die with the *thread* that forked them
//! (`PR_SET_PDEATHSIG`), and tokio retires idle blocking threads after 10 s.
//!
//! HTTP errors are JSON `{"error": "...", "state_changed": bool}`: 400 bad
//! input, 404 unknown guest, 409 wrong state, 503 guests disabled, 504 a
//! pause or resume not acknowledged in time (still pending), 500 host
//! failures.

use crate::cli::{GuestAction, GuestsArgs};
use crate::client::ClientError;
use crate::config::{GuestBackendKind, GuestsConfig};
use crate::render::Table;
use crate::state::AppState;
use anyhow::{anyhow, Context};
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use maxwell_vmm::{
    open_backend, CapConfig, CapMode, CpuCap, GuestBackend, GuestId, GuestInfo, GuestSpec,
    GuestState, KvmBackend, ProcessBackend, RawGuestSpec, VmmError,
};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// A job for the `guest-start` thread.
type Job = Box<dyn FnOnce() + Send>;

/// This host's guests: the backend, or why there is none.
#[derive(Debug)]
pub struct Guests {
    backend: Option<Arc<dyn GuestBackend>>,
    /// Why guests are disabled (when `backend` is `None`).
    disabled: String,
    /// The `guest-start` thread's queue.
    starter: Option<mpsc::Sender<Job>>,
    /// How much of the host guests may take.
    admission: Admission,
    /// Where Linux kernels load from.
    kernel_dir: Option<PathBuf>,
    /// Set by [`Guests::shutdown`]: no start runs after it.
    closed: Arc<std::sync::atomic::AtomicBool>,
}

/// Admission limits: the totals of live guests' vCPUs and memory.
#[derive(Debug, Clone, Copy)]
pub struct Admission {
    pub cores: u64,
    pub memory_mib: u64,
    pub cpu_fraction: f64,
    pub memory_fraction: f64,
}

impl Admission {
    /// This host's cores and memory, with the configured fractions.
    pub fn of_host(cfg: &GuestsConfig) -> Self {
        // SAFETY: sysconf has no preconditions.
        let (cores, pages, page) = unsafe {
            (
                libc::sysconf(libc::_SC_NPROCESSORS_ONLN),
                libc::sysconf(libc::_SC_PHYS_PAGES),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let n = |v: libc::c_long| u64::try_from(v).unwrap_or(0);
        Self {
            cores: n(cores).max(1),
            memory_mib: n(pages).saturating_mul(n(page)) >> 20,
            cpu_fraction: cfg.cpu_fraction,
            memory_fraction: cfg.memory_fraction,
        }
    }

    fn max_vcpus(&self) -> u64 {
        (self.cores as f64 * self.cpu_fraction).floor() as u64
    }

    fn max_memory_mib(&self) -> u64 {
        (self.memory_mib as f64 * self.memory_fraction).floor() as u64
    }

    /// Whether `spec` fits beside the live guests `running`; else why not.
    pub fn admit(&self, running: &[GuestInfo], spec: &GuestSpec) -> Result<(), String> {
        // An exited guest keeps its memory until it is killed.
        let live = running.iter().filter(|g| g.state != GuestState::Killed);
        let (vcpus, mib) = live.fold((0u64, 0u64), |(v, m), g| {
            (v + u64::from(g.vcpus), m + u64::from(g.memory_mib))
        });
        let want_vcpus = vcpus + u64::from(spec.vcpus.get());
        if want_vcpus > self.max_vcpus() {
            return Err(format!(
                "admission refused: {want_vcpus} vCPUs in all would exceed the {} this host admits \
                 ({} cores x guests.cpu_fraction {})",
                self.max_vcpus(),
                self.cores,
                self.cpu_fraction
            ));
        }
        let want_mib = mib + u64::from(spec.memory.mib());
        if want_mib > self.max_memory_mib() {
            return Err(format!(
                "admission refused: {want_mib} MiB of guest memory in all would exceed the {} MiB \
                 this host admits ({} MiB x guests.memory_fraction {})",
                self.max_memory_mib(),
                self.memory_mib,
                self.memory_fraction
            ));
        }
        Ok(())
    }
}

impl Guests {
    /// No guests on this node; `why` is what API callers are told.
    pub fn disabled(why: impl Into<String>) -> Self {
        Guests {
            backend: None,
            disabled: why.into(),
            starter: None,
            admission: Admission {
                cores: 1,
                memory_mib: 0,
                cpu_fraction: 0.0,
                memory_fraction: 0.0,
            },
            kernel_dir: None,
            closed: Arc::default(),
        }
    }

    /// Where Linux kernels load from, if anywhere.
    pub fn kernel_dir(&self) -> Option<&Path> {
        self.kernel_dir.as_deref()
    }

    /// Opens the configured backend. `auto` never fails: KVM where
    /// `/dev/kvm` works, else processes. An explicitly requested backend
    /// that cannot be opened is an error (the agent refuses to start).
    pub fn open(cfg: &GuestsConfig) -> anyhow::Result<Self> {
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
        let admission = Admission::of_host(cfg);
        tracing::info!(
            backend = backend.name(),
            max_vcpus = admission.max_vcpus(),
            max_memory_mib = admission.max_memory_mib(),
            "guests enabled"
        );
        Ok(Guests {
            backend: Some(Arc::from(backend)),
            disabled: String::new(),
            starter: Some(starter),
            admission,
            kernel_dir: cfg.kernel_dir.clone(),
            closed: Arc::default(),
        })
    }

    /// The backend's name, or `None` when guests are disabled.
    pub fn backend_name(&self) -> Option<&'static str> {
        self.backend.as_ref().map(|b| b.name())
    }

    fn backend(&self) -> Result<Arc<dyn GuestBackend>, ApiError> {
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

    /// Runs `job` on the `guest-start` thread and waits for its answer.
    async fn on_starter<T: Send + 'static>(
        &self,
        job: impl FnOnce(&dyn GuestBackend) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let backend = self.backend()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(job(backend.as_ref()));
        });
        let gone = || ApiError::internal("the guest-start thread has stopped");
        self.starter
            .as_ref()
            .ok_or_else(gone)?
            .send(job)
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    /// Starts a guest (on the `guest-start` thread, so admission sees
    /// every earlier start); its first snapshot.
    pub async fn start(&self, spec: GuestSpec) -> Result<GuestInfo, ApiError> {
        let admission = self.admission;
        let closed = Arc::clone(&self.closed);
        self.on_starter(move |b| {
            if closed.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(ApiError {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    message: "the agent is shutting down".into(),
                    state_changed: false,
                });
            }
            admission.admit(&b.list(), &spec).map_err(|why| ApiError {
                status: StatusCode::CONFLICT,
                message: why,
                state_changed: false,
            })?;
            b.start(&spec)
                .and_then(|id| b.info(id))
                .map_err(ApiError::from)
        })
        .await?
    }

    /// Starts the specs read from `guests.specs_dir`. A spec that cannot be
    /// started stops the agent: the guests started so far are killed.
    pub async fn start_specs(&self, specs: Vec<(PathBuf, GuestSpec)>) -> anyhow::Result<()> {
        if specs.is_empty() {
            return Ok(());
        }
        if self.backend.is_none() {
            tracing::warn!(
                specs = specs.len(),
                reason = %self.disabled,
                "guests are disabled: the specs in guests.specs_dir are not started"
            );
            return Ok(());
        }
        for (path, spec) in specs {
            match self.start(spec).await {
                Ok(g) => tracing::info!(
                    guest = %g.id,
                    name = %g.name,
                    file = %path.display(),
                    backend = g.backend,
                    "guest started"
                ),
                Err(e) => {
                    let stopped = self.shutdown().await;
                    tracing::info!(guests = stopped, "guests stopped");
                    return Err(anyhow!(
                        "guest spec {}: cannot start: {}",
                        path.display(),
                        e.message
                    ));
                }
            }
        }
        Ok(())
    }

    /// Kills every guest (clean agent shutdown); returns how many were
    /// stopped. Runs on the `guest-start` thread, after any start queued
    /// before it.
    pub async fn shutdown(&self) -> usize {
        if self.backend.is_none() {
            return 0;
        }
        // Queued behind every start already asked for; later ones are refused.
        let closed = Arc::clone(&self.closed);
        let stop = move |b: &dyn GuestBackend| {
            closed.store(true, std::sync::atomic::Ordering::SeqCst);
            b.shutdown().len()
        };
        match self.on_starter(stop).await {
            Ok(n) => n,
            Err(e) => {
                // Only if the thread is gone; kill from here instead.
                tracing::warn!(error = %e.message, "stopping guests from the blocking pool");
                let b = self.backend.clone();
                tokio::task::spawn_blocking(move || b.map_or(0, |b| b.shutdown().len()))
                    .await
                    .unwrap_or(0)
            }
        }
    }

    /// Runs `f` on the blocking pool with the backend and a parsed id.
    async fn act<T: Send + 'static>(
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
}

fn spawn_starter() -> std::io::Result<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("guest-start".into())
        .spawn(move || {
            for job in rx {
                job();
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

// ---------------------------------------------------------------- API

/// One guest in `GET /v1/guests` and the answers of the actions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GuestRow {
    /// The guest's number; shown as `g<id>`.
    pub id: u64,
    pub name: String,
    /// `workload` or `linux`.
    pub kind: String,
    /// `kvm` or `process`.
    pub backend: String,
    pub state: GuestState,
    pub vcpus: u8,
    pub memory_mib: u32,
    /// Fraction of one core per vCPU, (0, 1].
    pub cap: f64,
    /// `cgroup-v1`, `cgroup-v2` or `duty-cycle`.
    pub cap_mode: String,
    /// CPU time used by all vCPUs since start.
    pub cpu_time_ns: u64,
    /// Finished work blocks (workload) or console bytes (linux).
    pub progress: u64,
    /// Start to the guest's first exit to the host, if seen.
    pub first_exit_us: Option<u64>,
    /// Why the guest exited, if it did.
    pub exit_reason: Option<String>,
}

/// `GET /v1/guests`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GuestList {
    /// `kvm` or `process`.
    pub backend: String,
    pub guests: Vec<GuestRow>,
}

fn cap_mode_name(m: CapMode) -> &'static str {
    match m {
        CapMode::CgroupV1 => "cgroup-v1",
        CapMode::CgroupV2 => "cgroup-v2",
        CapMode::DutyCycle => "duty-cycle",
    }
}

impl From<&GuestInfo> for GuestRow {
    fn from(g: &GuestInfo) -> Self {
        GuestRow {
            id: g.id.0,
            name: g.name.clone(),
            kind: g.kind.into(),
            backend: g.backend.into(),
            state: g.state,
            vcpus: g.vcpus,
            memory_mib: g.memory_mib,
            cap: g.cap.fraction(),
            cap_mode: cap_mode_name(g.cap_mode).into(),
            cpu_time_ns: g.cpu_time_ns,
            progress: g.progress,
            first_exit_us: g.first_exit_us,
            exit_reason: g.exit_reason.clone(),
        }
    }
}

/// An API error: a status and one line.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Whether the guest changed before the error ([`VmmError::state_changed`]).
    pub state_changed: bool,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            state_changed: false,
        }
    }

    fn internal(message: impl Into<String>) -> Self {
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

/// The `/v1/guests` routes, merged into [`crate::http::router`].
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/guests", get(list).post(create))
        .route("/v1/guests/{id}", get(one))
        .route("/v1/guests/{id}/pause", post(pause))
        .route("/v1/guests/{id}/resume", post(resume))
        .route("/v1/guests/{id}/kill", post(kill))
        .route("/v1/guests/{id}/cap", put(cap))
}

type Answer = Result<Json<GuestRow>, ApiError>;

async fn list(State(state): State<Arc<AppState>>) -> Result<Json<GuestList>, ApiError> {
    let backend = state.guests.backend()?;
    let name = backend.name();
    let infos = tokio::task::spawn_blocking(move || backend.list())
        .await
        .map_err(|e| ApiError::internal(format!("guest list failed: {e}")))?;
    Ok(Json(GuestList {
        backend: name.into(),
        guests: infos.iter().map(GuestRow::from).collect(),
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
    tracing::info!(guest = %g.id, name = %g.name, backend = g.backend, "guest started");
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
    let g = state
        .guests
        .act(&id, |b, id| b.resume(id).and_then(|()| b.info(id)))
        .await?;
    Ok(Json(GuestRow::from(&g)))
}

async fn kill(State(state): State<Arc<AppState>>, UrlPath(id): UrlPath<String>) -> Answer {
    let g = state.guests.act(&id, |b, id| b.kill(id)).await?;
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

// ---------------------------------------------------------------- CLI

/// `maxwell guests ...` against a running agent.
pub fn cli(args: GuestsArgs) -> anyhow::Result<()> {
    let addr = args.http;
    let api = args.token.api(addr)?;
    let short = Duration::from_secs(5);
    // A start maps memory and a kill joins threads: give them time.
    let long = Duration::from_secs(30);
    let row = match args.action {
        None => {
            let body = api.get("/v1/guests", short).map_err(|e| refused(addr, e))?;
            let list: GuestList = decode(addr, &body)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", render(&list.guests));
            }
            return Ok(());
        }
        Some(GuestAction::Start { file }) => {
            let raw = read_spec_file(&file)?;
            let json = serde_json::to_string(&raw)?;
            api.post("/v1/guests", &json, long)
        }
        Some(GuestAction::Pause { id }) => api.post(&action_path(&id, "pause")?, "", long),
        Some(GuestAction::Resume { id }) => api.post(&action_path(&id, "resume")?, "", long),
        Some(GuestAction::Kill { id }) => api.post(&action_path(&id, "kill")?, "", long),
        Some(GuestAction::Cap { id, fraction }) => {
            let body = serde_json::json!({ "cap": fraction }).to_string();
            api.put(&action_path(&id, "cap")?, &body, long)
        }
    }
    .map_err(|e| refused(addr, e))?;
    let row: GuestRow = decode(addr, &row)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&row)?);
    } else {
        print!("{}", render(std::slice::from_ref(&row)));
    }
    Ok(())
}

fn action_path(id: &str, action: &str) -> anyhow::Result<String> {
    let id = parse_id(id).map_err(|e| anyhow!(e))?;
    Ok(format!("/v1/guests/{}/{action}", id.0))
}

fn decode<T: serde::de::DeserializeOwned>(addr: SocketAddr, body: &str) -> anyhow::Result<T> {
    serde_json::from_str(body).map_err(|source| ClientError::Decode { addr, source }.into())
}

/// The agent's `{"error": ...}` as one line, with the status code.
fn refused(addr: SocketAddr, e: ClientError) -> anyhow::Error {
    if let ClientError::Status { status, body, .. } = &e {
        let code = status.split_whitespace().nth(1).unwrap_or("?");
        if let Some(msg) = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
        {
            return anyhow!("{msg} (the agent at {addr} answered {code})");
        }
    }
    e.into()
}

/// `30%`, `2.5%`.
fn percent(fraction: f64) -> String {
    let p = fraction * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

/// The guests as a table, then why any of them exited.
pub fn render(rows: &[GuestRow]) -> String {
    let mut t = Table::new(&[
        "ID", "NAME", "KIND", "BACKEND", "STATE", "VCPUS", "MEM", "CAP", "CPU", "PROGRESS",
    ]);
    for g in rows {
        t.row(vec![
            format!("g{}", g.id),
            g.name.clone(),
            g.kind.clone(),
            g.backend.clone(),
            g.state.as_str().to_string(),
            g.vcpus.to_string(),
            format!("{} MiB", g.memory_mib),
            percent(g.cap),
            format!("{:.2} s", g.cpu_time_ns as f64 / 1e9),
            g.progress.to_string(),
        ]);
    }
    let mut out = t.render();
    for g in rows {
        if let Some(reason) = &g.exit_reason {
            let _ = writeln!(out, "g{} exited: {reason}", g.id);
        }
    }
    out
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
    fn percents_are_short() {
        assert_eq!(percent(0.3), "30%");
        assert_eq!(percent(1.0), "100%");
        assert_eq!(percent(0.025), "2.5%");
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
