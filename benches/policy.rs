//! Policy evaluation time per command over the corpus, next to the cost of spawning
//! `/bin/true`, so the ratio to a job's spawn cost is visible. Run: `cargo bench --bench policy`.

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use opencode_worker::policy::Policy;

#[path = "../tests/policy/corpus.rs"]
#[allow(dead_code)]
mod corpus;

const ROUNDS: usize = 20;
const SPAWNS: usize = 300;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    let mean = samples.iter().sum::<Duration>() / samples.len().max(1) as u32;
    let p50 = percentile(&samples, 0.50);
    println!(
        "{name:<28} n={:<6} p50={:>9.1?} p99={:>9.1?} max={:>9.1?} mean={:>9.1?}",
        samples.len(),
        p50,
        percentile(&samples, 0.99),
        samples.last().copied().unwrap_or_default(),
        mean,
    );
    p50
}

fn main() {
    let (allowed, refused) = match corpus::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot load corpus: {e}");
            std::process::exit(2);
        }
    };
    let t0 = Instant::now();
    let policy = Policy::default_policy();
    println!("default_policy() build: {:?}", t0.elapsed());

    // Warm the thread-local parser and the regex caches.
    for c in allowed.iter().chain(&refused) {
        black_box(policy.check_command(&c.command));
    }
    let mut all = Vec::new();
    let mut by_kind = [Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        for (kind, cases) in [&allowed, &refused].into_iter().enumerate() {
            for c in cases {
                let t = Instant::now();
                black_box(policy.check_command(black_box(&c.command)));
                let d = t.elapsed();
                all.push(d);
                by_kind[kind].push(d);
            }
        }
    }
    let [ok, no] = by_kind;
    summary("policy: allowed corpus", ok);
    summary("policy: refused corpus", no);
    let p50_policy = summary("policy: whole corpus", all);

    let mut spawns = Vec::with_capacity(SPAWNS);
    for _ in 0..SPAWNS {
        let t = Instant::now();
        let status = Command::new("/bin/true").status();
        spawns.push(t.elapsed());
        if status.is_err() {
            eprintln!("cannot spawn /bin/true");
            std::process::exit(2);
        }
    }
    let p50_spawn = summary("spawn /bin/true", spawns);
    println!(
        "policy p50 is {:.1}% of a bare spawn's p50",
        100.0 * p50_policy.as_secs_f64() / p50_spawn.as_secs_f64().max(f64::MIN_POSITIVE)
    );
}
