//! librdkafka repeats itself: with a broker down it logged 202 ERROR lines
//! in 20 s, the same few lines over and over. This layer lets the first of
//! each line through, holds back its repeats for a minute, then writes one
//! summary line with the count. Only librdkafka's lines (targets
//! `librdkafka` and `rdkafka::*`, bridged from the `log` crate) are held
//! back; the bridge's own lines are never touched.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// How long repeats of one line are held back before their summary.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Lines tracked at once. librdkafka's lines are few (digits are folded),
/// but their text comes from brokers and topics: past this, a new line just
/// goes out, untracked, so the map cannot grow without bound.
const MAX_LINES: usize = 1_000;

/// The target summaries are written under, so they are not held back themselves.
const SUMMARY_TARGET: &str = "hl7bridge::librdkafka";

/// Counts repeats of each line within its window.
#[derive(Debug, Default)]
pub struct Repeats {
    /// Per line (digits folded, so "after 12ms" and "after 13ms" are one
    /// line): when its window began, its level and text as first seen, and
    /// how many repeats were held back since.
    lines: HashMap<String, Seen>,
}

#[derive(Debug)]
struct Seen {
    since: Instant,
    level: Level,
    first: String,
    held: u64,
}

/// A line's key: its text with every run of digits folded to `#`, since
/// librdkafka puts times, counts and ports in otherwise identical lines.
fn fold_digits(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_digits = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

impl Repeats {
    /// Whether a line goes out now: the first in its window does, repeats
    /// are counted instead.
    pub fn admit(&mut self, level: Level, text: &str, now: Instant) -> bool {
        let key = fold_digits(text);
        if let Some(seen) = self.lines.get_mut(&key) {
            // Held until `due` has written its summary and forgotten it, even
            // a little past its window, so no count is lost.
            seen.held += 1;
            return false;
        }
        if self.lines.len() >= MAX_LINES {
            return true;
        }
        self.lines.insert(
            key,
            Seen {
                since: now,
                level,
                first: text.to_owned(),
                held: 0,
            },
        );
        true
    }

    /// Lines whose window has ended: each with its level, text and how many
    /// repeats were held back (lines with none are just forgotten).
    pub fn due(&mut self, now: Instant) -> Vec<(Level, String, u64)> {
        let mut out = Vec::new();
        self.lines.retain(|_, seen| {
            if now.duration_since(seen.since) < WINDOW {
                return true;
            }
            if seen.held > 0 {
                out.push((seen.level, std::mem::take(&mut seen.first), seen.held));
            }
            false
        });
        out
    }
}

/// The layer: holds back repeated librdkafka lines; a thread writes the
/// summaries (an event cannot be written from inside another's dispatch).
pub struct HoldRepeats {
    repeats: Arc<Mutex<Repeats>>,
}

impl HoldRepeats {
    /// The layer, and the thread that writes summaries every few seconds.
    pub fn start() -> Self {
        let repeats = Arc::new(Mutex::new(Repeats::default()));
        let shared = repeats.clone();
        let _ = std::thread::Builder::new()
            .name("hl7bridge-log-repeats".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(5));
                let due = match shared.lock() {
                    Ok(mut r) => r.due(Instant::now()),
                    Err(_) => return,
                };
                for (level, text, held) in due {
                    let secs = WINDOW.as_secs();
                    if level <= Level::WARN {
                        tracing::warn!(target: SUMMARY_TARGET, repeats = held, "{text} (and {held} more times in the last {secs} s)");
                    } else {
                        tracing::info!(target: SUMMARY_TARGET, repeats = held, "{text} (and {held} more times in the last {secs} s)");
                    }
                }
            });
        Self { repeats }
    }
}

fn from_librdkafka(target: &str) -> bool {
    target == "librdkafka" || target.starts_with("rdkafka")
}

/// The text and `log` target of an event bridged from the `log` crate
/// (tracing-log puts the record's target in a `log.target` field).
#[derive(Default)]
struct Bridged {
    message: String,
    target: String,
}

impl Visit for Bridged {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            "log.target" => self.target.push_str(value),
            _ => {}
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        }
    }
}

impl<S: Subscriber> Layer<S> for HoldRepeats {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let meta = event.metadata();
        // Only `log` records are librdkafka's; the bridge logs through tracing.
        if meta.target() != "log" {
            return true;
        }
        let mut bridged = Bridged::default();
        event.record(&mut bridged);
        if !from_librdkafka(&bridged.target) {
            return true;
        }
        match self.repeats.lock() {
            Ok(mut r) => r.admit(*meta.level(), &bridged.message, Instant::now()),
            Err(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOWN: &str = "[thrd:127.0.0.1:9092/bootstrap]: 127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection refused (after 0ms in state CONNECT)";

    #[test]
    fn the_first_line_goes_out_and_repeats_in_its_window_are_counted() {
        let mut r = Repeats::default();
        let t0 = Instant::now();
        assert!(r.admit(Level::ERROR, DOWN, t0));
        for i in 1..=201 {
            let again = DOWN.replace("after 0ms", &format!("after {i}ms"));
            assert!(!r.admit(Level::ERROR, &again, t0 + Duration::from_millis(i * 100)));
        }
        // Another line is its own.
        assert!(r.admit(Level::WARN, "Metadata request failed", t0));
        // Past the bound, new lines go out untracked: the map stays bounded.
        let letters = |mut i: usize| {
            let mut s = String::new();
            loop {
                s.push((b'a' + (i % 26) as u8) as char);
                i /= 26;
                if i == 0 {
                    return s;
                }
            }
        };
        for i in 0..MAX_LINES * 2 {
            assert!(r.admit(Level::WARN, &format!("topic {}", letters(i)), t0));
        }
        assert_eq!(r.lines.len(), MAX_LINES);
        assert!(
            r.due(t0 + Duration::from_secs(30)).is_empty(),
            "windows still open"
        );
        let due = r.due(t0 + WINDOW);
        assert_eq!(due, vec![(Level::ERROR, DOWN.to_owned(), 201)]);
        // The window is over: the next one goes out at once again.
        assert!(r.admit(Level::ERROR, DOWN, t0 + WINDOW + Duration::from_secs(1)));
    }
}
