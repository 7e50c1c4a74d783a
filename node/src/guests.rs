//! Guests on this host: the agent's thin driver over [`maxwell_vmm`].
//!
//! [`Guests`] owns the backend (`guests.backend`: KVM, processes, or none),
//! starts the specs of `guests.specs_dir` with the agent (its API is
//! [`crate::http::guests`], its CLI [`crate::guests_cli`]) and kills every
//! guest on a clean shutdown. A failed call is an [`ApiError`]: the API's
//! one error shape, with the HTTP status it maps to. Backend calls
//! block briefly (a pause waits for every vCPU to park), so they run off the
//! async runtime.
//!
//! Every `start` runs on one long-lived thread (`guest-start`): the process
//! backend's children die with the *thread* that forked them
//! (`PR_SET_PDEATHSIG`), and tokio retires idle blocking threads after 10 s.
//!
pub mod config;

use crate::guests::config::{GuestBackendKind, GuestsConfig};
use anyhow::{anyhow, Context};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use maxwell_vmm::{
    open_backend, CapConfig, GuestBackend, GuestId, GuestInfo, GuestSpec, GuestState, KvmBackend,
    ProcessBackend, RawGuestSpec, VmmError,
};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

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
