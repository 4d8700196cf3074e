//! Who gets served when the server is busy: kube-apiserver's max-in-flight limits, and fair
//! queuing of the expensive requests in the spirit of API Priority and Fairness, so that one
//! client hammering large LISTs cannot starve the others.
//!
//! - `--max-requests-inflight` and `--max-mutating-requests-inflight` bound the read-only
//!   (get, list) and the mutating requests in flight; one over the limit gets 429
//!   TooManyRequests with `Retry-After: 1` at once, as kube's maxinflight filter answers.
//!   Long-running requests (watch, exec, attach, log, portforward, proxy) are not counted,
//!   `system:masters` is always served, and 0 means no limit, as there.
//! - LISTs (and deletecollections) take a seat among as many as there are CPUs. Waiting ones
//!   queue per user and are dispatched round-robin across users, so a user with one LIST waits
//!   behind at most one LIST of each other user, not behind their whole backlog. A user's queue
//!   is bounded, and so is the wait: past either, 429. `system:masters` never queues (kube's
//!   exempt priority level). A queued LIST holds no in-flight place until it has its seat.
//! - Work that is CPU for milliseconds (encoding a large LIST) runs on [`low_priority`]
//!   threads, niced, so that on a busy machine the short requests of others are scheduled
//!   first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::ApiError;
use auth::Attributes;
use tokio::sync::oneshot;

const LONG_RUNNING_VERBS: &[&str] = &["watch", "proxy"];
const LONG_RUNNING_SUBRESOURCES: &[&str] = &["attach", "exec", "proxy", "log", "portforward"];
/// How many LISTs one user may have waiting for a seat.
const MAX_QUEUED_PER_USER: usize = 64;
/// How long a LIST may wait for a seat before it is refused.
const MAX_QUEUE_WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_requests_inflight: usize,
    pub max_mutating_requests_inflight: usize,
    /// Seats for LISTs; 0 means one per CPU.
    pub list_seats: usize,
}

impl Default for Limits {
    /// kube-apiserver's defaults: 400 and 200.
    fn default() -> Self {
        Limits { max_requests_inflight: 400, max_mutating_requests_inflight: 200, list_seats: 0 }
    }
}

pub struct Fairness {
    /// `None`: no limit (the flag set to 0).
    readonly: Option<Arc<tokio::sync::Semaphore>>,
    mutating: Option<Arc<tokio::sync::Semaphore>>,
    seats: Arc<Seats>,
}

/// What a request holds while it is served; dropping it frees its places.
pub struct Admitted {
    _inflight: Option<tokio::sync::OwnedSemaphorePermit>,
    _seat: Option<Seat>,
}

impl Fairness {
    pub fn new(limits: Limits) -> Self {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let seats = if limits.list_seats == 0 { cpus } else { limits.list_seats };
        let pool = |n: usize| (n > 0).then(|| Arc::new(tokio::sync::Semaphore::new(n)));
        Fairness {
            readonly: pool(limits.max_requests_inflight),
            mutating: pool(limits.max_mutating_requests_inflight),
            seats: Arc::new(Seats { total: seats, state: Mutex::new(SeatState::default()) }),
        }
    }

    /// Admits a request, or refuses it with 429.
    pub async fn admit(&self, attrs: &Attributes) -> Result<Admitted, ApiError> {
        let long_running = LONG_RUNNING_VERBS.contains(&attrs.verb.as_str()) || LONG_RUNNING_SUBRESOURCES.contains(&attrs.subresource.as_str());
        if long_running || !attrs.resource_request {
            return Ok(Admitted { _inflight: None, _seat: None });
        }
        let privileged = attrs.user.groups.iter().any(|g| g == "system:masters");
        let heavy = matches!(attrs.verb.as_str(), "list" | "deletecollection");
        let seat = if heavy && !privileged { Some(self.seats.clone().take(&attrs.user.name).await?) } else { None };
        let pool = if matches!(attrs.verb.as_str(), "get" | "list") { &self.readonly } else { &self.mutating };
        let inflight = match pool.as_ref().map(|p| p.clone().try_acquire_owned()) {
            None => None,
            Some(Ok(p)) => Some(p),
            Some(Err(_)) if privileged => None,
            Some(Err(_)) => return Err(ApiError::too_many_requests()),
        };
        Ok(Admitted { _inflight: inflight, _seat: seat })
    }
}

struct Seats {
    total: usize,
    state: Mutex<SeatState>,
}

#[derive(Default)]
struct SeatState {
    busy: usize,
    /// Waiting requests per user, and the users with waiters in round-robin order.
    waiting: HashMap<String, VecDeque<oneshot::Sender<Seat>>>,
    turn: VecDeque<String>,
}

/// A seat taken by a LIST; given to the next user in turn when dropped. It travels to its
/// waiter inside the channel, so a waiter that gave up (its client hung up) still frees it.
pub struct Seat {
    seats: Arc<Seats>,
    armed: bool,
}

impl Seats {
    async fn take(self: Arc<Self>, user: &str) -> Result<Seat, ApiError> {
        let rx = {
            let mut st = self.state.lock().expect("seats");
            if st.busy < self.total && st.turn.is_empty() {
                st.busy += 1;
                return Ok(Seat { seats: self.clone(), armed: true });
            }
            let queue = st.waiting.entry(user.to_string()).or_default();
            // Waiters that gave up (timed out, or their client hung up) hold no place.
            queue.retain(|tx| !tx.is_closed());
            if queue.len() >= MAX_QUEUED_PER_USER {
                return Err(ApiError::too_many_requests());
            }
            let (tx, rx) = oneshot::channel();
            queue.push_back(tx);
            if !st.turn.iter().any(|u| u == user) {
                st.turn.push_back(user.to_string());
            }
            rx
        };
        match tokio::time::timeout(MAX_QUEUE_WAIT, rx).await {
            Ok(Ok(seat)) => Ok(seat),
            _ => Err(ApiError::too_many_requests()),
        }
    }

