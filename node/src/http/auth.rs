//! Who may use the HTTP API (docs/operations.md, "Security").
//!
//! - Every request carries exactly one `Host`, which must be `localhost`, an
//!   IP literal, this host's name or one of `api.allowed_hosts`: a name an
//!   attacker controls (DNS rebinding) is refused.
//! - A mutating request (anything but GET and HEAD) needs
//!   `Authorization: Bearer TOKEN`, `Content-Type: application/json`, and no
//!   `Origin` other than the API's own: a browser's cross-site "simple
//!   request" can carry none of these.
//! - With `api.auth_reads`, reads need the token too (`/healthz` stays open
//!   for liveness probes, and the dashboard's page and assets, which hold
//!   no data, for a browser to load and then ask for the token).
//!
//! The token is 32 random bytes in hex, written at first start to
//! `DATA_DIR/api.token` (mode 0600), beside the host key.

use crate::check::invalid;
use crate::check::ConfigError;
use crate::datadir::{DataDir, DataDirError};
use crate::fsutil::{excerpt, Replace};
use crate::http::state::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// The token file in the data dir.
pub const TOKEN_FILE: &str = "api.token";

/// How mutating requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// A bearer token from the data dir (the default).
    Token,
    /// None: only accepted on a loopback `http_addr`.
    None,
}

/// The `[api]` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    pub auth: Option<AuthMode>,
    pub auth_reads: Option<bool>,
    pub allowed_hosts: Option<Vec<String>>,
    pub max_connections: Option<u32>,
    pub header_timeout_ms: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub ui_history_s: Option<u64>,
}

/// The validated `[api]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiConfig {
    pub auth: AuthMode,
    /// Reads need the token too.
    pub auth_reads: bool,
    /// Host names accepted in `Host` besides localhost, IP literals and this host's name.
    pub allowed_hosts: Vec<String>,
    /// Connections open at once; past it a new one evicts the idlest.
    pub max_connections: usize,
    /// A request's headers (and an idle keep-alive connection's next request) must arrive within this.
    pub header_timeout: Duration,
    /// A whole request, body included, must be answered within this.
    pub request_timeout: Duration,
    /// How far back the dashboard's temperature and price history goes.
    pub ui_history: Duration,
}

impl RawApi {
    /// Validates against the address the API binds.
    pub fn validate(self, http_addr: SocketAddr) -> Result<ApiConfig, ConfigError> {
        let auth = self.auth.unwrap_or(AuthMode::Token);
        if auth == AuthMode::None && !http_addr.ip().is_loopback() {
            return Err(invalid(
                "api.auth",
                format!("\"none\" is refused because http_addr {http_addr} is not loopback: keep \"token\", or bind 127.0.0.1"),
            ));
        }
        let allowed_hosts = self.allowed_hosts.unwrap_or_default();
        for h in &allowed_hosts {
            let ok = !h.is_empty()
                && h.len() <= 253
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'));
            if !ok {
                return Err(invalid(
                    "api.allowed_hosts",
                    format!("{} is not a host name (no port, no scheme)", excerpt(h, 64)),
                ));
            }
        }
        let max_connections = self.max_connections.unwrap_or(256);
        if !(1..=65_536).contains(&max_connections) {
            return Err(invalid(
                "api.max_connections",
                format!("{max_connections} is outside 1 to 65536"),
            ));
        }
        let ms = |field, v: Option<u64>, default: u64| {
            let v = v.unwrap_or(default);
            if (100..=3_600_000).contains(&v) {
                Ok(Duration::from_millis(v))
            } else {
                Err(invalid(field, format!("{v} is outside 100 to 3600000")))
            }
        };
        Ok(ApiConfig {
            auth,
            auth_reads: self.auth_reads.unwrap_or(false),
            allowed_hosts: allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            max_connections: max_connections as usize,
            header_timeout: ms("api.header_timeout_ms", self.header_timeout_ms, 10_000)?,
            request_timeout: ms("api.request_timeout_ms", self.request_timeout_ms, 60_000)?,
            ui_history: match self.ui_history_s.unwrap_or(300) {
                s @ 10..=3_600 => Duration::from_secs(s),
                s => {
                    return Err(invalid(
                        "api.ui_history_s",
                        format!("{s} is outside 10 to 3600"),
                    ))
                }
            },
        })
    }
}

/// The API token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

