//! Each fuzz target for a bounded time (`LOCKBOX_FUZZ_SECONDS`, default 4 per target): no
//! input of the seed corpus or of its mutations may panic or take longer than `fuzz::SLOW`.

#[test]
fn every_target_survives_its_corpus_and_mutations() {
    let seconds: u64 = std::env::var("LOCKBOX_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    std::panic::set_hook(Box::new(|info| eprintln!("panic at {}", info.location().map(|l| l.to_string()).unwrap_or_default())));
    let mut failures = Vec::new();
    for t in fuzz::TARGETS {
        let r = fuzz::run(t, std::time::Duration::from_secs(seconds), 0x5eed);
        eprintln!("{:<22} {:>8} executions, {} failures", t.name, r.executions, r.failures.len());
        assert!(r.executions > fuzz::seeds(t).len() as u64, "{}: no mutation ran", t.name);
        failures.extend(r.failures.into_iter().map(|(p, why)| format!("{}: {why}: {}", t.name, p.display())));
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn the_seed_corpus_covers_every_target() {
    for t in fuzz::TARGETS {
        let seeds = fuzz::seeds(t);
        assert!(seeds.len() >= 2 && seeds.iter().all(|s| !s.is_empty()), "{}: commit seeds in corpus/{}/", t.name, t.name);
    }
}