    /// Hands a freed seat to the first waiter of the next user in turn.
    fn release(self: &Arc<Self>) {
        let mut st = self.state.lock().expect("seats");
        while let Some(user) = st.turn.pop_front() {
            let Some(queue) = st.waiting.get_mut(&user) else { continue };
            let mut handed = false;
            while let Some(tx) = queue.pop_front() {
                match tx.send(Seat { seats: self.clone(), armed: true }) {
                    Ok(()) => {
                        handed = true;
                        break;
                    }
                    // That waiter is gone: the seat comes back here, not released twice.
                    Err(mut seat) => seat.armed = false,
                }
            }
            if queue.is_empty() {
                st.waiting.remove(&user);
            } else {
                st.turn.push_back(user);
            }
            if handed {
                return;
            }
        }
        st.busy -= 1;
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        if self.armed {
            self.seats.release();
        }
    }
}

/// Threads that run CPU-heavy work at a lower scheduling priority (nice 10), one per CPU.
/// Written here rather than taken from a pool crate because the threads must be niced, once,
/// when they start; tokio's blocking pool gives no hook for that.
struct LowPriority {
    jobs: Mutex<std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>>,
}

fn low_priority_pool() -> &'static LowPriority {
    static POOL: std::sync::OnceLock<LowPriority> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        for i in 0..threads {
            let rx = rx.clone();
            let _ = std::thread::Builder::new().name(format!("lockbox-encode-{i}")).spawn(move || {
                // SAFETY: setpriority on this thread (who 0 with PRIO_PROCESS means the caller,
                // which on Linux is the calling thread).
                unsafe {
                    libc::setpriority(libc::PRIO_PROCESS, 0, 10);
                }
                loop {
                    let job = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            });
        }
        LowPriority { jobs: Mutex::new(tx) }
    })
}

/// Runs `f` on a low-priority thread and waits for its answer. A panic in `f` is resumed
/// here, in the request, where the server's handler turns it into a 500.
pub async fn low_priority<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = oneshot::channel();
    let job = Box::new(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    let sent = low_priority_pool().jobs.lock().map(|j| j.send(job)).is_ok_and(|r| r.is_ok());
    assert!(sent, "the low-priority threads are gone");
    match rx.await.expect("a low-priority job always answers") {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(user: &str, verb: &str, groups: &[&str]) -> Attributes {
        Attributes {
            user: auth::UserInfo { name: user.into(), groups: groups.iter().map(|g| g.to_string()).collect(), ..Default::default() },
            verb: verb.into(),
            resource: "secrets".into(),
            resource_request: true,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn over_the_limit_is_429_except_for_masters_and_long_running() {
        let f = Fairness::new(Limits { max_requests_inflight: 2, max_mutating_requests_inflight: 1, list_seats: 8 });
        let _a = f.admit(&attrs("u", "get", &[])).await.unwrap();
        let _b = f.admit(&attrs("u", "get", &[])).await.unwrap();
        let e = f.admit(&attrs("u", "get", &[])).await.err().unwrap();
        assert_eq!((e.code, e.reason), (429, api::Reason::TooManyRequests));
        assert!(f.admit(&attrs("admin", "get", &["system:masters"])).await.is_ok());
        assert!(f.admit(&attrs("u", "watch", &[])).await.is_ok());
        // Mutating requests have their own limit.
        let _c = f.admit(&attrs("u", "create", &[])).await.unwrap();
        assert!(f.admit(&attrs("u", "update", &[])).await.is_err());
        drop(_a);
        assert!(f.admit(&attrs("u", "get", &[])).await.is_ok());
        // 0 is no limit, as with kube-apiserver's flags.
        let unlimited = Fairness::new(Limits { max_requests_inflight: 0, max_mutating_requests_inflight: 0, list_seats: 8 });
        let get = attrs("u", "get", &[]);
        let mut held = Vec::new();
        for _ in 0..1000 {
            held.push(unlimited.admit(&get).await.expect("no limit"));
        }
    }

    #[tokio::test]
    async fn low_priority_work_answers_and_its_panics_reach_the_caller() {
        assert_eq!(low_priority(|| 6 * 7).await, 42);
        let caught = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(low_priority(|| -> u8 { panic!("in a job") }))).await;
        assert!(caught.is_err());
        assert_eq!(low_priority(|| "still there").await, "still there");
    }

    #[tokio::test]
    async fn seats_go_round_robin_across_users() {
        let f = Arc::new(Fairness::new(Limits { max_requests_inflight: 100, max_mutating_requests_inflight: 100, list_seats: 1 }));
        let held = f.admit(&attrs("hog", "list", &[])).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, user) in ["hog", "hog", "hog", "other"].into_iter().enumerate() {
            let (g, order) = (f.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _seat = g.admit(&attrs(user, "list", &[])).await.unwrap();
                order.lock().unwrap().push(user);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }));
            // Queue them in this order.
            while f.seats.state.lock().unwrap().waiting.values().map(VecDeque::len).sum::<usize>() < i + 1 {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        // "other" queued last but is served second: after one of the hog's, not all three.
        assert_eq!(*order.lock().unwrap(), ["hog", "other", "hog", "hog"]);
    }
}
