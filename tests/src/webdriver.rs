//! A small WebDriver client for Debian's chromium-driver: enough to open a
//! page in headless Chromium, run a script, move and click the pointer,
//! click an element and take a screenshot. Plain HTTP/1.1 over a TCP
//! stream, one request per connection; every step bounded in time.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// A chromedriver process and one browser session; both end when dropped.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    /// The network namespace chromedriver (and the browser) run in.
    ns: Option<String>,
}

/// A free loopback port (bound, then released for the child to take).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One request, from inside `ns` when given (a thread enters it).
fn http_in(
    ns: Option<&str>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value> {
    match ns {
        None => http(addr, method, path, body),
        Some(ns) => {
            let (m, p, b) = (method.to_string(), path.to_string(), body.cloned());
            crate::traffic::in_netns(ns, move || http(addr, &m, &p, b.as_ref()))
                .join()
                .map_err(|_| anyhow::anyhow!("webdriver thread panicked"))?
        }
    }
}

fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("cannot reach chromedriver at {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    )?;
    // Read the head, then exactly Content-Length bytes (chromedriver keeps
    // the connection open whatever the request says).
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            bail!("chromedriver closed the connection without a response");
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let chunked =
        head.contains("transfer-encoding: chunked") || head.contains("transfer-encoding:chunked");
    let length = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    let body = match length {
        Some(len) => {
            while raw.len() < head_end + len {
                let n = s.read(&mut buf)?;
                if n == 0 {
                    bail!("chromedriver's response was cut short");
                }
                raw.extend_from_slice(&buf[..n]);
            }
            String::from_utf8_lossy(&raw[head_end..head_end + len]).to_string()
        }
        None => {
            s.read_to_end(&mut raw)?;
            let body = String::from_utf8_lossy(&raw[head_end..]).to_string();
            if chunked {
                dechunk(&body)
            } else {
                body
            }
        }
    };
    let v: Value = serde_json::from_str(&body).with_context(|| {
        format!(
            "chromedriver answered `{}`",
            body.chars().take(200).collect::<String>()
        )
    })?;
    if let Some(err) = v["value"]["error"].as_str() {
        bail!(
            "webdriver {method} {path}: {err}: {}",
            v["value"]["message"].as_str().unwrap_or("")
        );
    }
    Ok(v["value"].clone())
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// Decodes standard base64 (the screenshot).
pub fn base64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter_map(val) {
        acc = (acc << 6) | c;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

impl Browser {
    /// Starts chromedriver and a headless Chromium window of `w`×`h`.
    pub fn start(w: u32, h: u32) -> Result<Browser> {
        Self::start_in(None, w, h)
    }

    /// As [`Browser::start`], inside network namespace `ns` (a lab node),
    /// where it reaches what listens on that node's loopback.
    pub fn start_in(ns: Option<&str>, w: u32, h: u32) -> Result<Browser> {
        let port = free_port()?;
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "chromedriver"]);
                c
            }
            None => Command::new("chromedriver"),
        };
        let driver = cmd
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start chromedriver (apt-get install chromium-driver; `cargo xtask setup` does)")?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut b = Browser {
            driver,
            addr,
            session: String::new(),
            ns: ns.map(String::from),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if http_in(ns, addr, "GET", "/status", None).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                bail!("chromedriver did not answer within 20 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--hide-scrollbars", format!("--window-size={w},{h}")],
            }
        }}});
        let v = http_in(ns, addr, "POST", "/session", Some(&caps))?;
        b.session = v["sessionId"]
            .as_str()
            .context("no session id from chromedriver")?
            .to_string();
        Ok(b)
    }

    fn cmd(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        http_in(
            self.ns.as_deref(),
            self.addr,
            method,
            &format!("/session/{}{path}", self.session),
            body,
        )
    }

    pub fn goto(&self, url: &str) -> Result<()> {
        self.cmd("POST", "/url", Some(&json!({ "url": url })))
            .map(|_| ())
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub fn eval(&self, script: &str, args: Value) -> Result<Value> {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(&json!({"script": script, "args": args})),
        )
    }

    /// Polls `script` until it returns something truthy (or `limit` passes).
    pub fn wait_for(&self, script: &str, limit: Duration) -> Result<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.eval(script, json!([]))?;
            let truthy =
                !(v.is_null() || v == Value::Bool(false) || v == json!("") || v == json!(0));
            if truthy {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!("`{script}` still false after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Moves the pointer to viewport (x, y); clicks there if `click`.
    pub fn pointer(&self, x: i64, y: i64, click: bool) -> Result<()> {
        let mut acts = vec![
            json!({"type": "pointerMove", "origin": "viewport", "x": x, "y": y, "duration": 0}),
        ];
        if click {
            acts.push(json!({"type": "pointerDown", "button": 0}));
            acts.push(json!({"type": "pointerUp", "button": 0}));
        }
        self.cmd(
            "POST",
            "/actions",
            Some(&json!({"actions": [{"type": "pointer", "id": "mouse",
                "parameters": {"pointerType": "mouse"}, "actions": acts}]})),
        )
        .map(|_| ())
    }

    /// Clicks the first element matching a CSS selector.
    pub fn click(&self, css: &str) -> Result<()> {
        let el = self.cmd(
            "POST",
            "/element",
            Some(&json!({"using": "css selector", "value": css})),
        )?;
        let id = el
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| v.as_str())
            .context("no element id")?
            .to_string();
        self.cmd("POST", &format!("/element/{id}/click"), Some(&json!({})))
            .map(|_| ())
    }

    /// A PNG screenshot of the viewport.
    pub fn screenshot(&self) -> Result<Vec<u8>> {
        let v = self.cmd("GET", "/screenshot", None)?;
        Ok(base64(v.as_str().context("screenshot is not text")?))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = http_in(
                self.ns.as_deref(),
                self.addr,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_decodes() {
        assert_eq!(super::base64("aGVsbG8gd29ybGQ="), b"hello world");
        assert_eq!(super::base64("YQ=="), b"a");
    }
}
