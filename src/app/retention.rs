//! Retention on the embedded store, run by `serve` (which holds the
//! listener's lock, so one sweeper per data directory): a sweep every
//! `retention.check_every`, then the size gauges. Kafka's topics have the
//! broker's own retention.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::internal_events::{RetentionSwept, StoreSize};
use crate::log::embedded::retention::{self, Class, Classifier, Limits, Policy, Sweep};
use crate::log::embedded::{EmbeddedLog, EmbeddedReader, DB_FILE};

/// The policy `cfg` asks for.
pub fn policy(cfg: &Config) -> Policy {
    let r = &cfg.retention;
    Policy {
        classes: Classifier::new(&cfg.topic_prefix, &cfg.transform.output_prefix),
        raw: Limits {
            max_age: r.raw.0,
            max_bytes: r.raw_bytes.0,
        },
        fhir: Limits {
            max_age: r.fhir.0,
            max_bytes: r.fhir_bytes.0,
        },
        dlq_max_age: r.dlq.0,
    }
}

/// Sweeps and reports sizes until `shutdown`.
pub async fn run(log: Arc<EmbeddedLog>, cfg: Config, shutdown: CancellationToken) {
    let policy = Arc::new(policy(&cfg));
    let mut every = tokio::time::interval(cfg.retention.check_every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        if policy.is_active() {
            sweep(&log, &policy, &shutdown).await;
        }
        report_size(&cfg.data_dir, &policy.classes);
    }
}

/// One sweep, a step at a time, each step its own transaction queued with
/// the appends.
async fn sweep(log: &EmbeddedLog, policy: &Arc<Policy>, shutdown: &CancellationToken) {
    let started = Instant::now();
    let mut at = Sweep::default();
    let mut deleted: HashMap<Class, (u64, u64)> = HashMap::new();
    while !shutdown.is_cancelled() {
        match log
            .retention_step(policy.clone(), at, crate::stage::now_ms())
            .await
        {
            Ok((step, next)) => {
                for (class, n) in step.deleted {
                    let slot = deleted.entry(class).or_default();
                    slot.0 += n;
                    slot.1 += step.deleted_bytes.get(&class).copied().unwrap_or(0);
                }
                if next.done {
                    break;
                }
                at = next;
            }
            Err(e) => {
                tracing::warn!(error = %e, "retention step failed; the next sweep tries again");
                break;
            }
        }
        // Appends queued meanwhile go first.
        tokio::task::yield_now().await;
    }
    let deleted: Vec<(&'static str, u64, u64)> = Class::ALL
        .iter()
        .map(|c| {
            let (n, b) = deleted.get(c).copied().unwrap_or_default();
            (c.label(), n, b)
        })
        .collect();
    RetentionSwept {
        deleted: &deleted,
        took: started.elapsed(),
    }
    .emit();
}

fn report_size(data_dir: &Path, classes: &Classifier) {
    let class_bytes = match EmbeddedReader::open(data_dir)
        .map_err(|e| e.to_string())
        .and_then(|r| retention::class_bytes(r.connection(), classes).map_err(|e| e.to_string()))
    {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the store's size");
            return;
        }
    };
    let class_bytes: Vec<(&'static str, u64)> = Class::ALL
        .iter()
        .map(|c| (c.label(), class_bytes.get(c).copied().unwrap_or(0)))
        .collect();
    let file_bytes = [DB_FILE.to_owned(), format!("{DB_FILE}-wal")]
        .iter()
        .filter_map(|f| std::fs::metadata(data_dir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    StoreSize {
        class_bytes: &class_bytes,
        file_bytes,
        free_bytes: free_bytes(data_dir),
    }
    .emit();
}

/// Free bytes for an unprivileged writer on the filesystem of `dir`.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid NUL-terminated string and `stat` is written
    // by statvfs before it is read, only when it returns 0.
    let rc = unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `stat`.
    let stat = unsafe { stat.assume_init() };
    // The field widths differ between platforms (u32 on some 32-bit ones).
    #[allow(clippy::unnecessary_cast)]
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}
