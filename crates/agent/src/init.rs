//! `lockbox container-init`: the process runtime's container entry point.
//!
//! The agent starts this with exactly the container's environment and a spec on stdin. It moves
//! into new mount and PID namespaces, bind-mounts the pod's volumes at their mount paths (on the
//! host's root filesystem, which the container shares; the image is recorded, not pulled), and
//! forks a minimal init as PID 1 of its namespace, which runs the container command and forwards
//! termination signals to it. It forwards SIGTERM and SIGINT to it,
//! exits with its status, and dies with the agent (PR_SET_PDEATHSIG), taking the namespace
//! with it, so no container outlives its agent. Written against libc directly: the few
//! syscalls involved have no better-kept safe wrapper that also covers setns-free unshare+fork.

use std::ffi::CString;
use std::io::Read;
use std::sync::atomic::{AtomicI32, Ordering};

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Mount {
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Spec {
    pub argv: Vec<String>,
    pub working_dir: Option<String>,
    pub mounts: Vec<Mount>,
    pub pid_file: String,
}

static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("lockbox: {msg}");
    std::process::exit(128);
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|_| fail("argument contains a NUL byte"))
}

fn bind(m: &Mount) {
    let source = std::path::Path::new(&m.source);
    let target = std::path::Path::new(&m.target);
    if source.is_dir() {
        if let Err(e) = std::fs::create_dir_all(target) {
            fail(&format!("creating mount point {}: {e}", m.target));
        }
    } else {
        if let Some(parent) = target.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        if !target.exists() {
            let _ = std::fs::File::create(target);
        }
    }
    let (src, tgt) = (cstr(&m.source), cstr(&m.target));
    unsafe {
        if libc::mount(src.as_ptr(), tgt.as_ptr(), std::ptr::null(), libc::MS_BIND | libc::MS_REC, std::ptr::null()) != 0 {
            fail(&format!("mounting {} at {}: {}", m.source, m.target, std::io::Error::last_os_error()));
        }
        if m.read_only
            && libc::mount(std::ptr::null(), tgt.as_ptr(), std::ptr::null(), libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY, std::ptr::null()) != 0
        {
            fail(&format!("making {} read-only: {}", m.target, std::io::Error::last_os_error()));
        }
    }
}

/// Never returns.
pub fn main() -> ! {
    let mut input = String::new();
    if std::io::stdin().read_to_string(&mut input).is_err() {
        fail("cannot read the container spec");
    }
    let spec: Spec = serde_json::from_str(&input).unwrap_or_else(|e| fail(&format!("bad container spec: {e}")));
    if spec.argv.is_empty() {
        fail("the container has no command");
    }
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWPID) != 0 {
            fail(&format!("unshare: {}", std::io::Error::last_os_error()));
        }
        let root = cstr("/");
        if libc::mount(std::ptr::null(), root.as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0 {
            fail(&format!("making mounts private: {}", std::io::Error::last_os_error()));
        }
    }
    for m in &spec.mounts {
        bind(m);
    }
    let argv: Vec<CString> = spec.argv.iter().map(|a| cstr(a)).collect();
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let dir = cstr(spec.working_dir.as_deref().filter(|d| !d.is_empty()).unwrap_or("/"));
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        fail(&format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // PID 1 of the new namespace: a minimal init (like `docker run --init`) that forwards
        // termination signals to the command and reaps orphans. PID 1 ignores signals it has no
        // handler for, so without this a command that does not handle SIGTERM itself could only
        // ever be killed after the grace period.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        }
        let cmd = unsafe { libc::fork() };
        if cmd < 0 {
            unsafe { libc::_exit(128) };
        }
        if cmd == 0 {
            unsafe {
                let devnull = cstr("/dev/null");
                let fd = libc::open(devnull.as_ptr(), libc::O_RDONLY);
                if fd >= 0 {
                    libc::dup2(fd, 0);
                    libc::close(fd);
                }
                if libc::chdir(dir.as_ptr()) != 0 {
                    eprintln!("lockbox: working directory {:?}: {}", dir, std::io::Error::last_os_error());
                    libc::_exit(128);
                }
                libc::execvp(ptrs[0], ptrs.as_ptr());
                eprintln!("lockbox: exec {:?}: {}", spec.argv[0], std::io::Error::last_os_error());
                libc::_exit(127);
            }
        }
        CHILD.store(cmd, Ordering::SeqCst);
        unsafe {
            for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2] {
                libc::signal(sig, forward as *const () as libc::sighandler_t);
            }
        }
        loop {
            let mut status = 0;
            let r = unsafe { libc::waitpid(-1, &mut status, 0) };
            if r == cmd {
                let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
                unsafe { libc::_exit(code) };
            }
            if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                unsafe { libc::_exit(128) };
            }
        }
    }
    CHILD.store(pid, Ordering::SeqCst);
    let _ = std::fs::write(&spec.pid_file, pid.to_string());
    unsafe {
        libc::signal(libc::SIGTERM, forward as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, forward as *const () as libc::sighandler_t);
    }
    let mut status = 0;
    loop {
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            std::process::exit(128);
        }
    }
    if libc::WIFEXITED(status) {
        std::process::exit(libc::WEXITSTATUS(status));
    }
    std::process::exit(128 + libc::WTERMSIG(status));
}
