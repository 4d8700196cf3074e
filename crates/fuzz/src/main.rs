//! `lockbox-fuzz [--seconds N] [--seed S] [TARGET...]`: fuzzes each target (all by default)
//! for N seconds, prints executions and failures, and exits 1 if any target failed.
//! Build it with `--release` for long runs.

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut seconds, mut seed, mut names) = (60u64, 0x5eed_u64, Vec::new());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => seconds = args.next().and_then(|v| v.parse().ok()).expect("--seconds N"),
            "--seed" => seed = args.next().and_then(|v| v.parse().ok()).expect("--seed S"),
            "--list" => {
                fuzz::TARGETS.iter().for_each(|t| println!("{}", t.name));
                return;
            }
            name => names.push(name.to_string()),
        }
    }
    // A panic is a finding, reported below; its message may be long, so say only where.
    std::panic::set_hook(Box::new(|info| eprintln!("panic at {}", info.location().map(|l| l.to_string()).unwrap_or_default())));
    let mut failed = false;
    for t in fuzz::TARGETS.iter().filter(|t| names.is_empty() || names.iter().any(|n| n == t.name)) {
        let started = std::time::Instant::now();
        let r = fuzz::run(t, std::time::Duration::from_secs(seconds), seed);
        let rate = r.executions as f64 / started.elapsed().as_secs_f64();
        println!("{:<22} {:>10} executions {:>9.0}/s  {} failures", t.name, r.executions, rate, r.failures.len());
        for (path, why) in &r.failures {
            println!("    {why}: {}", path.display());
        }
        failed |= !r.failures.is_empty();
    }
    std::process::exit(i32::from(failed));
}
