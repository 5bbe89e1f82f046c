//! The `pipeline` binary as a separate process: temp working dir, written TOML config, env for the
//! tests, output captured to files (printed when a test panics), SIGTERM stop, restart on the same DB.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::admin::Admin;
use crate::postgres::PgDatabase;
use crate::{free_port, random_string, target_dir};

/// Which store the host runs on.
#[derive(Clone, Debug)]
pub enum DbKind {
    /// `sqlite://<temp dir>/pipeline.db`
    Sqlite,
    /// A fresh database on the PostgreSQL server at this URL (dropped with the host).
    Postgres(String),
}

/// How to start a host.
#[derive(Clone, Debug)]
pub struct HostOptions {
    pub db: DbKind,
    /// The anvil chain's WS URL (`[[chains]]` entry "anvil", chain id 31337).
    pub ws_url: String,
    /// `start_block` of the chain entry (first start only; later starts resume from the cursor).
    pub start_block: Option<u64>,
    /// Extra environment, applied last (overrides the defaults below).
    pub env: Vec<(String, String)>,
    /// Program (and leading arguments) to run instead of the `pipeline` binary; `serve --config FILE`
    /// is appended. For the support self-tests.
    pub command: Option<Vec<OsString>>,
    /// TOML appended to the config after the chain entry, for settings without a variable
    /// (e.g. `"[delivery]\nlease_ms = 5000\n"`).
    pub config_extra: String,
}

impl HostOptions {
    pub fn new(db: DbKind, ws_url: &str) -> HostOptions {
        HostOptions {
            db,
            ws_url: ws_url.to_string(),
            start_block: None,
            env: Vec::new(),
            command: None,
            config_extra: String::new(),
        }
    }
}

/// The host binary: `$PIPELINE_BIN`, or `<target dir>/debug/pipeline`.
pub fn pipeline_binary() -> PathBuf {
    let path = match std::env::var_os("PIPELINE_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => target_dir().join("debug/pipeline"),
    };
    if !path.is_file() {
        panic!(
            "the host binary is missing at {}: run scripts/test.sh (it runs `cargo build -p pipeline-host \
             --bin pipeline`), or set PIPELINE_BIN / CARGO_TARGET_DIR",
            path.display()
        );
    }
    path
}

/// Admin and metrics listen addresses on ports free a moment ago.
fn free_listen_addrs() -> (String, String) {
    (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    )
}

/// A running (or stopped) host process; killed on drop, its PostgreSQL database dropped after it.
pub struct Host {
    child: Option<Child>,
    runs: u32,
    env: Vec<(String, String)>,
    command: Option<Vec<OsString>>,
    admin_addr: String,
    metrics_addr: String,
    token: String,
    database_url: String,
    admin: Admin,
    http: reqwest::Client,
    config_path: PathBuf,
    // Dropped after the process is killed (fields drop after `Drop::drop`).
    _pg: Option<PgDatabase>,
    /// Set once a panic message carried the logs, so that drop does not print them again.
    logs_shown: std::sync::atomic::AtomicBool,
    dir: TempDir,
}

