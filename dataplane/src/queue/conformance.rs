//! The behaviour every [`JobQueue`] must show, as test bodies each backend's tests run.
//!
//! Each body takes a queue with `max_attempts` 2 and no retry backoff; `long` has a long
//! visibility timeout and `short` one of zero, so its claims expire at once.

use std::time::Duration;

use super::{FailOutcome, JobQueue, JobStatus, Task, DOCUMENTS};

/// An ingest task for document `d`, queued under a trace (the backends must keep its context).
pub fn task(d: &str) -> Task {
    Task::IngestDocument {
        document_id: d.into(),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        replaces_probe: Some("f38BAQ==".into()),
    }
}

/// Runs every contract test; each uses document ids of its own, so they share the queues.
pub async fn run_all(long: &dyn JobQueue, short: &dyn JobQueue) {
    claimed_once_then_completed(long).await;
    failures_retry_then_dead_letter_with_the_error(long).await;
    permanent_failure_dead_letters_at_once(long).await;
    release_gives_jobs_back_without_counting_the_attempt(long).await;
    deferral_gives_the_job_back_later_without_counting_the_attempt(long).await;
    recover_gives_a_crashed_workers_jobs_back_at_once(long).await;
    renew_belongs_to_the_holder(long).await;
    queues_are_separate_and_names_checked(long).await;
    an_expired_claim_is_reclaimed(short).await;
}

async fn drain(q: &dyn JobQueue) {
    while let Some(j) = q.claim(DOCUMENTS, "drain").await.unwrap() {
        assert!(q.complete(&j, "drain").await.unwrap());
    }
}

fn depth(stats: &[super::QueueStats], queue: &str) -> (i64, i64, i64) {
    stats
        .iter()
        .find(|s| s.queue == queue)
        .map_or((0, 0, 0), |s| (s.waiting, s.in_flight, s.dead))
}

async fn claimed_once_then_completed(q: &dyn JobQueue) {
    let job = q.enqueue("t", DOCUMENTS, task("c1")).await.unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    assert!(q.has_live_job("c1").await.unwrap());
    let claimed = q.claim(DOCUMENTS, "w1").await.unwrap().unwrap();
    assert_eq!(claimed.id, job.id);
    assert_eq!(claimed.task, Some(task("c1")));
    assert_eq!(claimed.attempts, 1);
    assert_eq!(claimed.status, JobStatus::Running);
    assert!(
        q.claim(DOCUMENTS, "w2").await.unwrap().is_none(),
        "a claimed job is invisible to other workers"
    );
    assert_eq!(depth(&q.stats().await.unwrap(), DOCUMENTS), (0, 1, 0));
    assert!(q.complete(&claimed, "w1").await.unwrap());
    let done = q.get(&job.id).await.unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert!(!q.has_live_job("c1").await.unwrap());
    assert_eq!(depth(&q.stats().await.unwrap(), DOCUMENTS), (0, 0, 0));
}

async fn failures_retry_then_dead_letter_with_the_error(q: &dyn JobQueue) {
    let job = q.enqueue("t", DOCUMENTS, task("f1")).await.unwrap();
    let first = q.claim(DOCUMENTS, "w").await.unwrap().unwrap();
    assert_eq!(
        q.fail(&first, "w", "boom 1", true).await.unwrap(),
        Some(FailOutcome::Retrying)
    );
    assert_eq!(depth(&q.stats().await.unwrap(), DOCUMENTS), (1, 0, 0));
    let again = q.claim(DOCUMENTS, "w").await.unwrap().unwrap();
    assert_eq!((again.id.as_str(), again.attempts), (job.id.as_str(), 2));
    assert_eq!(again.last_error.as_deref(), Some("boom 1"));
    assert_eq!(
        q.fail(&again, "w", "boom 2", true).await.unwrap(),
        Some(FailOutcome::Dead)
    );
    let dead = q.get(&job.id).await.unwrap().unwrap();
    assert_eq!(dead.status, JobStatus::Dead);
    assert_eq!(dead.last_error.as_deref(), Some("boom 2"));
    assert!(q.claim(DOCUMENTS, "w").await.unwrap().is_none());
    assert!(!q.has_live_job("f1").await.unwrap());
    assert_eq!(depth(&q.stats().await.unwrap(), DOCUMENTS), (0, 0, 1));
}

async fn permanent_failure_dead_letters_at_once(q: &dyn JobQueue) {
    let job = q.enqueue("t", DOCUMENTS, task("p1")).await.unwrap();
    let claimed = q.claim(DOCUMENTS, "w").await.unwrap().unwrap();
    assert_eq!(
        q.fail(&claimed, "w", "unsupported", false).await.unwrap(),
        Some(FailOutcome::Dead)
    );
    assert_eq!(q.get(&job.id).await.unwrap().unwrap().attempts, 1);
}

async fn release_gives_jobs_back_without_counting_the_attempt(q: &dyn JobQueue) {
    drain(q).await;
    let a = q.enqueue("t", DOCUMENTS, task("r1")).await.unwrap();
    q.claim(DOCUMENTS, "stopping").await.unwrap().unwrap();
    assert_eq!(q.release("stopping").await.unwrap(), 1);
    assert_eq!(q.release("stopping").await.unwrap(), 0);
    let again = q.claim(DOCUMENTS, "w").await.unwrap().unwrap();
    assert_eq!((again.id.as_str(), again.attempts), (a.id.as_str(), 1));
    assert!(q.complete(&again, "w").await.unwrap());
}

