//! The durable inbox behind `/webhook`: a delivery is acknowledged only once
//! it is committed (I5). Concurrent deliveries are committed together — one
//! transaction, one fsync — by a single committer task ("group commit"), so
//! durability does not cost one disk flush per request.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};

use crate::store::{Inserted, NewDelivery, Store, StoreError};

/// Most deliveries committed in one transaction.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<Inserted, Arc<StoreError>>>;

/// Hands deliveries to the committer and waits for their commit.
#[derive(Clone)]
pub struct DurableInbox {
    tx: mpsc::Sender<(NewDelivery, Reply)>,
    /// Notified after each commit that stored something new.
    pub committed: Arc<Notify>,
}

#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error("the database did not commit the delivery: {0}")]
    Store(Arc<StoreError>),
    #[error("rigger is shutting down")]
    Closed,
}

impl DurableInbox {
    /// Start the committer on the current runtime.
    pub fn start(store: Store) -> DurableInbox {
        let (tx, rx) = mpsc::channel::<(NewDelivery, Reply)>(MAX_BATCH * 8);
        let committed = Arc::new(Notify::new());
        tokio::spawn(commit_loop(store, rx, committed.clone()));
        DurableInbox { tx, committed }
    }

    /// Whether the committer still runs: when it is gone (it panicked), no
    /// delivery can be accepted and rigger is not ready.
    pub fn is_open(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Store a delivery; returns once it is committed (or known as a duplicate).
    pub async fn accept(&self, delivery: NewDelivery) -> Result<Inserted, InboxError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((delivery, reply))
            .await
            .map_err(|_| InboxError::Closed)?;
        match answer.await {
            Ok(Ok(i)) => Ok(i),
            Ok(Err(e)) => Err(InboxError::Store(e)),
            Err(_) => Err(InboxError::Closed),
        }
    }
}

async fn commit_loop(
    store: Store,
    mut rx: mpsc::Receiver<(NewDelivery, Reply)>,
    committed: Arc<Notify>,
) {
    let mut batch: Vec<(NewDelivery, Reply)> = Vec::with_capacity(MAX_BATCH);
    // Wait for one delivery, then take whatever else is already waiting: under
    // load the batch grows by itself, idle it is a batch of one (no delay).
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // Moved, not copied: a body may be 25 MB.
        let (deliveries, replies): (Vec<NewDelivery>, Vec<Reply>) = batch.drain(..).unzip();
        match store.insert_deliveries(&deliveries).await {
            Ok(results) => {
                if results.contains(&Inserted::New) {
                    committed.notify_one();
                }
                for (reply, r) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(r));
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store(name: &str) -> Store {
        let dir = std::env::temp_dir().join(format!("rigger-inbox-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Store::connect(&format!("sqlite://{}", dir.join("r.db").display()))
            .await
            .unwrap()
    }

    fn d(id: usize) -> NewDelivery {
        NewDelivery {
            delivery_id: format!("d-{id}"),
            event: "workflow_job".into(),
            action: Some("queued".into()),
            body: "{}".into(),
            received_at: id as i64,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_deliveries_are_all_committed_once() {
        let s = store("concurrent").await;
        let inbox = DurableInbox::start(s.clone());
        let mut handles = Vec::new();
        for i in 0..200 {
            let inbox = inbox.clone();
            // Every delivery twice: a redelivery is a duplicate, not a second row.
            handles.push(tokio::spawn(async move {
                inbox.accept(d(i % 100)).await.unwrap()
            }));
        }
        let mut new = 0;
        for h in handles {
            if h.await.unwrap() == Inserted::New {
                new += 1;
            }
        }
        assert_eq!(new, 100);
        assert_eq!(s.pending_deliveries().await.unwrap(), 100);
    }

    #[tokio::test]
    async fn a_failed_commit_is_reported_not_acknowledged() {
        let s = store("failed").await;
        let inbox = DurableInbox::start(s.clone());
        s.close().await;
        let err = inbox.accept(d(1)).await.unwrap_err();
        assert!(err.to_string().contains("did not commit"), "{err}");
    }
}
