//! `pi-setup run-job NAME`: runs a job now, to completion, whatever its last run did — what a
//! scheduled job's timer calls. The same step `apply` takes for a job, on its own.

use anyhow::Result;

use crate::commands::{Context, LOCK_WAIT};
use crate::error::BadInput;
use crate::input::Inputs;
use crate::plan::{Action, Plan};
use crate::progress::Progress;

pub(crate) async fn run_job(ctx: &Context, name: &str) -> Result<()> {
    let _lock = ctx.lock("run-job", false, LOCK_WAIT)?;
    let model = Inputs::read(None, &ctx.paths)?.model()?;
    if model.service(name).is_none_or(|s| s.job.is_none()) {
        let jobs: Vec<&str> = model
            .services
            .iter()
            .filter(|s| s.job.is_some())
            .map(|s| s.name.as_str())
            .collect();
        return Err(BadInput(format!(
            "there is no job named '{name}' (jobs: {})",
            if jobs.is_empty() {
                "none".to_string()
            } else {
                jobs.join(", ")
            }
        ))
        .into());
    }
    let engine = crate::engine::connect().await?;
    let (desired, _) = crate::reconcile::desired_state(ctx, &model, &engine).await?;
    let spec = desired
        .containers
        .iter()
        .find(|c| c.name == ctx.names.object(name))
        .cloned()
        .expect("every job has a container spec");
    let plan = Plan {
        actions: vec![Action::RunJob {
            spec: Box::new(spec),
            why: "run now".into(),
        }],
    };
    let progress = Progress::new();
    crate::execute::apply(
        &plan,
        &desired,
        &engine,
        &ctx.paths,
        &ctx.names,
        &progress,
        &crate::drain::Drains::new(&model, &ctx.paths, &ctx.names, &progress),
    )
    .await?;
    println!("Job {name} ran to completion.");
    Ok(())
}
