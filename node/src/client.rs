//! A minimal HTTP/1.1 client for the CLI (`status`, `members`, `guests`, `demo`): the
//! agent's API is plain JSON on loopback, so a full client crate is not worth
//! its build time.

use crate::http::Token;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Errors talking to an agent.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No agent answered.
    #[error("cannot reach the agent at {addr}: {source} (is `maxwell agent` running with --http {addr}?)")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The connection broke.
    #[error("reading from the agent at {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The answer was not HTTP, or not 200.
    #[error(
        "the agent at {addr} answered {status}: {}",
        crate::fsutil::excerpt(body, 300)
    )]
    Status {
        addr: SocketAddr,
        status: String,
        body: String,
    },
    /// The agent wants a token (or another one).
    #[error("the agent at {addr} refused the request: {}", if *had_token { "wrong API token (is --data-dir or --token-file this agent's?)" } else { "it needs the API token; run as the agent's user, or pass --data-dir DIR (DIR/api.token) or --token-file" })]
    Unauthorized { addr: SocketAddr, had_token: bool },
    /// The token file could not be read.
    #[error("cannot read the API token {path}: {source} (run as the agent's user, or pass --token-file)")]
    Token {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The body was not the JSON expected.
    #[error("the agent at {addr} sent a body this client does not understand: {source}")]
    Decode {
        addr: SocketAddr,
        #[source]
        source: serde_json::Error,
    },
}

/// GETs `path` without a token and returns the body of a 200 answer.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String, ClientError> {
    request(addr, "GET", path, None, None, timeout)
}

/// An agent's API with the token to present, if any.
#[derive(Debug, Clone)]
pub struct Api {
    pub addr: SocketAddr,
    pub token: Option<Token>,
}

impl Api {
    /// GETs `path` (with the token, if any).
    pub fn get(&self, path: &str, timeout: Duration) -> Result<String, ClientError> {
        request(self.addr, "GET", path, None, self.token.as_ref(), timeout)
    }

    /// GETs `path` and decodes the JSON body.
    pub fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let body = self.get(path, timeout)?;
        serde_json::from_str(&body).map_err(|source| ClientError::Decode {
            addr: self.addr,
            source,
        })
    }

    /// POSTs a JSON `body` to `path`.
    pub fn post(&self, path: &str, body: &str, timeout: Duration) -> Result<String, ClientError> {
        request(
            self.addr,
            "POST",
            path,
            Some(body),
            self.token.as_ref(),
            timeout,
        )
    }

    /// PUTs a JSON `body` to `path`.
    pub fn put(&self, path: &str, body: &str, timeout: Duration) -> Result<String, ClientError> {
        request(
            self.addr,
            "PUT",
            path,
            Some(body),
            self.token.as_ref(),
            timeout,
        )
    }
}

/// Reads the API token: `token_file` when given (it must be readable), else
/// `DATA_DIR/api.token` when readable. `None` when neither is: reads work
/// without a token unless the agent sets `api.auth_reads`.
pub fn read_token(
    token_file: Option<&Path>,
    data_dir: &Path,
) -> Result<Option<Token>, ClientError> {
    let (path, required) = match token_file {
        Some(p) => (p.to_path_buf(), true),
        None => (data_dir.join(crate::http::auth::TOKEN_FILE), false),
    };
    match crate::fsutil::read_regular(&path, 256, crate::fsutil::Links::Follow) {
        Ok(r) => Ok(Token::from_text(&String::from_utf8_lossy(&r.bytes))),
        Err(_) if !required => Ok(None),
        Err(source) => Err(ClientError::Token { path, source }),
    }
}

/// One request; `body`, when given, is sent as JSON.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&Token>,
    timeout: Duration,
) -> Result<String, ClientError> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|source| ClientError::Connect { addr, source })?;
    let io = |source| ClientError::Io { addr, source };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {}\r\n", token.secret()));
    }
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        request.push_str("\r\n");
    }
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    stream.take(64 << 20).read_to_end(&mut raw).map_err(io)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status_line = head.lines().next().unwrap_or("").to_string();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    let code = status_line.split_whitespace().nth(1);
    if code == Some("401") {
        return Err(ClientError::Unauthorized {
            addr,
            had_token: token.is_some(),
        });
    }
    if code != Some("200") {
        return Err(ClientError::Status {
            addr,
            status: status_line,
            body,
        });
    }
    Ok(body)
}

/// GETs `path` without a token and decodes the JSON body.
pub fn get_json<T: serde::de::DeserializeOwned>(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<T, ClientError> {
    Api { addr, token: None }.get_json(path, timeout)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
