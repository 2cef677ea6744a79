//! `worker_subscribe_job`: follows one job's event log and sends each event as a
//! `worker_job_event` notification, at the pace the client reads (the sink waits when the
//! outbox is full; the log never does: a subscriber left behind gets a `lagged` event).

use super::params::decode;
use crate::error::WorkerError;
use crate::fleet::Fleet;
use crate::protocol::SubscribeParams;
use jsonrpsee::types::{ErrorObjectOwned, Params};
use jsonrpsee::{PendingSubscriptionSink, SubscriptionMessage};
use std::sync::Arc;

pub async fn run(params: Params<'static>, pending: PendingSubscriptionSink, worker: Arc<Fleet>) {
    let request: SubscribeParams = match decode(&params) {
        Ok(request) => request,
        Err(error) => return pending.reject(ErrorObjectOwned::from(error)).await,
    };
    let log = match worker.events(&request.job_id) {
        Ok(log) => log,
        Err(error) => return pending.reject(ErrorObjectOwned::from(error)).await,
    };
    let mut follower = match log.follow(request.after_seq.unwrap_or(0)) {
        Ok(follower) => follower,
        Err(beyond) => {
            let error = WorkerError::invalid_params(
                "after_seq",
                format!(
                    "is past the job's last event (seq {}); pass at most that",
                    beyond.last_seq
                ),
            );
            return pending.reject(ErrorObjectOwned::from(error)).await;
        }
    };
    let Ok(sink) = pending.accept().await else {
        return;
    };
    tracing::debug!(job_id = %request.job_id, subscription = ?sink.subscription_id(), "subscribed");
    loop {
        let batch = tokio::select! {
            batch = follower.next_batch() => batch,
            _ = sink.closed() => return,
        };
        let Some(batch) = batch else { return };
        for item in batch {
            let Ok(raw) = item.to_json(&request.job_id) else {
                continue;
            };
            if sink.send(SubscriptionMessage::from(raw)).await.is_err() {
                return;
            }
        }
    }
}
