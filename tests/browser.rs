//! Headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`): a
//! few commands of the W3C protocol spoken over reqwest, enough to open pages, read text,
//! fill and submit forms, run a probe script and take screenshots.

use std::{process::Stdio, time::Duration};

use base64::Engine as _;
use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// One chromedriver with one headless browser session; both end when this drops.
pub struct Browser {
    driver: tokio::process::Child,
    session: String,
    base: String,
    http: reqwest::Client,
}

#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    pub async fn start() -> Self {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: apt-get install chromium chromium-driver (deploy/test.sh does)"
            );
        }
        let port = crate::procs::free_port();
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting chromedriver");
        crate::procs::wait_for_port(port).await;
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let mut args = vec![
            "--headless=new",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
            "--hide-scrollbars",
        ];
        // Chromium refuses to run as root inside its sandbox.
        if std::env::var("USER").as_deref() == Ok("root") || is_root() {
            args.push("--no-sandbox");
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let answer = call(&http, "POST", &format!("{base}/session"), Some(caps)).await;
        let session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_owned();
        Self {
            driver,
            session,
            base,
            http,
        }
    }

    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        call(&self.http, method, &url, body).await
    }

    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url}))).await;
    }

    pub async fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn source(&self) -> String {
        self.cmd("GET", "/source", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let v = self
            .cmd(
                "POST",
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                Element(
                    e[ELEMENT]
                        .as_str()
                        .unwrap_or_else(|| panic!("{css}: not an element: {v}"))
                        .to_owned(),
                )
            })
            .collect()
    }

    /// The one element matching `css` (panics with the page's URL otherwise).
    pub async fn find(&self, css: &str) -> Element {
        let mut all = self.find_all(css).await;
        assert_eq!(
            all.len(),
            1,
            "{css}: {} matches on {}",
            all.len(),
            self.url().await
        );
        all.remove(0)
    }

    pub async fn text(&self, e: &Element) -> String {
        self.cmd("GET", &format!("/element/{}/text", e.0), None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn text_of(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.text(&e).await
    }

    /// An attribute of the one element matching `css` ("" when absent).
    pub async fn attribute(&self, css: &str, name: &str) -> String {
        let e = self.find(css).await;
        self.cmd("GET", &format!("/element/{}/attribute/{name}", e.0), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn click(&self, e: &Element) {
        self.cmd("POST", &format!("/element/{}/click", e.0), Some(json!({})))
            .await;
    }

    pub async fn type_into(&self, e: &Element, text: &str) {
        self.cmd(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Runs `script` in the page (WebDriver's own channel, not subject to the page's CSP).
    pub async fn execute(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// The text of an open `alert()`/`confirm()` dialog, if any.
    pub async fn alert(&self) -> Option<String> {
        let url = format!("{}/session/{}/alert/text", self.base, self.session);
        let text = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let answer: Value = serde_json::from_str(&text).unwrap();
        match answer["value"]["error"].as_str() {
            Some("no such alert") => None,
            Some(other) => panic!("alert: {other}: {answer}"),
            None => Some(answer["value"].as_str().unwrap_or_default().to_owned()),
        }
    }

    /// Saves a PNG of the viewport.
    pub async fn screenshot(&self, path: &std::path::Path) {
        let b64 = self.cmd("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

async fn call(http: &reqwest::Client, method: &str, url: &str, body: Option<Value>) -> Value {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = http.request(m, url);
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let answer = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = answer.status();
    let v: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
    assert!(status.is_success(), "{method} {url}: {status} {v}");
    v["value"].clone()
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the browser; chromedriver itself is killed with its handle.
        let url = format!("{}/session/{}", self.base, self.session);
        let http = self.http.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let _ = http.delete(&url).send().await;
                })
        })
        .join();
        let _ = self.driver.start_kill();
    }
}
