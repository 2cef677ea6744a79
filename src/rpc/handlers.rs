//! One handler per method of the table, each a thin adapter from its params to the fleet.

use super::params::decode;
use crate::error::WorkerError;
use crate::fleet::Fleet;
use crate::protocol::table::{self, Method};
use crate::protocol::*;
use jsonrpsee::RpcModule;
use jsonrpsee::core::RegisterMethodError;
use jsonrpsee::types::ErrorObjectOwned;
use std::future::Future;
use std::sync::Arc;

/// Most diff text one `worker_get_changes` page carries.
const MAX_DIFF_PAGE: u64 = 1 << 20;

type Reply<T> = Result<T, ErrorObjectOwned>;
type Registered = Result<(), RegisterMethodError>;

/// A method answered on the spot, without a task of its own.
fn sync<M: Method>(
    module: &mut RpcModule<Fleet>,
    handler: fn(&Fleet, M::Params) -> Result<M::Result, WorkerError>,
) -> Registered {
    module
        .register_method(M::NAME, move |params, fleet, _| -> Reply<M::Result> {
            let params = decode::<M::Params>(&params)?;
            Ok(handler(fleet, params)?)
        })
        .map(|_| ())
}

/// A method that waits for the pool, a remote worker or a blocking task.
fn asynchronous<M: Method, Fut>(
    module: &mut RpcModule<Fleet>,
    handler: fn(Arc<Fleet>, M::Params) -> Fut,
) -> Registered
where
    Fut: Future<Output = Result<M::Result, WorkerError>> + Send + 'static,
{
    module
        .register_async_method(M::NAME, move |params, fleet, _| async move {
            let params = decode::<M::Params>(&params)?;
            Reply::Ok(handler(fleet, params).await?)
        })
        .map(|_| ())
}

pub fn build_module(worker: Arc<Fleet>) -> RpcModule<Fleet> {
    let mut module = RpcModule::from_arc(worker);
    let registered = [
        sync::<table::Initialize>(&mut module, |fleet, params| Ok(fleet.initialize(params))),
        // Not `asynchronous`: a spec that does not decode still counts as a rejected job.
        module
            .register_async_method(table::DispatchJob::NAME, |params, worker, _| async move {
                let spec: JobSpec = match decode(&params) {
                    Ok(spec) => spec,
                    Err(error) => {
                        worker.local.pool.metrics().rejected();
                        return Reply::<Job>::Err(error.into());
                    }
                };
                Ok(worker.dispatch(spec).await?)
            })
            .map(|_| ()),
        sync::<table::GetStatus>(&mut module, |fleet, job| fleet.status(&job.job_id)),
        asynchronous::<table::CollectOutput, _>(&mut module, |fleet, request| async move {
            fleet.collect(request).await
        }),
        asynchronous::<table::CancelJob, _>(&mut module, |fleet, request| async move {
            fleet.cancel(&request.job_id, request.reason).await
        }),
        sync::<table::ListSessions>(&mut module, |fleet, request| Ok(fleet.list(request))),
        asynchronous::<table::GetMetrics, _>(&mut module, |fleet, request| async move {
            let mut result = fleet.metrics().await;
            let format = request.format.unwrap_or_default();
            if format == MetricsFormat::Prometheus {
                result.text = Some(crate::prometheus::render(
                    &result,
                    fleet.local.pool.metrics(),
                ));
            }
            result.format = Some(format);
            Ok(result)
        }),
        asynchronous::<table::ApplyChanges, _>(&mut module, |fleet, request| async move {
            tokio::task::spawn_blocking(move || {
                fleet
                    .local
                    .pool
                    .changes()
                    .apply(&request.job_id, request.paths)
            })
            .await
            .unwrap_or_else(|join| Err(WorkerError::internal(join)))
        }),
        asynchronous::<table::DiscardChanges, _>(&mut module, |fleet, request| async move {
            tokio::task::spawn_blocking(move || fleet.local.pool.changes().discard(&request.job_id))
                .await
                .unwrap_or_else(|join| Err(WorkerError::internal(join)))
        }),
        asynchronous::<table::GetChanges, _>(&mut module, |fleet, request| async move {
            let max_bytes = request
                .max_bytes
                .unwrap_or(MAX_DIFF_PAGE)
                .min(MAX_DIFF_PAGE);
            if max_bytes < 4 {
                // Less could not hold one character of the diff.
                return Err(WorkerError::invalid_params(
                    "max_bytes",
                    "must be at least 4",
                ));
            }
            tokio::task::spawn_blocking(move || {
                fleet.local.pool.changes().diff_page(
                    &request.job_id,
                    request.offset.unwrap_or(0),
                    max_bytes as usize,
                )
            })
            .await
            .unwrap_or_else(|join| Err(WorkerError::internal(join)))
        }),
        sync::<table::Shutdown>(&mut module, |fleet, _| {
            fleet.local.shutdown.cancel();
            Ok(Empty {})
        }),
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
