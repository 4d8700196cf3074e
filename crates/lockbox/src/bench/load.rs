//! The load driver: a fixed number of concurrent workers share a budget of operations, each
//! timing its own calls into an HDR histogram, merged at the end. Used for both lockbox and its
//! peers, so both sides get exactly the same client.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency (microseconds) of one operation, up to a minute, 3 significant figures.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// Throughput and latency of one measured run.
#[derive(Clone, Debug, Serialize)]
pub struct Measure {
    pub ops: u64,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// Latency samples (ms) at evenly spaced quantiles, for the plot.
    #[serde(skip)]
    pub quantiles: Vec<(f64, f64)>,
}

impl Measure {
    pub fn from_histogram(h: &Histogram<u64>, elapsed: Duration) -> Measure {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let quantiles = (0..=200).map(|i| i as f64 / 200.0).map(|q| (q.min(0.999), ms(q.min(0.999)))).collect();
        Measure {
            ops: h.len(),
            ops_per_sec: h.len() as f64 / elapsed.as_secs_f64().max(1e-9),
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            quantiles,
        }
    }
}

/// Runs `total` operations with `concurrency` workers; `op(i)` performs operation number `i`.
/// Any failed operation fails the run: a benchmark of errors measures nothing.
pub async fn drive<F, Fut>(concurrency: usize, total: u64, progress: &indicatif::ProgressBar, op: F) -> Result<Measure>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (op, next, progress) = (op.clone(), next.clone(), progress.clone());
        workers.push(tokio::spawn(async move {
            let mut h = histogram();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(h);
                }
                let t = Instant::now();
                op(i).await?;
                h.record(t.elapsed().as_micros().max(1) as u64)?;
                progress.inc(1);
            }
        }));
    }
    let mut all = histogram();
    for w in workers {
        all.add(w.await??)?;
    }
    Ok(Measure::from_histogram(&all, started.elapsed()))
}

/// Times `n` sequential runs of `f` (for operations too heavy to run concurrently).
pub async fn repeat<F, Fut>(n: u64, progress: &indicatif::ProgressBar, mut f: F) -> Result<Measure>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut h = histogram();
    let started = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        f(i).await?;
        h.record(t.elapsed().as_micros().max(1) as u64)?;
        progress.inc(1);
    }
    Ok(Measure::from_histogram(&h, started.elapsed()))
}
