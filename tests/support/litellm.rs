//! Real LiteLLM proxy (PyPI's `litellm[proxy]` 1.80.0) on 127.0.0.1, started on a config
//! file with exactly the environment a test gives it (what its Compose service would get),
//! for requests through it. The executable is `$DEPLOY_TEST_LITELLM`, else the venv `.ci/run`
//! makes (`target/ci-litellm/bin/litellm`). A missing LiteLLM is a test failure that says
//! so, never a skip. It runs with `LITELLM_LOCAL_MODEL_COST_MAP=True` and `--telemetry
//! False`, so it reaches for nothing but the stand-ins.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Litellm {
    child: Child,
    port: u16,
    log: PathBuf,
    /// How long it took until `/health/liveliness` answered.
    pub startup: Duration,
}

/// How LiteLLM ended up after a start.
pub enum Started {
    Running(Litellm),
    /// It exited before serving: its exit code and what it printed.
    Exited {
        code: Option<i32>,
        log: String,
    },
}

/// At most this long, polled every 250 ms, for LiteLLM to come up (it takes 8-20 s here on
/// two busy cores).
const STARTUP_LIMIT: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(250);

fn executable() -> PathBuf {
    if let Some(p) = std::env::var_os("DEPLOY_TEST_LITELLM") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-litellm/bin/litellm")
}

/// Starts LiteLLM on `config` (written to `dir`) with only `env` (and PATH, HOME) set.
pub fn start(dir: &Path, config: &str, env: &[(&str, &str)]) -> Started {
    let exe = executable();
    assert!(
        exe.exists(),
        "LiteLLM not found at {} (set DEPLOY_TEST_LITELLM, or run .ci/run, which installs litellm[proxy]==1.80.0 into target/ci-litellm)",
        exe.display()
    );
    let config_path = dir.join("litellm.config.yaml");
    std::fs::write(&config_path, config).expect("write the LiteLLM config");
    let log = dir.join("litellm.log");
    let out = std::fs::File::create(&log).expect("LiteLLM log");
    let err = out.try_clone().expect("LiteLLM log");
    let port = free_port();
    let home = dir.join("litellm-home");
    std::fs::create_dir_all(&home).expect("LiteLLM home");
    let began = Instant::now();
    let mut cmd = Command::new(&exe);
    cmd.arg("--config")
        .arg(&config_path)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--telemetry", "False"])
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", exe.display()));
    let agent = agent(Duration::from_secs(2));
    let url = format!("http://127.0.0.1:{port}/health/liveliness");
    let tries = STARTUP_LIMIT.as_millis() / POLL.as_millis();
    for _ in 0..tries {
        if let Ok(Some(status)) = child.try_wait() {
            return Started::Exited {
                code: status.code(),
                log: std::fs::read_to_string(&log).unwrap_or_default(),
            };
        }
        if agent
            .get(&url)
            .call()
            .is_ok_and(|r| r.status().as_u16() == 200)
        {
            return Started::Running(Litellm {
                child,
                port,
                log,
                startup: began.elapsed(),
            });
        }
        if began.elapsed() > STARTUP_LIMIT {
            break;
        }
        std::thread::sleep(POLL);
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!(
        "LiteLLM did not answer {url} within {STARTUP_LIMIT:?}:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// Starts LiteLLM and expects it to serve.
pub fn running(dir: &Path, config: &str, env: &[(&str, &str)]) -> Litellm {
    match start(dir, config, env) {
        Started::Running(l) => l,
        Started::Exited { code, log } => {
            panic!("LiteLLM exited ({code:?}) instead of serving:\n{log}")
        }
    }
}

/// What a chat completion through LiteLLM answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// The assistant's text of a 200.
    pub fn content(&self) -> &str {
        self.body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
    }

    /// The error message of a failure.
    pub fn error(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }
}

impl Litellm {
    /// POSTs a one-message chat for `model` to LiteLLM, without an Authorization header.
    pub fn chat(&self, model: &str, content: &str) -> Answer {
        let url = format!("http://127.0.0.1:{}/v1/chat/completions", self.port);
        let body =
            serde_json::json!({"model": model, "messages": [{"role": "user", "content": content}]});
        let mut response = agent(Duration::from_secs(120))
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|e| panic!("POST {url}: reading the answer: {e}"));
        Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }

    /// What LiteLLM printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Litellm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into()
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
