//! A process started for `kubectl exec`, with its streams: plain pipes, or a pseudo-terminal
//! when the client asked for a TTY (`-t`), whose size the client may change (resize channel).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

pub type Reader = Box<dyn AsyncRead + Unpin + Send>;
pub type Writer = Box<dyn AsyncWrite + Unpin + Send>;

pub struct ExecIo {
    pub child: tokio::process::Child,
    pub stdin: Option<Writer>,
    pub stdout: Option<Reader>,
    pub stderr: Option<Reader>,
    /// Set the terminal size (columns, rows); present with a TTY.
    pub resize: Option<Arc<dyn Fn(u16, u16) + Send + Sync>>,
}

fn set_size(fd: i32, cols: u16, rows: u16) {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    unsafe {
        libc::ioctl(fd, libc::TIOCSWINSZ, &ws);
    }
}

/// Starts `cmd`; with `tty`, on a new pseudo-terminal that becomes its controlling terminal.
pub fn spawn(mut cmd: tokio::process::Command, stdin: bool, tty: bool) -> std::io::Result<ExecIo> {
    if !tty {
        cmd.stdin(if stdin { std::process::Stdio::piped() } else { std::process::Stdio::null() });
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn()?;
        return Ok(ExecIo {
            stdin: child.stdin.take().map(|s| Box::new(s) as Writer),
            stdout: child.stdout.take().map(|s| Box::new(s) as Reader),
            stderr: child.stderr.take().map(|s| Box::new(s) as Reader),
            child,
            resize: None,
        });
    }
    let (mut master, mut slave) = (0, 0);
    if unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    set_size(master.as_raw_fd(), 80, 24);
    cmd.stdin(std::process::Stdio::from(slave.try_clone()?));
    cmd.stdout(std::process::Stdio::from(slave.try_clone()?));
    cmd.stderr(std::process::Stdio::from(slave));
    unsafe {
        cmd.pre_exec(|| {
            // A session of its own, with the terminal as its controlling terminal.
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    // The resize handle keeps a descriptor of its own, valid as long as the closure lives.
    let sizer = master.try_clone()?;
    let reader = tokio::fs::File::from_std(std::fs::File::from(master.try_clone()?));
    let writer = tokio::fs::File::from_std(std::fs::File::from(master));
    Ok(ExecIo {
        child,
        stdin: stdin.then(|| Box::new(writer) as Writer),
        stdout: Some(Box::new(reader)),
        stderr: None,
        resize: Some(Arc::new(move |cols, rows| set_size(sizer.as_raw_fd(), cols, rows))),
    })
}

/// Applies one resize message (`{"Width":120,"Height":40}`, possibly several per line).
pub fn apply_resize(resize: &Option<Arc<dyn Fn(u16, u16) + Send + Sync>>, msg: &[u8]) {
    let Some(r) = resize else { return };
    for line in msg.split(|b| *b == b'\n') {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) {
            if let (Some(w), Some(h)) = (v["Width"].as_u64(), v["Height"].as_u64()) {
                r(w as u16, h as u16);
            }
        }
    }
}