impl Token {
    /// Loads `DATA_DIR/api.token`, or creates it at first start.
    pub fn load_or_create(dir: &DataDir) -> Result<Self, DataDirError> {
        if let Some(read) = dir.read_secret(TOKEN_FILE, 256)? {
            let text = String::from_utf8_lossy(&read.bytes);
            let t = text.trim();
            if t.len() >= 32 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(Token(t.to_string()));
            }
            // Not a secret anyone relies on: say so and make a new one.
            tracing::warn!(path = %dir.file(TOKEN_FILE).display(), "the API token file holds no token: writing a new one");
            std::fs::remove_file(dir.file(TOKEN_FILE)).map_err(|err| DataDirError::File {
                path: dir.file(TOKEN_FILE),
                err,
            })?;
        }
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).map_err(|e| DataDirError::File {
            path: dir.file(TOKEN_FILE),
            err: std::io::Error::other(format!("no randomness for a token: {e}")),
        })?;
        let token = Token(maxwell_types::hex::encode(&bytes));
        dir.write(TOKEN_FILE, format!("{}\n", token.0).as_bytes(), Replace::No)?;
        tracing::info!(path = %dir.file(TOKEN_FILE).display(), "created the API token");
        Ok(token)
    }

    /// A token as the CLI read it.
    pub fn from_text(text: &str) -> Option<Self> {
        let t = text.trim();
        (!t.is_empty() && t.len() <= 256).then(|| Token(t.to_string()))
    }

    /// The secret, for an `Authorization` header.
    pub fn secret(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison: the time taken does not tell how much matched.
    fn matches(&self, offered: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), offered.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Why a request was refused; the label of `maxwell_api_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BadHost,
    MissingToken,
    WrongToken,
    ForeignOrigin,
    NotJson,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::BadHost => "bad_host",
            Refusal::MissingToken => "missing_token",
            Refusal::WrongToken => "wrong_token",
            Refusal::ForeignOrigin => "foreign_origin",
            Refusal::NotJson => "not_json",
        }
    }

    fn response(self) -> Response {
        let (status, message) = match self {
            Refusal::BadHost => (
                StatusCode::FORBIDDEN,
                "the Host header names no address of this agent (add it to api.allowed_hosts)",
            ),
            Refusal::MissingToken => (
                StatusCode::UNAUTHORIZED,
                "this route needs Authorization: Bearer <token>; the token is in the agent's data dir (api.token)",
            ),
            Refusal::WrongToken => (StatusCode::UNAUTHORIZED, "wrong API token"),
            Refusal::ForeignOrigin => (
                StatusCode::FORBIDDEN,
                "cross-origin requests may not change this agent",
            ),
            Refusal::NotJson => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send Content-Type: application/json",
            ),
        };
        let mut r = super::error(status, message.to_string());
        if matches!(self, Refusal::MissingToken | Refusal::WrongToken) {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

/// What the check needs: the section, the token, and this host's name.
#[derive(Debug)]
pub struct Gate {
    pub config: ApiConfig,
    pub token: Option<Token>,
    pub hostname: String,
}

impl Gate {
    /// Decides one request from its method, path and headers.
    pub fn check(&self, method: &Method, path: &str, headers: &HeaderMap) -> Result<(), Refusal> {
        // Exactly one Host, and an allowed one: HTTP/1.1 requires it, and a
        // request without one cannot be told from a rebinding attempt.
        let mut hosts = headers.get_all(header::HOST).iter();
        let host = match (hosts.next().and_then(|h| h.to_str().ok()), hosts.next()) {
            (Some(h), None) if self.host_allowed(h) => h,
            _ => return Err(Refusal::BadHost),
        };
        let mutating = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        let open = path == "/healthz" || crate::http::ui::OPEN_PATHS.contains(&path);
        let needs_token = mutating || (self.config.auth_reads && !open);
        if needs_token {
            if let Some(token) = &self.token {
                let offered = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|h| h.to_str().ok())
                    .and_then(|h| h.split_once(' '))
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, t)| t);
                match offered {
                    None => return Err(Refusal::MissingToken),
                    Some(t) if !token.matches(t.trim()) => return Err(Refusal::WrongToken),
                    Some(_) => {}
                }
            }
        }
        if mutating {
            if let Some(origin) = headers.get(header::ORIGIN) {
                // The API speaks plain HTTP: its own origin is http://HOST.
                let same = origin
                    .to_str()
                    .ok()
                    .and_then(|o| o.strip_prefix("http://"))
                    .is_some_and(|authority| authority.eq_ignore_ascii_case(host));
                if !same {
                    return Err(Refusal::ForeignOrigin);
                }
            }
            let json = headers
                .get(header::CONTENT_TYPE)
                .and_then(|c| c.to_str().ok())
                .and_then(|c| c.split(';').next())
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("application/json"));
            if !json {
                return Err(Refusal::NotJson);
            }
        }
        Ok(())
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host.rsplit_once(':').map_or(host, |(h, _)| h),
        };
        let name = name.to_ascii_lowercase();
        name == "localhost"
            || name.parse::<IpAddr>().is_ok()
            || name == self.hostname
            || self.config.allowed_hosts.contains(&name)
    }
}

/// The middleware: refusals are answered in the API's error shape and counted.
pub async fn gate(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Err(refusal) = state
        .gate
        .check(req.method(), req.uri().path(), req.headers())
    {
        state
            .counters
            .api_refused
            .get_or_create(&vec![("reason".into(), refusal.label().into())])
            .inc();
        return refusal.response();
    }
    let timeout = state.gate.config.request_timeout;
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(r) => one_error_shape(r),
        Err(_) => super::error(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request took longer than {} ms", timeout.as_millis()),
        )
        .into_response(),
    }
}

/// Errors the router itself answers (405, 413, a body it cannot read) in
/// the API's one shape, like the handlers' own.
fn one_error_shape(r: Response) -> Response {
    let status = r.status();
    let json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return r;
    }
    let reason = status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase();
    let allow = r.headers().get(header::ALLOW).cloned();
    let mut out = super::error(status, reason);
    if let Some(allow) = allow {
        out.headers_mut().insert(header::ALLOW, allow);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(auth_reads: bool) -> Gate {
        let mut config = RawApi::default()
            .validate("127.0.0.1:7070".parse().expect("addr"))
            .expect("defaults");
        config.auth_reads = auth_reads;
        config.allowed_hosts = vec!["node7.rack".into()];
        Gate {
            config,
            token: Some(Token("ab".repeat(32))),
            hostname: "host1".into(),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("value"));
        }
        h
    }

    #[test]
    fn mutating_requests_need_the_token_json_and_their_own_origin() {
        let g = gate(false);
        let bearer = format!("Bearer {}", "ab".repeat(32));
        let ok = [
            ("host", "127.0.0.1:7070"),
            ("authorization", bearer.as_str()),
            ("content-type", "application/json"),
        ];
        assert_eq!(g.check(&Method::POST, "/v1/guests", &headers(&ok)), Ok(()));
        let with = |extra: (&'static str, &str)| {
            let mut h = headers(&ok);
            h.insert(extra.0, extra.1.parse().expect("v"));
            g.check(&Method::POST, "/v1/guests", &h)
        };
        assert_eq!(with(("origin", "http://127.0.0.1:7070")), Ok(()));
        assert_eq!(
            with(("origin", "http://evil.example")),
            Err(Refusal::ForeignOrigin)
        );
        assert_eq!(with(("origin", "null")), Err(Refusal::ForeignOrigin));
        assert_eq!(
            with(("origin", "https://127.0.0.1:7070")),
            Err(Refusal::ForeignOrigin)
        );
        let lower = format!("bearer {}", "ab".repeat(32));
        assert_eq!(with(("authorization", lower.as_str())), Ok(()));
        assert_eq!(with(("content-type", "text/plain")), Err(Refusal::NotJson));
        assert_eq!(
            with(("authorization", "Bearer nope")),
            Err(Refusal::WrongToken)
        );
        assert_eq!(with(("host", "evil.example:7070")), Err(Refusal::BadHost));
        let no_token = headers(&[
            ("host", "127.0.0.1:7070"),
            ("content-type", "application/json"),
        ]);
        assert_eq!(
            g.check(&Method::PUT, "/v1/emulated", &no_token),
            Err(Refusal::MissingToken)
        );
        assert_eq!(g.check(&Method::GET, "/v1/status", &no_token), Ok(()));
        assert_eq!(
            g.check(&Method::GET, "/v1/status", &HeaderMap::new()),
            Err(Refusal::BadHost)
        );
        let mut two = headers(&[("host", "127.0.0.1:7070")]);
        two.append("host", "evil.example".parse().expect("v"));
        assert_eq!(
            g.check(&Method::GET, "/v1/status", &two),
            Err(Refusal::BadHost)
        );
    }

    #[test]
    fn reads_can_be_put_behind_the_token_but_not_healthz_or_the_bare_page() {
        let g = gate(true);
        let h = headers(&[("host", "localhost:7070")]);
        for data in [
            "/v1/status",
            "/v1/members",
            "/v1/events",
            "/v1/history/00",
            "/ui/x",
        ] {
            assert_eq!(
                g.check(&Method::GET, data, &h),
                Err(Refusal::MissingToken),
                "{data}"
            );
        }
        for open in ["/healthz", "/ui", "/ui/app.js", "/ui/app.css"] {
            assert_eq!(g.check(&Method::GET, open, &h), Ok(()), "{open}");
        }
    }

    #[test]
    fn hosts_are_localhost_ip_literals_our_name_or_configured() {
        let g = gate(false);
        for ok in [
            "localhost:1",
            "127.0.0.1",
            "[::1]:7070",
            "10.1.2.3:7070",
            "HOST1:7070",
            "node7.rack",
        ] {
            assert!(g.host_allowed(ok), "{ok}");
        }
        for bad in ["evil.example", "127.0.0.1.nip.io:7070", "localhost.evil:1"] {
            assert!(!g.host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn the_token_is_created_once_and_must_stay_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let d = DataDir::open(dir.path()).expect("open");
        let a = Token::load_or_create(&d).expect("create");
        assert_eq!(a.secret().len(), 64);
        assert_eq!(Token::load_or_create(&d).expect("reuse"), a);
        let path = d.file(TOKEN_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = Token::load_or_create(&d)
            .expect_err("readable by others")
            .to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn no_auth_is_refused_off_loopback() {
        let raw = || RawApi {
            auth: Some(AuthMode::None),
            ..RawApi::default()
        };
        assert!(raw()
            .validate("127.0.0.1:7070".parse().expect("addr"))
            .is_ok());
        let err = raw()
            .validate("0.0.0.0:7070".parse().expect("addr"))
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("api.auth") && err.contains("not loopback"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1);
    }
}
