//! A private PostgreSQL server for one test: `initdb` into a temp dir, its own port, started and
//! stopped with `pg_ctl`. For tests that restart the server under load — the shared server at
//! `$PIPELINE_TEST_POSTGRES_URL` serves other tests and must never be restarted.
//!
//! The server binaries are the Debian ones that scripts/test.sh installs (step 4):
//! `$PIPELINE_TEST_PG_BIN`, else the newest `/usr/lib/postgresql/<version>/bin`. PostgreSQL refuses
//! to run as root, so as root every command runs as the `postgres` user (`runuser`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::free_port;
use crate::postgres::REQUIRE_ENV;

pub const BIN_ENV: &str = "PIPELINE_TEST_PG_BIN";

/// The directory holding `initdb` and `pg_ctl`, if any.
pub fn find_binaries() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os(BIN_ENV).filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return has_tools(&dir).then_some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| has_tools(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The binaries, or `None` when `test` should skip; with `PIPELINE_REQUIRE_POSTGRES=1` or `CI` set
/// (scripts/test.sh, CI), missing binaries fail the test instead.
pub fn binaries_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(dir) = find_binaries() {
        return Some(dir);
    }
    let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    if required {
        panic!(
            "{test}: no PostgreSQL server binaries (initdb, pg_ctl) in ${BIN_ENV} or \
             /usr/lib/postgresql/*/bin: run scripts/test.sh, which installs them (step 4)"
        );
    }
    eprintln!("SKIPPED {test}: no PostgreSQL server binaries (scripts/test.sh installs them)");
    None
}

/// A PostgreSQL server of its own; stopped (immediate) and deleted on drop.
pub struct PgServer {
    bin: PathBuf,
    port: u16,
    dir: TempDir,
}

impl PgServer {
    /// `initdb` (trust auth, user `postgres`) and start on a free port of 127.0.0.1.
    pub async fn start(bin: PathBuf) -> PgServer {
        let dir = tempfile::Builder::new()
            .prefix("pipeline-pg-")
            .tempdir()
            .expect("create temp dir");
        let server = PgServer {
            bin,
            port: free_port(),
            dir,
        };
        if is_root() {
            server.run_plain("chown", &["-R", "postgres:postgres", &server.dir_str()]);
        }
        let data = server.data_dir();
        server
            .run_pg(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ],
                Duration::from_secs(120),
            )
            .await;
        server.start_again().await;
        server
    }

    /// The server URL (database `postgres`), as `PIPELINE_TEST_POSTGRES_URL` would be.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl start`, waiting until it accepts connections.
    pub async fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir_str()
        );
        let log = self.dir.path().join("postgres.log");
        let args = [
            "-D",
            &self.data_dir(),
            "-l",
            log.to_str().expect("UTF-8 path"),
            "-o",
            &options,
            "-w",
            "-t",
            "60",
            "start",
        ];
        self.run_pg("pg_ctl", &args, Duration::from_secs(90)).await;
    }

    /// `pg_ctl stop -m immediate`: every backend is killed at once, as in a crash of the server.
    pub async fn stop_immediate(&self) {
        let args = [
            "-D",
            &self.data_dir(),
            "-m",
            "immediate",
            "-w",
            "-t",
            "30",
            "stop",
        ];
        self.run_pg("pg_ctl", &args, Duration::from_secs(60)).await;
    }

    fn data_dir(&self) -> String {
        format!("{}/data", self.dir_str())
    }

    fn dir_str(&self) -> String {
        self.dir
            .path()
            .to_str()
            .expect("UTF-8 temp dir")
            .to_string()
    }

    fn command(&self, tool: &str, args: &[&str]) -> Command {
        let program = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(&program);
            cmd
        } else {
            Command::new(&program)
        };
        cmd.args(args).current_dir(self.dir.path());
        cmd
    }

    async fn run_pg(&self, tool: &str, args: &[&str], timeout: Duration) {
        let cmd = self.command(tool, args);
        let what = format!("{tool} {}", args.join(" "));
        let log = self.dir.path().join("postgres.log");
        tokio::task::spawn_blocking(move || {
            if let Err(e) = run_with_timeout(cmd, timeout) {
                let server_log = std::fs::read_to_string(log).unwrap_or_default();
                panic!("{what}: {e}\n--- postgres.log ---\n{server_log}");
            }
        })
        .await
        .expect("the PostgreSQL command's thread");
    }

    fn run_plain(&self, program: &str, args: &[&str]) {
        let mut cmd = Command::new(program);
        cmd.args(args);
        if let Err(e) = run_with_timeout(cmd, Duration::from_secs(30)) {
            panic!("{program} {}: {e}", args.join(" "));
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `cmd` to completion within `timeout`; `Err` names the exit status or the timeout and
/// carries the command's output.
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<(), String> {
    let out = tempfile::tempfile().map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut output = out.try_clone().map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut text = String::new();
    use std::io::{Read, Seek};
    let _ = output.seek(std::io::SeekFrom::Start(0));
    let _ = output.read_to_string(&mut text);
    match status {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(format!("exited with {status}:\n{text}")),
        None => Err(format!("did not finish within {timeout:?}:\n{text}")),
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let args = [
            "-D",
            &self.data_dir(),
            "-m",
            "immediate",
            "-w",
            "-t",
            "30",
            "stop",
        ];
        let _ = run_with_timeout(self.command("pg_ctl", &args), Duration::from_secs(60));
    }
}
