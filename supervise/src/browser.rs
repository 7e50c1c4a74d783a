//! A headless Chromium driven through chromedriver (WebDriver over HTTP on
//! loopback), for the dashboard's browser test and `maxwell bench
//! dashboard`. chromedriver listens on a port of the kernel's choosing
//! (`--port=0`) and says which on its first lines; the session and the
//! driver end when the [`Browser`] is dropped.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What can go wrong driving the browser.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// chromium or chromedriver is not installed.
    #[error("{0} is not on PATH (Debian: apt install chromium chromium-driver)")]
    Missing(&'static str),
    #[error("cannot start chromedriver: {0}")]
    Spawn(std::io::Error),
    #[error("chromedriver exited before it listened; it said: {0}")]
    DriverExited(String),
    #[error("talking to chromedriver: {0}")]
    Io(#[from] std::io::Error),
    /// chromedriver answered with a WebDriver error, or not with JSON.
    #[error("WebDriver {call}: {answer}")]
    WebDriver { call: String, answer: String },
}

/// The browser and chromedriver binaries on PATH.
pub fn find() -> Result<(PathBuf, PathBuf), BrowserError> {
    use crate::on_path;
    Ok((
        on_path("chromium").ok_or(BrowserError::Missing("chromium"))?,
        on_path("chromedriver").ok_or(BrowserError::Missing("chromedriver"))?,
    ))
}

/// One WebDriver session.
#[derive(Debug)]
pub struct Browser {
    addr: SocketAddr,
    session: String,
    driver: Child,
}

impl Browser {
    /// Starts chromedriver and a headless `chromium` with its profile in
    /// `profile` and a window of `width` × `height`.
    pub fn start(
        (chromium, chromedriver): (&Path, &Path),
        profile: &Path,
        (width, height): (u32, u32),
    ) -> Result<Self, BrowserError> {
        let mut driver = Command::new(chromedriver)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(BrowserError::Spawn)?;
        let port = match listening_port(&mut driver) {
            Ok(p) => p,
            Err(e) => {
                let _ = driver.kill();
                let _ = driver.wait();
                return Err(e);
            }
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         format!("--window-size={width},{height}"),
                         format!("--user-data-dir={}", profile.display())],
            },
        }}});
        let mut b = Self {
            addr,
            session: String::new(),
            driver,
        };
        let v = request(addr, "POST", "/session", Some(caps))?;
        b.session = v["sessionId"].as_str().unwrap_or_default().to_string();
        Ok(b)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, BrowserError> {
        let path = format!("/session/{}{path}", self.session);
        request(self.addr, method, &path, body)
    }

    /// Loads `url`.
    pub fn goto(&self, url: &str) -> Result<(), BrowserError> {
        self.call("POST", "/url", Some(json!({ "url": url })))
            .map(drop)
    }

    /// Runs `script` (a function body) in the page; what it returns.
    pub fn js(&self, script: &str) -> Result<Value, BrowserError> {
        let body = json!({"script": script, "args": []});
        self.call("POST", "/execute/sync", Some(body))
    }

    fn element(&self, css: &str) -> Result<String, BrowserError> {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        )?;
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| BrowserError::WebDriver {
                call: format!("find {css}"),
                answer: v.to_string(),
            })
    }

    /// Types `text` into the element `css` selects.
    pub fn type_into(&self, css: &str, text: &str) -> Result<(), BrowserError> {
        let e = self.element(css)?;
        let body = json!({ "text": text });
        self.call("POST", &format!("/element/{e}/value"), Some(body))
            .map(drop)
    }

    /// Clicks the element `css` selects.
    pub fn click(&self, css: &str) -> Result<(), BrowserError> {
        let e = self.element(css)?;
        self.call("POST", &format!("/element/{e}/click"), Some(json!({})))
            .map(drop)
    }

    /// Saves a PNG of the window to `to`.
    pub fn screenshot(&self, to: &Path) -> Result<(), BrowserError> {
        let v = self.call("GET", "/screenshot", None)?;
        std::fs::write(to, base64(v.as_str().unwrap_or_default()))?;
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", "", None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Reads chromedriver's first lines until "started successfully on port N".
fn listening_port(driver: &mut Child) -> Result<u16, BrowserError> {
    let mut out = driver
        .stdout
        .take()
        .ok_or_else(|| BrowserError::DriverExited(String::new()))?;
    let mut seen = String::new();
    let port = loop {
        let mut buf = [0u8; 512];
        let n = out.read(&mut buf)?;
        if n == 0 {
            return Err(BrowserError::DriverExited(seen));
        }
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        if let Some(p) = seen
            .split("started successfully on port ")
            .nth(1)
            .and_then(|r| r.split('.').next())
            .and_then(|p| p.trim().parse::<u16>().ok())
        {
            break p;
        }
    };
    // Keep draining its output so that it never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Ok(port)
}

/// One WebDriver call; the answer's `value`. chromedriver keeps the
/// connection open, so the body is read by its Content-Length.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value, BrowserError> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let call = format!("{method} {path}");
    let bad = |answer: String| BrowserError::WebDriver {
        call: call.clone(),
        answer,
    };
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let (start, length) = loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(bad("the connection closed before an answer".into()));
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| bad(format!("no Content-Length in {head}")))?;
            break (end + 4, length);
        }
    };
    while raw.len() < start + length {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(bad("the connection closed mid-answer".into()));
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&raw[start..start + length]);
    let v: Value = serde_json::from_str(&text).map_err(|e| bad(format!("{e}: {text:.300}")))?;
    if !v["value"]["error"].is_null() {
        return Err(bad(v["value"].to_string()));
    }
    Ok(v["value"].clone())
}

/// Standard base64 (the screenshot), padding and whitespace ignored.
fn base64(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .bytes()
        .filter_map(|c| match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        })
        .collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |a, (i, d)| a | u32::from(*d) << (18 - 6 * i));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(super::base64("aGVsbG8="), b"hello");
        assert_eq!(super::base64("aGVsbG8h"), b"hello!");
        assert_eq!(super::base64("iVBO\nRw0K"), b"\x89PNG\r\n");
    }
}
