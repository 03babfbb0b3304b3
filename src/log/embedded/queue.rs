//! The writer's two queues: ingest appends (a sender waits for their ACK)
//! and derived work (the stage's batches, retention steps), which can
//! always be redone from the durable raw log. Whenever the writer is free
//! and an ingest append waits, the ingest append goes first, so it never
//! queues behind derived work submitted before it; only a derived
//! transaction already running can delay it (the stage keeps those small
//! while ingest is busy: `stage::embedded`).

use tokio::sync::mpsc::{self, error::TryRecvError};

use super::Append;

/// What the writer takes next.
pub(super) enum Next {
    Ingest(Append),
    Derived(Append),
}

pub(super) struct Queues {
    ingest: mpsc::Receiver<Append>,
    derived: mpsc::Receiver<Append>,
}

impl Queues {
    pub(super) fn new(ingest: mpsc::Receiver<Append>, derived: mpsc::Receiver<Append>) -> Self {
        Self { ingest, derived }
    }

    /// The next append, an ingest append if one waits; blocks the writer
    /// thread until there is one. `None` once both queues are closed and
    /// empty: everything queued before [`EmbeddedLog::close`](super::EmbeddedLog::close)
    /// is still committed.
    pub(super) fn next(&mut self) -> Option<Next> {
        if let Some(a) = self.more_ingest() {
            return Some(Next::Ingest(a));
        }
        match self.derived.try_recv() {
            Ok(a) => return Some(Next::Derived(a)),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => {}
        }
        futures::executor::block_on(async {
            tokio::select! {
                biased;
                Some(a) = self.ingest.recv() => Some(Next::Ingest(a)),
                Some(a) = self.derived.recv() => Some(Next::Derived(a)),
                else => None,
            }
        })
    }

    /// Another ingest append already waiting, to join the same group commit.
    pub(super) fn more_ingest(&mut self) -> Option<Append> {
        self.ingest.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;
    use tokio::sync::oneshot;

    fn append(topic: &str, derived: bool) -> Append {
        let work: Option<super::super::TxnWork> = derived.then(|| {
            let work: super::super::TxnWork = Box::new(|_| Ok(()));
            work
        });
        Append {
            records: vec![Record {
                topic: topic.into(),
                key: None,
                partition: None,
                headers: Vec::new(),
                timestamp_ms: 0,
                value: bytes::Bytes::new(),
            }],
            work,
            reply: oneshot::channel().0,
        }
    }

    fn topic(n: &Next) -> (&'static str, &str) {
        match n {
            Next::Ingest(a) => ("ingest", &a.records[0].topic),
            Next::Derived(a) => ("derived", &a.records[0].topic),
        }
    }

    #[test]
    fn waiting_ingest_appends_go_before_derived_work_queued_earlier() {
        let (itx, irx) = mpsc::channel(8);
        let (dtx, drx) = mpsc::channel(8);
        let mut q = Queues::new(irx, drx);
        dtx.try_send(append("stage-1", true)).ok().unwrap();
        dtx.try_send(append("stage-2", true)).ok().unwrap();
        itx.try_send(append("raw-1", false)).ok().unwrap();
        itx.try_send(append("raw-2", false)).ok().unwrap();
        let first = q.next().unwrap();
        assert_eq!(topic(&first), ("ingest", "raw-1"));
        // The rest of the waiting ingest joins the same group commit.
        assert_eq!(
            q.more_ingest()
                .map(|a| a.records[0].topic.clone())
                .as_deref(),
            Some("raw-2")
        );
        assert!(q.more_ingest().is_none());
        assert_eq!(topic(&q.next().unwrap()), ("derived", "stage-1"));
        // An ingest append that arrives meanwhile again goes first.
        itx.try_send(append("raw-3", false)).ok().unwrap();
        assert_eq!(topic(&q.next().unwrap()), ("ingest", "raw-3"));
        assert_eq!(topic(&q.next().unwrap()), ("derived", "stage-2"));
    }

    #[test]
    fn everything_queued_before_close_is_still_taken_then_the_writer_stops() {
        let (itx, irx) = mpsc::channel(8);
        let (dtx, drx) = mpsc::channel(8);
        let mut q = Queues::new(irx, drx);
        dtx.try_send(append("stage-1", true)).ok().unwrap();
        itx.try_send(append("raw-1", false)).ok().unwrap();
        drop((itx, dtx));
        assert_eq!(topic(&q.next().unwrap()), ("ingest", "raw-1"));
        assert_eq!(topic(&q.next().unwrap()), ("derived", "stage-1"));
        assert!(q.next().is_none());
    }

    #[test]
    fn an_idle_writer_wakes_for_either_queue() {
        let (itx, irx) = mpsc::channel(8);
        let (dtx, drx) = mpsc::channel::<Append>(8);
        let mut q = Queues::new(irx, drx);
        let sender = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            dtx.blocking_send(append("stage-1", true)).ok().unwrap();
            dtx
        });
        assert_eq!(topic(&q.next().unwrap()), ("derived", "stage-1"));
        let dtx = sender.join().unwrap();
        drop(dtx);
        let sender = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            itx.blocking_send(append("raw-1", false)).ok().unwrap();
        });
        assert_eq!(topic(&q.next().unwrap()), ("ingest", "raw-1"));
        sender.join().unwrap();
        assert!(q.next().is_none());
    }
}
