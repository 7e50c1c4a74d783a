//! A minimal HTTP/1.1 client for the CLI (`status`, `members`, `guests`, `demo`): the
//! agent's API is plain JSON on loopback, so a full client crate is not worth
//! its build time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
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
    #[error("the agent at {addr} answered {status}: {body}")]
    Status {
        addr: SocketAddr,
        status: String,
        body: String,
    },
    /// The body was not the JSON expected.
    #[error("the agent at {addr} sent a body this client does not understand: {source}")]
    Decode {
        addr: SocketAddr,
        #[source]
        source: serde_json::Error,
    },
}

/// GETs `path` and returns the body of a 200 answer.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String, ClientError> {
    request(addr, "GET", path, None, timeout)
}

/// POSTs a JSON `body` to `path` and returns the body of a 200 answer.
pub fn post(
    addr: SocketAddr,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<String, ClientError> {
    request(addr, "POST", path, Some(body), timeout)
}

/// PUTs a JSON `body` to `path` and returns the body of a 200 answer.
pub fn put(
    addr: SocketAddr,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<String, ClientError> {
    request(addr, "PUT", path, Some(body), timeout)
}

/// One request; `body`, when given, is sent as JSON.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> Result<String, ClientError> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|source| ClientError::Connect { addr, source })?;
    let io = |source| ClientError::Io { addr, source };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n");
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
    if status_line.split_whitespace().nth(1) != Some("200") {
        return Err(ClientError::Status {
            addr,
            status: status_line,
            body,
        });
    }
    Ok(body)
}

/// GETs `path` and decodes the JSON body.
pub fn get_json<T: serde::de::DeserializeOwned>(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<T, ClientError> {
    let body = get(addr, path, timeout)?;
    serde_json::from_str(&body).map_err(|source| ClientError::Decode { addr, source })
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