impl Host {
    /// Writes the config, starts the process and waits until `GET /healthz` answers 200.
    pub async fn start(opts: HostOptions) -> Host {
        let dir = tempfile::Builder::new()
            .prefix("pipeline-host-")
            .tempdir()
            .expect("create temp dir");
        let (database_url, pg) = match &opts.db {
            DbKind::Sqlite => (
                format!("sqlite://{}", dir.path().join("pipeline.db").display()),
                None,
            ),
            DbKind::Postgres(server) => {
                let db = PgDatabase::create(server).await;
                (db.url().to_string(), Some(db))
            }
        };
        let mut config = format!(
            "[[chains]]\nname = \"anvil\"\nchain_id = 31337\nws_urls = [\"{}\"]\n",
            opts.ws_url
        );
        if let Some(block) = opts.start_block {
            config.push_str(&format!("start_block = {block}\n"));
        }
        if !opts.config_extra.is_empty() {
            config.push('\n');
            config.push_str(&opts.config_extra);
        }
        let config_path = dir.path().join("pipeline.toml");
        std::fs::write(&config_path, config).expect("write pipeline.toml");

        let (admin_addr, metrics_addr) = free_listen_addrs();
        let token = format!("test-{}", random_string(32));
        let mut env: Vec<(String, String)> = [
            ("DATABASE_URL", database_url.as_str()),
            ("PIPELINE_ADMIN_ADDR", admin_addr.as_str()),
            ("PIPELINE_METRICS_ADDR", metrics_addr.as_str()),
            ("PIPELINE_ADMIN_TOKEN", token.as_str()),
            ("PIPELINE_DELIVERY_ALLOWED_CIDRS", "127.0.0.0/8"),
            ("PIPELINE_DELIVERY_RETRY_SCHEDULE", "200ms,500ms,1s"),
            ("PIPELINE_BATCH_MAX_WAIT_MS", "20"),
            ("PIPELINE_LOG_FORMAT", "text"),
            ("RUST_LOG", "info,pipeline_host=debug"),
            ("RUST_BACKTRACE", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        env.extend(opts.env.iter().cloned());

        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("build reqwest client");
        let admin = Admin::new(&format!("http://{admin_addr}"), Some(&token));
        let mut host = Host {
            child: None,
            runs: 0,
            env,
            command: opts.command.clone(),
            admin_addr,
            metrics_addr,
            token,
            database_url,
            admin,
            http,
            config_path,
            _pg: pg,
            logs_shown: std::sync::atomic::AtomicBool::new(false),
            dir,
        };
        host.spawn_and_wait().await;
        host
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "the host is already running");
        let (bin, leading) = match &self.command {
            Some(cmd) if !cmd.is_empty() => (PathBuf::from(&cmd[0]), cmd[1..].to_vec()),
            _ => (pipeline_binary(), Vec::new()),
        };
        self.runs += 1;
        let open = |name: &str| {
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join(name))
                .unwrap_or_else(|e| panic!("open {name}: {e}"));
            writeln!(f, "===== pipeline run {} =====", self.runs).expect("write log marker");
            f
        };
        let mut cmd = Command::new(&bin);
        cmd.args(&leading)
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(open("stdout.log"))
            .stderr(open("stderr.log"));
        for var in [
            "PIPELINE_CONFIG",
            "ETHEREUM_WSS",
            "ARBITRUM_WSS",
            "OPTIMISM_WSS",
            "BASE_WSS",
        ] {
            cmd.env_remove(var);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        self.child = Some(child);
    }

    /// Starts the process and waits for health. A start that fails only because another process
    /// took one of its ports meanwhile (possible on a restart, which keeps them) is retried on new
    /// ports; any other early exit fails the test with the host's logs.
    async fn spawn_and_wait(&mut self) {
        for attempt in 1..=3 {
            self.spawn();
            match self.wait_healthy(Duration::from_secs(60)).await {
                Ok(()) => return,
                Err(status) if attempt < 3 && self.last_run_lost_a_port() => {
                    eprintln!(
                        "host run {} exited with {status}: a port was taken; starting again on new ports",
                        self.runs
                    );
                    self.pick_new_ports();
                }
                Err(status) => panic!(
                    "the host exited during start-up with {status}\n{}",
                    self.logs_for_panic()
                ),
            }
        }
    }

    /// Whether this run's stderr says a listen address was in use.
    fn last_run_lost_a_port(&self) -> bool {
        let stderr =
            std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
        let marker = format!("===== pipeline run {} =====", self.runs);
        stderr
            .rsplit_once(&marker)
            .is_some_and(|(_, run)| run.contains("Address already in use"))
    }

    fn pick_new_ports(&mut self) {
        (self.admin_addr, self.metrics_addr) = free_listen_addrs();
        self.set_env("PIPELINE_ADMIN_ADDR", &self.admin_addr.clone());
        self.set_env("PIPELINE_METRICS_ADDR", &self.metrics_addr.clone());
        self.admin = Admin::new(&format!("http://{}", self.admin_addr), Some(&self.token));
    }

    /// Waits until `GET /healthz` answers 200; `Err` with the exit status if the process exits
    /// first. Panics (with the logs) after `timeout`.
    async fn wait_healthy(&mut self, timeout: Duration) -> Result<(), ExitStatus> {
        let start = Instant::now();
        let mut last;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(status);
            }
            match self.healthz().await {
                Ok(200) => return Ok(()),
                Ok(code) => last = format!("GET /healthz answered {code}"),
                Err(e) => last = format!("GET /healthz failed: {e}"),
            }
            if start.elapsed() > timeout {
                panic!(
                    "the host did not become healthy within {timeout:?} (expected GET http://{}/healthz → 200; \
                     last: {last})\n{}",
                    self.admin_addr,
                    self.logs_for_panic()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Status of `GET /healthz` (no auth).
    pub async fn healthz(&self) -> Result<u16, String> {
        let url = format!("http://{}/healthz", self.admin_addr);
        self.http
            .get(&url)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    }

    /// The Prometheus text at `PIPELINE_METRICS_ADDR/metrics`.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.metrics_addr);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        resp.text()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// Sends SIGTERM and waits (30 s) for the process to exit; asserts exit status 0.
    pub async fn stop(&mut self) {
        let status = self.terminate(Duration::from_secs(30)).await;
        assert!(
            status.success(),
            "the host should exit with status 0 after SIGTERM, got {status}\n{}",
            self.logs_for_panic()
        );
    }

    /// SIGTERM, then the exit status (SIGKILL and a panic after `timeout`).
    pub async fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("stop(): the host is not running");
        let pid = child.id() as libc::pid_t;
        // SAFETY: plain kill(2) on the pid of our own child, which has not been reaped yet.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(
            rc,
            0,
            "kill(SIGTERM) on the host failed: {}",
            std::io::Error::last_os_error()
        );
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait for the host") {
                return status;
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the host did not exit within {timeout:?} after SIGTERM\n{}",
                    self.logs_for_panic()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL (a crash) and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the host if it runs (SIGTERM, exit 0), then starts it again on the same DB and dir.
    pub async fn restart(&mut self) {
        if self.child.is_some() {
            self.stop().await;
        }
        self.spawn_and_wait().await;
    }

    /// Sets (or replaces) an environment variable for the next start.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    /// Starts the host again after `stop()`/`kill()`.
    pub async fn start_again(&mut self) {
        self.spawn_and_wait().await;
    }

    /// The host process' id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn admin(&self) -> &Admin {
        &self.admin
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics_addr)
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the host printed so far (stdout, then stderr).
    pub fn logs(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!(
            "--- host stdout ---\n{}--- host stderr ---\n{}",
            read("stdout.log"),
            read("stderr.log")
        )
    }

    fn logs_for_panic(&self) -> String {
        self.logs_shown
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.logs_tail(200)
    }

    /// The last `n` lines of stdout and of stderr.
    pub fn logs_tail(&self, n: usize) -> String {
        let tail = |name: &str| {
            let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        format!(
            "--- host {} stdout (last {n} lines) ---\n{}\n--- host stderr (last {n} lines) ---\n{}\n--- end of host logs ---",
            self.dir.path().display(),
            tail("stdout.log"),
            tail("stderr.log")
        )
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() && !self.logs_shown.load(std::sync::atomic::Ordering::Relaxed) {
            eprintln!("{}", self.logs_tail(300));
        }
    }
}
