//! One handler per method, each a thin adapter from params to the worker.

use super::params::decode;
use crate::error::WorkerError;
use crate::fleet::Fleet;
use crate::protocol::*;
use jsonrpsee::RpcModule;
use jsonrpsee::types::ErrorObjectOwned;
use std::sync::Arc;

/// Most diff text one `worker_get_changes` page carries.
const MAX_DIFF_PAGE: u64 = 1 << 20;

type Reply<T> = Result<T, ErrorObjectOwned>;

fn reply<T>(result: Result<T, WorkerError>) -> Reply<T> {
    result.map_err(ErrorObjectOwned::from)
}

pub fn build_module(worker: Arc<Fleet>) -> RpcModule<Fleet> {
    let mut module = RpcModule::from_arc(worker);
    let registered = [
        module
            .register_method(
                "initialize",
                |params, worker, _| -> Reply<InitializeResult> {
                    reply(decode::<InitializeParams>(&params).map(|p| worker.initialize(p)))
                },
            )
            .map(|_| ()),
        module
            .register_async_method("worker_dispatch_job", |params, worker, _| async move {
                let spec: JobSpec = match decode(&params) {
                    Ok(spec) => spec,
                    Err(error) => {
                        worker.local.pool.metrics().rejected();
                        return reply(Err(error));
                    }
                };
                reply(worker.dispatch(spec).await)
            })
            .map(|_| ()),
        module
            .register_method("worker_get_status", |params, worker, _| -> Reply<Job> {
                let job: JobRef = reply(decode(&params))?;
                reply(worker.status(&job.job_id))
            })
            .map(|_| ()),
        module
            .register_async_method("worker_collect_output", |params, worker, _| async move {
                let request: CollectParams = reply(decode(&params))?;
                reply(worker.collect(request).await)
            })
            .map(|_| ()),
        module
            .register_async_method("worker_cancel_job", |params, worker, _| async move {
                let request: CancelParams = reply(decode(&params))?;
                reply(worker.cancel(&request.job_id, request.reason).await)
            })
            .map(|_| ()),
        module
            .register_method(
                "worker_list_sessions",
                |params, worker, _| -> Reply<ListResult> {
                    let request: ListParams = reply(decode(&params))?;
                    Ok(worker.list(request))
                },
            )
            .map(|_| ()),
        module
            .register_async_method("worker_get_metrics", |params, worker, _| async move {
                let request: MetricsParams = reply(decode(&params))?;
                let mut result = worker.metrics().await;
                let format = request.format.unwrap_or_default();
                if format == MetricsFormat::Prometheus {
                    result.text = Some(crate::prometheus::render(
                        &result,
                        worker.local.pool.metrics(),
                    ));
                }
                result.format = Some(format);
                Reply::Ok(result)
            })
            .map(|_| ()),
        module
            .register_async_method("worker_apply_changes", |params, worker, _| async move {
                let request: ApplyParams = reply(decode(&params))?;
                let done = tokio::task::spawn_blocking(move || {
                    worker
                        .local
                        .pool
                        .changes()
                        .apply(&request.job_id, request.paths)
                })
                .await
                .unwrap_or_else(|join| Err(WorkerError::internal(join)));
                reply(done)
            })
            .map(|_| ()),
        module
            .register_async_method("worker_get_changes", |params, worker, _| async move {
                let request: GetChangesParams = reply(decode(&params))?;
                let max_bytes = request
                    .max_bytes
                    .unwrap_or(MAX_DIFF_PAGE)
                    .min(MAX_DIFF_PAGE);
                if max_bytes < 4 {
                    // Less could not hold one character of the diff.
                    return reply(Err::<ChangesPage, _>(WorkerError::invalid_params(
                        "max_bytes",
                        "must be at least 4",
                    )));
                }
                let done = tokio::task::spawn_blocking(move || {
                    worker.local.pool.changes().diff_page(
                        &request.job_id,
                        request.offset.unwrap_or(0),
                        max_bytes as usize,
                    )
                })
                .await
                .unwrap_or_else(|join| Err(WorkerError::internal(join)));
                reply(done)
            })
            .map(|_| ()),
        module
            .register_async_method("worker_discard_changes", |params, worker, _| async move {
                let request: JobRef = reply(decode(&params))?;
                let done = tokio::task::spawn_blocking(move || {
                    worker.local.pool.changes().discard(&request.job_id)
                })
                .await
                .unwrap_or_else(|join| Err(WorkerError::internal(join)));
                reply(done)
            })
            .map(|_| ()),
        module
            .register_method("shutdown", |params, worker, _| -> Reply<Empty> {
                let _: ShutdownParams = reply(decode(&params))?;
                worker.local.shutdown.cancel();
                Ok(Empty {})
            })
            .map(|_| ()),
    ];
    let subscription = module
        .register_subscription(
            SUBSCRIBE_METHOD,
            EVENT_METHOD,
            UNSUBSCRIBE_METHOD,
            |params, pending, worker, _| async move {
                super::subscribe::run(params, pending, worker).await
            },
        )
        .map(|_| ());
    for result in registered.into_iter().chain([subscription]) {
        result.expect("method names are unique");
    }
    module
}
