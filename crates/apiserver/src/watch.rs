//! Watch streams, served from the watch cache.
//!
//! A watch without a resourceVersion (or with "0") starts with synthetic ADDED events for what
//! exists; with a resourceVersion it resumes after it, or answers with a 410 ERROR event when
//! that revision has left the cache's window. Selectors are applied to both the old and new
//! state, so an object that stops matching is seen as DELETED and one that starts as ADDED.
//! Streams end after `timeoutSeconds` (by default a random 30–60 minutes, as kube-apiserver
//! does), and carry BOOKMARK events when the client allows them.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use api::kinds::Resource;
use api::{ApiError, ApiResult};

use crate::cache::{CacheEvent, EventType};
use crate::negotiate::{Negotiated, Transform};
use crate::request::Query;
use crate::rest::{ListOptions, Registry};

const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

struct Encoder {
    res: &'static Resource,
    n: Negotiated,
    include_object: String,
}

impl Encoder {
    fn event(&self, kind: &str, obj: &Value) -> Bytes {
        /// One watch event line, serialized from borrowed parts: every watcher gets the same
        /// object, so it is never copied.
        #[derive(serde::Serialize)]
        struct Line<'a, O: serde::Serialize> {
            #[serde(rename = "type")]
            kind: &'a str,
            object: O,
        }
        #[derive(serde::Serialize)]
        struct Partial<'a> {
            kind: &'static str,
            #[serde(rename = "apiVersion")]
            api_version: &'static str,
            metadata: &'a Value,
        }
        let mut line = match self.n.transform {
            Transform::Table => {
                let table = api::table::table(
                    self.res,
                    std::slice::from_ref(obj),
                    json!({"resourceVersion": api::object::resource_version(obj)}),
                    &self.include_object,
                );
                serde_json::to_vec(&Line { kind, object: table })
            }
            Transform::PartialMetadata => {
                serde_json::to_vec(&Line { kind, object: Partial { kind: "PartialObjectMetadata", api_version: "meta.k8s.io/v1", metadata: &obj["metadata"] } })
            }
            Transform::None => serde_json::to_vec(&Line { kind, object: obj }),
        }
        .unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    fn bookmark(&self, rev: i64, initial_events_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rev.to_string()});
        if initial_events_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.res.kind, "apiVersion": self.res.api_version(), "metadata": meta});
        let mut line = serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    fn error(e: &ApiError) -> Bytes {
        let mut line = serde_json::to_vec(&json!({"type": "ERROR", "object": e.to_json()})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }
}

fn stream_response(rx: mpsc::Receiver<Result<Bytes, Infallible>>) -> Response<Body> {
    let mut r = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    r
}

pub async fn serve(reg: &Registry, res: &'static Resource, ns: &str, opts: &ListOptions, q: &Query, n: Negotiated) -> ApiResult<Response<Body>> {
    let prefix = if res.namespaced && !ns.is_empty() { format!("{}{}/", res.key_prefix(), ns) } else { res.key_prefix() };
    let enc = Encoder { res, n, include_object: q.get("includeObject").unwrap_or("Metadata").to_string() };
    let bookmarks = matches!(q.get("allowWatchBookmarks"), Some("true" | "1"));
    let timeout = match q.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()) {
        Some(t) => Duration::from_secs(t),
        None => Duration::from_secs(1800 + rand::random::<u64>() % 1800),
    };
    let rv = opts.resource_version.clone().unwrap_or_default();
    let send_initial = matches!(q.get("sendInitialEvents"), Some("true"));
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(256);

    let mut initial = Vec::new();
    let start_rev: i64;
    if rv.is_empty() || rv == "0" || send_initial {
        if rv.is_empty() {
            let current = reg.store.revision();
            reg.cache.wait_for(current, Duration::from_secs(3)).await;
        }
        let (entries, rev) = reg.cache.list(&prefix, None).map_err(|_| ApiError::internal("watch cache list failed"))?;
        for (_, e) in entries {
            if let Ok(obj) = e.object {
                if reg.matches(res, &obj, opts) {
                    initial.push(enc.event("ADDED", &obj));
                }
            }
        }
        if send_initial {
            initial.push(enc.bookmark(rev, true));
        }
        start_rev = rev;
    } else {
        start_rev = rv.parse().map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?;
    }
    let (past, live) = match reg.cache.subscribe(start_rev) {
        Ok(s) => s,
        Err(too_old) => {
            let e = ApiError::gone(format!("too old resource version: {} ({})", too_old.requested, too_old.oldest));
            let _ = tx.try_send(Ok(Encoder::error(&e)));
            return Ok(stream_response(rx));
        }
    };
    let opts = opts.clone();
    let registry_matches = {
        let opts = opts.clone();
        move |obj: &Value| opts.label_selector.matches(api::object::labels(obj)) && opts.field_selector.matches(|f| res.field_value(obj, f))
    };
    let revision_now = reg.cache.current_revision();
    tokio::spawn(async move {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        for line in initial {
            if tx.send(Ok(line)).await.is_err() {
                return;
            }
        }
        let mut last_rev = start_rev;
        for ev in past {
            if let Some(line) = translate(&enc, &prefix, &ev, &registry_matches) {
                if tx.send(Ok(line)).await.is_err() {
                    return;
                }
            }
            last_rev = ev.revision;
        }
        let _ = revision_now;
        let mut live = live;
        let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => {
                    if bookmarks {
                        let _ = tx.send(Ok(enc.bookmark(last_rev, false))).await;
                    }
                    return;
                }
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(Ok(enc.bookmark(last_rev, false))).await.is_err() {
                        return;
                    }
                }
                _ = tx.closed() => return,
                ev = live.recv() => match ev {
                    Ok(ev) => {
                        if ev.revision <= last_rev {
                            continue;
                        }
                        last_rev = ev.revision;
                        if let Some(line) = translate(&enc, &prefix, &ev, &registry_matches) {
                            if tx.send(Ok(line)).await.is_err() {
                                return;
                            }
                        }
                    }
                    // A watcher too slow to keep up is closed, as kube-apiserver does; the
                    // client re-lists.
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    Ok(stream_response(rx))
}

fn translate(enc: &Encoder, prefix: &str, ev: &Arc<CacheEvent>, matches: &impl Fn(&Value) -> bool) -> Option<Bytes> {
    if !ev.key.starts_with(prefix) {
        return None;
    }
    let obj = ev.object.as_ref().ok()?;
    let now = matches(obj);
    let before = ev.prev.as_ref().and_then(|p| p.as_ref().ok()).map(|p| matches(p)).unwrap_or(false);
    let kind = match ev.kind {
        EventType::Added if now => "ADDED",
        EventType::Deleted if now || before => "DELETED",
        EventType::Modified => match (before, now) {
            (true, true) => "MODIFIED",
            (false, true) => "ADDED",
            (true, false) => "DELETED",
            (false, false) => return None,
        },
        _ => return None,
    };
    Some(enc.event(kind, obj))
}
