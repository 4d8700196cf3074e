//! kill -9 under concurrent writers, repeated: every acknowledged write is there after the
//! restart, and the store passes SQLite's integrity check.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{raw, try_status, Server};

const JSON: &str = "application/json";
const ROUNDS: usize = 4;
const WRITERS: usize = 8;

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let mut s = Server::start().await;
    let c = s.client().await;
    assert_eq!(raw(&c, "POST", "/api/v1/namespaces", JSON, br#"{"metadata":{"name":"crash"}}"#).await.0, 201);
    let mut acked: BTreeSet<(String, String)> = BTreeSet::new();
    for round in 0..ROUNDS {
        let c = s.client().await;
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let (c, stop) = (c.clone(), stop.clone());
            writers.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let (kind, name) = (if i % 2 == 0 { "configmaps" } else { "secrets" }, format!("w{w}-r{round}-{i}"));
                    let body = if kind == "configmaps" {
                        format!(r#"{{"metadata":{{"name":"{name}"}},"data":{{"i":"{i}"}}}}"#)
                    } else {
                        format!(r#"{{"metadata":{{"name":"{name}"}},"stringData":{{"i":"{i}"}}}}"#)
                    };
                    // A request cut off by the kill fails or never answers: not acknowledged.
                    let path = format!("/api/v1/namespaces/crash/{kind}");
                    let req = try_status(&c, "POST", &path, JSON, body.as_bytes());
                    match tokio::time::timeout(Duration::from_secs(5), req).await {
                        Ok(Some(201)) => mine.push((kind.to_string(), name)),
                        _ => break,
                    }
                }
                mine
            }));
        }
        tokio::time::sleep(Duration::from_millis(1000 + 300 * round as u64)).await;
        s.kill9();
        stop.store(true, Ordering::Relaxed);
        let before = acked.len();
        for w in writers {
            acked.extend(w.await.unwrap());
        }
        assert!(acked.len() > before, "round {round}: no write was acknowledged");
        s.launch().await;
        let c = s.client().await;
        let mut present = BTreeSet::new();
        for kind in ["configmaps", "secrets"] {
            let (code, _, list) = raw(&c, "GET", &format!("/api/v1/namespaces/crash/{kind}"), "", b"").await;
            assert_eq!(code, 200);
            for item in list["items"].as_array().unwrap() {
                present.insert((kind.to_string(), item["metadata"]["name"].as_str().unwrap().to_string()));
            }
        }
        let lost: Vec<_> = acked.difference(&present).collect();
        assert!(lost.is_empty(), "round {round}: {} of {} acknowledged writes lost: {:?}", lost.len(), acked.len(), &lost[..lost.len().min(5)]);
        eprintln!("round {round}: {} acknowledged writes, all present after kill -9", acked.len());
    }
    s.stop();
    let db = rusqlite::Connection::open(s.data_dir().join("state.db")).unwrap();
    let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
}
