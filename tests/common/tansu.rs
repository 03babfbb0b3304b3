//! A private Tansu broker per test: a real Kafka-protocol broker on loopback.
//!
//! Kafka tests fail, never skip, when Tansu is missing; a developer without
//! it can opt out explicitly with HL7BRIDGE_SKIP_KAFKA=1, which
//! HL7BRIDGE_REQUIRE_KAFKA=1 (set by scripts/test.sh and CI) overrides.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn tansu_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
        });
    let p = home.join("bin/tansu");
    if p.exists() {
        return Some(p);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("tansu"))
            .find(|p| p.exists())
    })
}

/// Returns the broker binary, or None when the developer opted out.
pub fn require() -> Option<PathBuf> {
    let required = std::env::var("HL7BRIDGE_REQUIRE_KAFKA").is_ok_and(|v| v == "1");
    let skip = std::env::var("HL7BRIDGE_SKIP_KAFKA").is_ok_and(|v| v == "1");
    match tansu_bin() {
        Some(b) => Some(b),
        None if skip && !required => {
            eprintln!("SKIPPING Kafka test: HL7BRIDGE_SKIP_KAFKA=1 and no tansu binary");
            None
        }
        None => panic!("Kafka tests need the Tansu broker: run scripts/kafka-dev.sh install (or set HL7BRIDGE_SKIP_KAFKA=1 locally)"),
    }
}

pub struct Tansu {
    bin: PathBuf,
    child: Option<Child>,
    pub port: u16,
    /// The port clients are told to use (a proxy's, for partition tests).
    pub advertised_port: u16,
    engine: String,
    /// The broker's log, and where the running process's part of it starts.
    log: Option<(PathBuf, u64)>,
    _dir: tempfile::TempDir,
}

impl Tansu {
    /// Memory storage: fast, lost on restart.
    pub fn memory() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        Self::start(require()?, "memory://tansu/".into(), dir)
    }

    /// SQLite storage: survives a broker restart.
    pub fn sqlite() -> Option<Self> {
        let mut dir = tempfile::tempdir().unwrap();
        // For post-mortems of the broker's own storage.
        if std::env::var_os("HL7BRIDGE_KEEP_TANSU").is_some() {
            dir.disable_cleanup(true);
            eprintln!("tansu storage kept in {}", dir.path().display());
        }
        let engine = format!("sqlite:///{}", dir.path().join("tansu.db").display());
        Self::start(require()?, engine, dir)
    }

    /// Memory storage, advertised at `advertised_port` (where a proxy listens).
    /// (Tansu 0.6's SQLite engine panics on a producer ID it has no row for,
    /// tansu-storage lite.rs:503, which happens after reconnects; its memory
    /// engine answers UnknownProducerId as Kafka does.)
    pub fn memory_behind(advertised_port: u16) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        Self::start_advertised(
            require()?,
            "memory://tansu/".into(),
            dir,
            Some(advertised_port),
        )
    }

    fn start(bin: PathBuf, engine: String, dir: tempfile::TempDir) -> Option<Self> {
        Self::start_advertised(bin, engine, dir, None)
    }

    fn start_advertised(
        bin: PathBuf,
        engine: String,
        dir: tempfile::TempDir,
        advertised: Option<u16>,
    ) -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let advertised_port = advertised.unwrap_or(port);
        let mut t = Self {
            bin,
            child: None,
            port,
            advertised_port,
            engine,
            log: None,
            _dir: dir,
        };
        t.restart();
        Some(t)
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.advertised_port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts (or restarts) the broker on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised_port);
        // The broker's log, kept for post-mortems: $TMPDIR/hl7bridge-tansu-PORT.log
        let log_path = std::env::temp_dir().join(format!("hl7bridge-tansu-{}.log", self.port));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let from = log.metadata().map(|m| m.len()).unwrap_or(0);
        self.log = Some((log_path.clone(), from));
        let child = Command::new(&self.bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
                "--storage-engine",
                &self.engine,
            ])
            .current_dir(self._dir.path())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("tansu did not listen on {} within 20 s", self.port);
    }
}

impl Tansu {
    /// Whether the running broker hit Tansu 0.6's SQLite-engine panic
    /// (tansu-storage lite.rs:503, "more or less than one row": a produce
    /// whose producer epoch it has no row for, seen after a restart). Its
    /// storage thread is dead from then on and every request fails, so a
    /// test can only restart it (docs/tansu.md).
    pub fn storage_panicked(&self) -> bool {
        let Some((path, from)) = &self.log else {
            return false;
        };
        std::fs::read(path).is_ok_and(|log| {
            let ours = &log[(*from as usize).min(log.len())..];
            ours.windows(KNOWN_PANIC.len()).any(|w| w == KNOWN_PANIC)
        })
    }
}

const KNOWN_PANIC: &[u8] = b"lite.rs:503:13:\nmore or less than one row";

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}
