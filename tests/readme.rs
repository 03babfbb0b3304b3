//! The README's first walk-through runs as written: its block under "Run it
//! and send a message" is run by bash with `hl7bridge` on the PATH, in a
//! directory holding the fixtures, and must end with exit 0. Only the ports
//! change (the defaults may be taken on a shared machine): 2575 becomes a
//! free port in the block's text and in `HL7BRIDGE_LISTEN`, and the registry
//! and metrics listeners, which the block does not use, are turned off.

use std::path::Path;
use std::process::Command;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The indented code block after `heading` in the README.
fn block_after(readme: &str, heading: &str) -> String {
    let rest = &readme[readme.find(heading).expect("the heading is in the README")..];
    rest.lines()
        .skip(1)
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.starts_with("    "))
        .map(|l| &l[4..])
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_readme_walk_through_runs_as_written_and_exits_0() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let block = block_after(&readme, "## Run it and send a message");
    assert!(block.contains("hl7bridge serve"), "{block}");

    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_hl7bridge"), bin.join("hl7bridge")).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::os::unix::fs::symlink(root.join("fixtures"), work.join("fixtures")).unwrap();

    let mllp = free_port();
    let script = block.replace("127.0.0.1:2575", &format!("127.0.0.1:{mllp}"));
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(&work)
        .env("PATH", path)
        .env("HL7BRIDGE_LISTEN", format!("127.0.0.1:{mllp}"))
        // The walk-through reads the registry from the data directory and
        // never calls the HTTP endpoints: off, so no second port can clash.
        .env("HL7BRIDGE_REGISTRY_LISTEN", "")
        .env("HL7BRIDGE_METRICS_LISTEN", "")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    // What each step shows: the listener, one AA, the raw record, three
    // Observations, and an offline Patient.
    assert!(stdout.contains("hl7bridge listening on"), "{stdout}");
    assert!(stdout.contains("\"topic\":\"hl7v2.oru\""), "{stdout}");
    assert!(
        stdout.matches("\"resourceType\":\"Observation\"").count() >= 3,
        "{stdout}"
    );
    assert!(stdout.contains("\"resourceType\":\"Patient\""), "{stdout}");
    assert!(work.join("hl7bridge-data").join("hl7bridge.db").exists());
}
