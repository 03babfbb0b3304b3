//! A thread at the lowest CPU priority (`SCHED_IDLE` on Linux), on which the
//! embedded stage reads and maps its batches while it yields to busy
//! ingest.
//!
//! Yielding alone (a pause after each batch) leaves ingest most of the CPU
//! time, but not the moments it needs: an ingest task that wakes while a
//! stage batch is being mapped on the same core waits for the scheduler to
//! end the stage's time slice, a millisecond or more. At one connection
//! (C=1) that was most of the stage's cost to the ACK rate (BENCHMARKS.md,
//! "Issue 16: the stage at the store writer"). A `SCHED_IDLE` thread is
//! preempted as soon as any other thread becomes runnable. The stage uses
//! this thread only while ingest is busy and its lag is under
//! `transform.max_lag`; beyond it, the stage maps at normal priority again,
//! so the lag stays bounded however busy the host is.

use std::sync::mpsc;

use tokio::sync::oneshot;

use crate::stage::StageError;

type Job = Box<dyn FnOnce() + Send>;

pub struct LowPriorityThread {
    jobs: mpsc::Sender<Job>,
}

impl LowPriorityThread {
    /// Starts the thread; it ends when this value is dropped.
    pub fn spawn(name: &str) -> Result<Self, StageError> {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                lower_this_threads_priority();
                while let Ok(job) = rx.recv() {
                    job();
                }
            })
            .map_err(|e| StageError::Setup(format!("cannot start the thread {name}: {e}")))?;
        Ok(Self { jobs })
    }

    /// Runs `f` on the thread and waits for its result.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, StageError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| StageError::Setup("the stage's low-priority thread has stopped".into()))?;
        rx.await.map_err(|_| {
            StageError::Setup("the stage's low-priority thread stopped during a batch".into())
        })
    }
}

/// Linux only; elsewhere the thread keeps normal priority and the stage
/// relies on its pauses alone. A failure is logged and changes nothing else.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is the calling thread; `param` outlives the call.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
        if rc != 0 {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "cannot give the stage's mapping thread idle CPU priority; it runs at normal priority"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_the_thread_and_hand_back_their_result() {
        let t = LowPriorityThread::spawn("test-low-priority").unwrap();
        let name = t
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("test-low-priority"));
        assert_eq!(t.run(|| 6 * 7).await.unwrap(), 42);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_thread_runs_at_idle_priority() {
        let t = LowPriorityThread::spawn("test-low-priority").unwrap();
        // SAFETY: pid 0 is the calling thread.
        let policy = t
            .run(|| unsafe { libc::sched_getscheduler(0) })
            .await
            .unwrap();
        assert_eq!(policy, libc::SCHED_IDLE);
    }
}
