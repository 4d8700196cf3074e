//! Process-wide protections, set before any Secret is read: Secrets must never reach a core
//! file, another process's ptrace, or (with `--mlock`) swap. And the open-files limit is
//! raised, as Go's runtime does at start, so that connections, not descriptors, run out last.

use anyhow::{Context, Result};

pub struct Options {
    /// Leave core dumps and ptrace as the environment has them (for debugging a crash).
    pub allow_core_dumps: bool,
    /// Lock every page of the process in memory (`mlockall`), so nothing is swapped out.
    pub mlock: bool,
}

pub fn apply(opts: &Options) -> Result<()> {
    raise_open_files_limit();
    if !opts.allow_core_dumps {
        // RLIMIT_CORE 0: no core file, whatever the crash. Not dumpable: no core either, and
        // /proc/PID/mem, environ and ptrace are closed to other processes of the same user.
        set_limit(libc::RLIMIT_CORE, 0, 0).context("setting RLIMIT_CORE to 0")?;
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
            return Err(std::io::Error::last_os_error()).context("prctl(PR_SET_DUMPABLE, 0)");
        }
    }
    if opts.mlock {
        // SAFETY: mlockall takes flags only.
        if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } != 0 {
            return Err(std::io::Error::last_os_error())
                .context("--mlock: mlockall failed (it needs CAP_IPC_LOCK or a RLIMIT_MEMLOCK as large as the process; see `ulimit -l`)");
        }
    }
    Ok(())
}

/// The soft open-files limit up to the hard one (Go does this at start since 1.19).
fn raise_open_files_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 && lim.rlim_cur < lim.rlim_max {
        if let Err(e) = set_limit(libc::RLIMIT_NOFILE, lim.rlim_max, lim.rlim_max) {
            tracing::debug!(error = %e, "could not raise the open-files limit");
        }
    }
}

fn set_limit(resource: libc::__rlimit_resource_t, soft: libc::rlim_t, hard: libc::rlim_t) -> std::io::Result<()> {
    let lim = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(resource, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// One log line per panic, saying where, never what: a panic's message may quote the data it
/// was working on (a string it sliced, a value it parsed), and that may be a Secret. No
/// backtrace, whatever RUST_BACKTRACE says.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        if tracing::dispatcher::has_been_set() {
            tracing::error!(at, "panicked (its message is not logged: it may quote request data)");
        } else {
            eprintln!("panicked at {at}");
        }
    }));
}