async fn deferral_gives_the_job_back_later_without_counting_the_attempt(q: &dyn JobQueue) {
    drain(q).await;
    let dead = depth(&q.stats().await.unwrap(), DOCUMENTS).2;
    let job = q.enqueue("t", DOCUMENTS, task("f1")).await.unwrap();
    let delay = Duration::from_millis(300);
    // Deferred more often than the job has attempts: deferral never dead-letters it.
    for round in 0..3 {
        let claimed = q.claim(DOCUMENTS, "outdated").await.unwrap().unwrap();
        assert_eq!(
            (claimed.id.as_str(), claimed.attempts),
            (job.id.as_str(), 1)
        );
        assert!(
            !q.defer(&claimed, "another", "not mine", delay)
                .await
                .unwrap(),
            "only the holder defers"
        );
        assert!(q
            .defer(&claimed, "outdated", "needs model B", delay)
            .await
            .unwrap());
        assert!(!q.defer(&claimed, "outdated", "twice", delay).await.unwrap());
        let waiting = q.get(&job.id).await.unwrap().unwrap();
        assert_eq!(waiting.status, JobStatus::Queued, "round {round}");
        assert_eq!(waiting.attempts, 0);
        assert_eq!(waiting.last_error.as_deref(), Some("needs model B"));
        assert!(
            q.claim(DOCUMENTS, "outdated").await.unwrap().is_none(),
            "a deferred job waits out its delay"
        );
        assert_eq!(depth(&q.stats().await.unwrap(), DOCUMENTS).2, dead);
        tokio::time::sleep(delay + Duration::from_millis(100)).await;
    }
    let taken = q.claim(DOCUMENTS, "current").await.unwrap().unwrap();
    assert_eq!((taken.id.as_str(), taken.attempts), (job.id.as_str(), 1));
    assert!(q.complete(&taken, "current").await.unwrap());
}

async fn recover_gives_a_crashed_workers_jobs_back_at_once(q: &dyn JobQueue) {
    drain(q).await;
    let a = q.enqueue("t", DOCUMENTS, task("c1")).await.unwrap();
    let b = q.enqueue("t", DOCUMENTS, task("c2")).await.unwrap();
    q.claim(DOCUMENTS, "crashed").await.unwrap().unwrap();
    let other = q.claim(DOCUMENTS, "alive").await.unwrap().unwrap();
    // Only the named worker's claim goes back, long before its visibility timeout.
    assert_eq!(q.recover("crashed").await.unwrap(), 1);
    assert_eq!(q.recover("crashed").await.unwrap(), 0);
    let again = q.claim(DOCUMENTS, "restarted").await.unwrap().unwrap();
    assert_eq!((again.id.as_str(), again.attempts), (a.id.as_str(), 2));
    assert!(q.claim(DOCUMENTS, "restarted").await.unwrap().is_none());
    assert_eq!(other.id, b.id);
    assert!(q.complete(&other, "alive").await.unwrap());
    assert!(q.complete(&again, "restarted").await.unwrap());
}

async fn renew_belongs_to_the_holder(q: &dyn JobQueue) {
    let job = q.enqueue("t", DOCUMENTS, task("n1")).await.unwrap();
    let claimed = q.claim(DOCUMENTS, "holder").await.unwrap().unwrap();
    assert_eq!(claimed.id, job.id);
    assert!(q.renew(&job.id, "holder").await.unwrap());
    assert!(!q.renew(&job.id, "someone-else").await.unwrap());
    assert!(q.complete(&claimed, "holder").await.unwrap());
    assert!(!q.renew(&job.id, "holder").await.unwrap());
}

async fn queues_are_separate_and_names_checked(q: &dyn JobQueue) {
    drain(q).await;
    let e = q.enqueue("t", DOCUMENTS, task("e1")).await.unwrap();
    for unknown in ["embeddings", "llm", ""] {
        let err = q.enqueue("t", unknown, task("x")).await;
        assert!(err.is_err(), "the unknown queue {unknown:?} is refused");
        assert!(q.claim(unknown, "w").await.is_err());
    }
    let got = q.claim(DOCUMENTS, "w").await.unwrap().unwrap();
    assert_eq!(got.id, e.id);
    assert!(q.complete(&got, "w").await.unwrap());
}

async fn an_expired_claim_is_reclaimed(q: &dyn JobQueue) {
    let job = q.enqueue("t", DOCUMENTS, task("x1")).await.unwrap();
    let first = q.claim(DOCUMENTS, "dead-worker").await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let again = q.claim(DOCUMENTS, "w2").await.unwrap().unwrap();
    assert_eq!(again.id, job.id);
    assert_eq!(again.attempts, 2);
    // The first worker was only slow: its late outcome must not overwrite the newer attempt.
    assert!(!q.complete(&first, "dead-worker").await.unwrap());
    assert_eq!(
        q.fail(&first, "dead-worker", "late", false).await.unwrap(),
        None
    );
    let now = q.get(&job.id).await.unwrap().unwrap();
    assert_eq!((now.status, now.attempts), (JobStatus::Running, 2));
    assert_eq!(now.last_error, None);
    // Nor can a worker that never held it, or the holder naming another attempt.
    assert!(!q.complete(&again, "w3").await.unwrap());
    assert!(!q.complete(&first, "w2").await.unwrap());
    // Its last attempt's worker died too: the job comes out once more with its attempts over
    // the maximum, which tells the worker to dead-letter it instead of running it.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let third = q.claim(DOCUMENTS, "w3").await.unwrap().unwrap();
    assert_eq!(third.attempts, 3);
    assert!(third.attempts > third.max_attempts);
    assert_eq!(
        q.fail(&third, "w3", "abandoned", false).await.unwrap(),
        Some(FailOutcome::Dead)
    );
    assert!(
        !q.complete(&again, "w2").await.unwrap(),
        "a dead job stays dead"
    );
}
