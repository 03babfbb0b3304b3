//! Running the real `hl7bridge` binary as a subprocess.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_hl7bridge")
}

/// `hl7bridge serve` on `data_dir` with `extra` flags. Tests run in
/// parallel, so every listener is on an ephemeral port or off unless
/// `extra` names it.
pub fn serve_command(data_dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0"]);
    for flag in ["--registry-listen", "--metrics-listen"] {
        if !extra.contains(&flag) {
            cmd.args([flag, ""]);
        }
    }
    cmd.arg("--data-dir").arg(data_dir).args(extra);
    cmd
}

/// `hl7bridge transform --data-dir` on `data_dir` with `extra` flags, its
/// listeners off and its output discarded: the stage as its own process.
pub fn spawn_transform(data_dir: &Path, extra: &[&str]) -> Child {
    Command::new(bin())
        .args(["transform", "--registry-listen", "", "--metrics-listen", ""])
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hl7bridge transform")
}

pub struct Bridge {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Bridge {
    /// Starts `hl7bridge serve` on an ephemeral port and waits for its
    /// "listening on" line.
    pub fn serve(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start(data_dir, extra, false).0
    }

    /// Like `serve`, with the embedded schema registry on an ephemeral port;
    /// also returns its base URL.
    pub fn serve_with_registry(data_dir: &Path, extra: &[&str]) -> (Self, String) {
        let (b, url) = Self::start(data_dir, extra, true);
        (b, url.expect("registry line"))
    }

    /// Like `serve`, with /metrics, /healthz and /readyz on an ephemeral
    /// port; also returns their base URL.
    pub fn serve_with_metrics(data_dir: &Path, extra: &[&str]) -> (Self, String) {
        let mut args = vec!["--metrics-listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let (b, url) = Self::start_reading(data_dir, &args, false, true);
        (b, url.expect("metrics line"))
    }

    fn start(data_dir: &Path, extra: &[&str], registry: bool) -> (Self, Option<String>) {
        Self::start_reading(data_dir, extra, registry, false)
    }

    /// Starts serve and reads its announcement lines: listening, then the
    /// registry's URL (if `registry`), then the metrics URL (if `metrics`).
    fn start_reading(
        data_dir: &Path,
        extra: &[&str],
        registry: bool,
        metrics_line: bool,
    ) -> (Self, Option<String>) {
        let registry_flags: &[&str] = if registry {
            &["--registry-listen", "127.0.0.1:0"]
        } else {
            &[]
        };
        let mut child = serve_command(data_dir, &[registry_flags, extra].concat())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn hl7bridge");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout);
        let mut line = String::new();
        lines.read_line(&mut line).unwrap();
        let addr = line
            .split_whitespace()
            .nth(3)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
        let mut url_line = || {
            let mut l = String::new();
            lines.read_line(&mut l).unwrap();
            l.split_whitespace()
                .last()
                .filter(|u| u.starts_with("http://"))
                .unwrap_or_else(|| panic!("unexpected announcement line: {l:?}"))
                .to_owned()
        };
        let registry_url = registry.then(&mut url_line);
        let metrics_url = metrics_line.then(&mut url_line);
        (Self { child, addr }, metrics_url.or(registry_url))
    }

    /// SIGKILL: no chance to flush or drain anything.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        None
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
