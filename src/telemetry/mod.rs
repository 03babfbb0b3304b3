//! Log setup. Logs go to stderr so stdout stays clean for `tail` output.
//!
//! Nothing logged anywhere in the bridge carries message content: fields are
//! control IDs, message types, senders, sizes and log positions.

mod repeats;

use std::io::IsTerminal;

use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

pub use repeats::WINDOW as REPEAT_WINDOW;

pub fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal: in a file or a log
    // collector they are noise (and break grep).
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let fmt = if format == "json" {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    // `try_init` also routes the `log` crate (librdkafka's lines) into tracing.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(repeats::HoldRepeats::start())
        .with(fmt)
        .try_init();
}
