//! Who gets served when the server is busy: kube-apiserver's max-in-flight limits, and fair
//! queuing of the expensive requests in the spirit of API Priority and Fairness, so that one
//! client hammering large LISTs cannot starve the others.
//!
//! - `--max-requests-inflight` and `--max-mutating-requests-inflight` bound the read-only
//!   (get, list) and the mutating requests in flight; one over the limit gets 429
//!   TooManyRequests with `Retry-After: 1` at once, as kube's maxinflight filter answers.
//!   Long-running requests (watch, exec, attach, log, portforward, proxy) are not counted, and
//!   `system:masters` is always served, as there.
//! - LISTs (and deletecollections) take a seat among as many as there are CPUs. Waiting ones
//!   queue per user and are dispatched round-robin across users, so a user with one LIST waits
//!   behind at most one LIST of each other user, not behind their whole backlog. A user's queue
//!   is bounded, and so is the wait: past either, 429.

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
    readonly: Arc<tokio::sync::Semaphore>,
    mutating: Arc<tokio::sync::Semaphore>,
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
        Fairness {
            readonly: Arc::new(tokio::sync::Semaphore::new(limits.max_requests_inflight.max(1))),
            mutating: Arc::new(tokio::sync::Semaphore::new(limits.max_mutating_requests_inflight.max(1))),
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
        let pool = if matches!(attrs.verb.as_str(), "get" | "list") { &self.readonly } else { &self.mutating };
        let inflight = match pool.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) if privileged => None,
            Err(_) => return Err(ApiError::too_many_requests()),
        };
        let seat = if matches!(attrs.verb.as_str(), "list" | "deletecollection") { Some(self.seats.clone().take(&attrs.user.name).await?) } else { None };
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
            if queue.len() >= MAX_QUEUED_PER_USER {
                return Err(ApiError::too_many_requests());
            }
            let (tx, rx) = oneshot::channel();
            queue.push_back(tx);
            if queue.len() == 1 {
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
        assert_eq!((e.code, e.reason), (429, "TooManyRequests"));
        assert!(f.admit(&attrs("admin", "get", &["system:masters"])).await.is_ok());
        assert!(f.admit(&attrs("u", "watch", &[])).await.is_ok());
        // Mutating requests have their own limit.
        let _c = f.admit(&attrs("u", "create", &[])).await.unwrap();
        assert!(f.admit(&attrs("u", "update", &[])).await.is_err());
        drop(_a);
        assert!(f.admit(&attrs("u", "get", &[])).await.is_ok());
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
