//! The router over the real local executor (this process's pool), without a process or a
//! remote link: the remote member below is never started, so it stays unreachable with no room.

use super::*;
use crate::fleet::executor::RemoteExecutor;
use crate::fleet::remote::Remote;
use serde_json::json;

struct Setup {
    router: Arc<Router>,
    worker: Arc<crate::worker::Worker>,
    _base: tempfile::TempDir,
}

/// A router over the local pool (one slot) and, with `remote`, an ssh member that never connects.
fn setup(remote: bool) -> Setup {
    let base = tempfile::tempdir().unwrap();
    let mut config = crate::config::Config::default();
    config.session.base_dir = Some(base.path().to_owned());
    let worker = Arc::new(crate::worker::Worker::start(config).unwrap());
    let local = LocalExecutor::new(worker.clone(), 1);
    let mut members = vec![Member::new("here".into(), Vec::new(), local.clone())];
    if remote {
        let entry = serde_json::from_value(json!({"name": "there", "host": "127.0.0.1"})).unwrap();
        members.push(Member::new(
            "there".into(),
            Vec::new(),
            Arc::new(RemoteExecutor {
                remote: Remote::new(entry),
            }),
        ));
    }
    Setup {
        router: Router::new(local, members),
        worker,
        _base: base,
    }
}

fn spec(value: serde_json::Value) -> JobSpec {
    serde_json::from_value(value).unwrap()
}

impl Setup {
    async fn stop(self) {
        self.router.shutdown();
        assert!(self.worker.stop(Duration::from_secs(5)).await);
    }
}

#[test]
fn the_members_kinds_decide_routing_and_the_local_member() {
    let alone = setup(false);
    assert!(!alone.router.is_routing());
    assert_eq!(alone.router.local_member, Some(0));
    let fleet = setup(true);
    assert!(fleet.router.is_routing());
    assert_eq!(fleet.router.local_member, Some(0));
    assert!(fleet.router.reaches_remote(&[0, 1]));
    assert!(!fleet.router.reaches_remote(&[0]));
}

#[test]
fn pick_takes_the_local_member_while_it_has_room_and_never_an_unreachable_remote() {
    let setup = setup(true);
    let router = &setup.router;
    let mut book = router.book();
    assert_eq!(router.pick(&book, &[0, 1]), Some(0));
    // A placement on its way fills the one local slot; the remote has none while it is down.
    book.in_flight[0] = 1;
    assert_eq!(router.pick(&book, &[0, 1]), None);
    assert_eq!(router.pick(&book, &[1]), None);
    book.in_flight[0] = 0;
}

#[test]
fn a_workspace_job_may_run_only_on_the_local_member() {
    let setup = setup(true);
    let candidates = setup
        .router
        .candidates(&spec(
            json!({"argv": ["true"], "workspace": {"mode": "read"}}),
        ))
        .unwrap();
    assert_eq!(candidates, vec![0]);
    let refused = setup
        .router
        .candidates(&spec(
            json!({"argv": ["true"], "worker": "there", "workspace": {"mode": "read"}}),
        ))
        .unwrap_err();
    assert_eq!(refused.data()["field"], "workspace");
}

#[tokio::test]
async fn a_lone_workers_job_goes_straight_to_the_pool_and_carries_no_worker_name() {
    let setup = setup(false);
    let job = setup
        .router
        .dispatch(spec(
            json!({"argv": ["true"], "isolation": "none", "wait_ms": 10000}),
        ))
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Finished);
    assert_eq!(job.worker, None);
    assert!(setup.router.local.knows(&job.job_id));
    assert!(setup.router.book().jobs.is_empty());
    setup.stop().await;
}

#[tokio::test]
async fn a_job_placed_on_the_local_executor_leaves_the_routers_book_and_is_named() {
    let setup = setup(true);
    let router = &setup.router;
    // It may go to either member, so the router places it, through the local executor.
    let job = router
        .dispatch(spec(
            json!({"argv": ["true"], "isolation": "none", "wait_ms": 10000}),
        ))
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Finished);
    assert_eq!(job.worker.as_deref(), Some("here"));
    {
        let book = router.book();
        assert!(!book.jobs.contains_key(&job.job_id));
        assert_eq!(book.in_flight, vec![0, 0]);
    }
    assert_eq!(router.members[0].dispatched.load(Ordering::Relaxed), 1);
    let status = router.status(&job.job_id).unwrap();
    assert_eq!(status.worker.as_deref(), Some("here"));
    setup.stop().await;
}

#[tokio::test]
async fn with_the_local_slot_busy_a_job_queues_in_the_router_and_a_cancel_takes_it_out() {
    let setup = setup(true);
    let router = &setup.router;
    let busy = router
        .dispatch(spec(json!({"argv": ["sleep", "30"], "isolation": "none"})))
        .await
        .unwrap();
    let queued = router
        .dispatch(spec(json!({"argv": ["true"], "isolation": "none"})))
        .await
        .unwrap();
    assert_eq!(queued.status, JobStatus::Queued);
    assert_eq!(router.book().queue.len(), 1);
    let cancelled = router.cancel(&queued.job_id, None).await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert!(router.book().queue.is_empty());
    router.cancel(&busy.job_id, None).await.unwrap();
    setup.stop().await;
}
