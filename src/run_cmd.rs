//! `opencode-worker run`: one job for a human, through the same pool the protocol uses.

use crate::cli::RunArgs;
use crate::config::Config;
use crate::protocol::{FileEntry, Job, JobSpec, JobStatus, LimitsRequest, NetworkMode};
use crate::worker::Worker;
use base64::Engine;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

/// Exit status for a job that did not exit with a code of its own (GNU timeout's convention).
const EXIT_TIMEOUT: i32 = 124;
const EXIT_WORKER_ERROR: i32 = 125;

pub fn run(mut config: Config, args: RunArgs) -> i32 {
    // One job: a prepared sandbox would be made for it anyway, by a spawner started for it.
    config.isolation.warm_slots = 0;
    let spec = match spec_from_args(&args) {
        Ok(spec) => spec,
        Err(message) => {
            eprintln!("opencode-worker run: {message}");
            return 2;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("opencode-worker run: {error}");
            return EXIT_WORKER_ERROR;
        }
    };
    runtime.block_on(async move {
        let worker = match Worker::start_for_one_job(config) {
            Ok(worker) => worker,
            Err(error) => {
                eprintln!("opencode-worker run: {error}");
                return 2;
            }
        };
        let interrupted = worker.shutdown.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            interrupted.cancel();
        });
        let result = tokio::select! {
            result = async {
                let job = worker.dispatch(spec).await?;
                if args.follow
                    && let Ok(log) = worker.pool.events(&job.job_id)
                {
                    crate::follow::follow(log).await;
                }
                worker.pool.wait(&job.job_id).await
            } => Some(result),
            _ = worker.shutdown.cancelled() => None,
        };
        worker.stop(Duration::from_millis(1500)).await;
        match result {
            None => {
                eprintln!("opencode-worker run: interrupted; the job was stopped");
                130
            }
            Some(Err(error)) => {
                eprintln!("opencode-worker run: {error}");
                let data = error.data();
                if data.as_object().is_some_and(|o| !o.is_empty()) {
                    eprintln!("  {data}");
                }
                EXIT_WORKER_ERROR
            }
            Some(Ok(job)) => report(&job, args.json, args.follow),
        }
    })
}

fn spec_from_args(args: &RunArgs) -> Result<JobSpec, String> {
    let mut files = BTreeMap::new();
    for file in &args.files {
        let (name, path) = file
            .split_once('=')
            .ok_or_else(|| format!("--file `{file}` is not NAME=PATH"))?;
        let bytes = std::fs::read(path).map_err(|error| format!("--file {path}: {error}"))?;
        let entry = match String::from_utf8(bytes) {
            Ok(text) => FileEntry::Text(text),
            Err(bytes) => FileEntry::Detailed {
                content: base64::engine::general_purpose::STANDARD.encode(bytes.as_bytes()),
                encoding: crate::protocol::FileEncoding::Base64,
                executable: false,
            },
        };
        files.insert(name.to_owned(), entry);
    }
    let mut env = BTreeMap::new();
    for pair in &args.env {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("--env `{pair}` is not NAME=VALUE"))?;
        env.insert(name.to_owned(), value.to_owned());
    }
    if args.command.is_none() && args.argv.is_empty() {
        return Err("nothing to run: give `-- CMD ARGS...` or `-c 'shell command'`".into());
    }
    Ok(JobSpec {
        command: args.command.clone(),
        argv: (!args.argv.is_empty()).then(|| args.argv.clone()),
        files: (!files.is_empty()).then_some(files),
        env: (!env.is_empty()).then_some(env),
        limits: Some(LimitsRequest {
            cpu: args.cpu,
            memory: args.memory,
            timeout: args.timeout,
            output: args.output,
            pids: args.pids,
        }),
        network: match args.network.as_deref() {
            Some("open") => Some(NetworkMode::Open.into()),
            Some(_) => Some(NetworkMode::None.into()),
            None => None,
        },
        ..JobSpec::default()
    })
}

fn report(job: &Job, json: bool, followed: bool) -> i32 {
    if json {
        let mut stdout = std::io::stdout().lock();
        let _ = serde_json::to_writer_pretty(&mut stdout, job);
        let _ = writeln!(stdout);
    } else {
        if !followed {
            let _ = std::io::stdout().write_all(job.stdout.as_deref().unwrap_or("").as_bytes());
            let _ = std::io::stderr().write_all(job.stderr.as_deref().unwrap_or("").as_bytes());
        }
        let mut summary = format!(
            "opencode-worker: job {} {}",
            job.job_id,
            job.status.as_str()
        );
        if let Some(code) = job.exit_code {
            summary += &format!(" (exit {code})");
        }
        if let Some(signal) = job.signal {
            summary += &format!(" (signal {signal})");
        }
        if let Some(message) = &job.message {
            summary += &format!(": {message}");
        }
        if let Some(metrics) = &job.metrics {
            summary += &format!(" in {:.1} ms", metrics.total_ms);
        }
        eprintln!("{summary}");
        for artifact in job.artifacts.iter().flatten() {
            let hash = artifact
                .sha256
                .as_deref()
                .map_or("not hashed".to_owned(), |h| format!("sha256 {}", &h[..12]));
            eprintln!(
                "  artifact {} ({} bytes, {hash})",
                artifact.path, artifact.size
            );
        }
    }
    match (job.status, job.exit_code, job.signal) {
        (_, Some(code), _) if job.status != JobStatus::Timeout => code,
        (JobStatus::Timeout, _, _) => EXIT_TIMEOUT,
        (_, _, Some(signal)) => 128 + signal,
        _ => EXIT_WORKER_ERROR,
    }
}
