//! A `pipeline` developer command (`dev`, `dev-node`, `listen`) as a separate process whose output
//! lines are collected as they come, killed on drop (its output is printed if the test failed).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::host::pipeline_binary;

/// A running `pipeline …` process.
pub struct Running {
    name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    /// Starts `pipeline ARGS…`; stdout and stderr lines (the latter prefixed `stderr: `) are kept.
    pub fn spawn(args: &[&str]) -> Running {
        let mut child = Command::new(pipeline_binary())
            .args(args)
            .env_remove("PIPELINE_CONFIG")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start pipeline {args:?}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        if let Some(stdout) = child.stdout.take() {
            collect(stdout, lines.clone(), "");
        }
        if let Some(stderr) = child.stderr.take() {
            collect(stderr, lines.clone(), "stderr: ");
        }
        Running {
            name: format!("pipeline {}", args.join(" ")),
            child,
            lines,
        }
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines lock").clone()
    }

    /// Waits until `n` lines satisfy `matches`; panics with the whole output after `timeout`.
    pub async fn wait_for(
        &mut self,
        what: &str,
        n: usize,
        timeout: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let start = Instant::now();
        loop {
            let found: Vec<String> = self.lines().into_iter().filter(|l| matches(l)).collect();
            if found.len() >= n {
                return found;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before {what}:\n{}",
                    self.name,
                    self.output()
                );
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what} from {} ({} of {n} seen):\n{}",
                    self.name,
                    found.len(),
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The first line containing `prefix`, with the prefix and surrounding spaces cut off.
    pub fn value_after(&self, prefix: &str) -> Option<String> {
        self.lines().iter().find_map(|line| {
            let at = line.find(prefix)?;
            line[at + prefix.len()..]
                .split_whitespace()
                .next()
                .map(str::to_string)
        })
    }

    pub fn output(&self) -> String {
        self.lines().join("\n")
    }

    /// SIGTERM, then waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- output of {} -----\n{}", self.name, self.output());
        }
    }
}

fn collect(
    stream: impl std::io::Read + Send + 'static,
    lines: Arc<Mutex<Vec<String>>>,
    prefix: &'static str,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            lines
                .lock()
                .expect("lines lock")
                .push(format!("{prefix}{line}"));
        }
    });
}
