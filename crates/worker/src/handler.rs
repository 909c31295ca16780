//! The apalis handler: one call per claimed job. It names the claim and hands the job to
//! the pipeline, which writes its outcome; apalis persists nothing for us
//! (`persist_results(false)`), so what the handler returns only ends the task.

use apalis::prelude::{Attempt, BoxDynError, Data, TaskId, WorkerContext};
use clerk_sync_core::jobs::{Claim, EventJob};
use serde::Deserialize as _;
use tracing::Instrument as _;

use crate::pipeline::{Job, Pipeline};

pub async fn handle(
    args: serde_json::Value,
    task_id: TaskId,
    attempt: Attempt,
    worker: WorkerContext,
    pipeline: Data<Pipeline>,
) -> Result<(), BoxDynError> {
    let job = Job {
        claim: Claim {
            job_id: task_id.to_string(),
            attempt: attempt.current().max(1) as i32,
            worker: worker.name().to_owned(),
        },
        event_id: EventJob::deserialize(&args)
            .map(|j| j.event_id)
            .map_err(|e| e.to_string()),
    };
    let span = tracing::info_span!("job", job.id = %job.claim.job_id);
    pipeline.run(job).instrument(span).await;
    Ok(())
}
