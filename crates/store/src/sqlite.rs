//! The embedded backend: SQLite in WAL mode with `synchronous=FULL`, and group commit.
//!
//! One writer thread owns the write connection. Writers queue their transactions; the thread
//! takes everything queued, runs it inside one SQLite transaction and commits once, so that
//! concurrent writers share one fsync. No writer is answered before that commit returns, so an
//! acknowledged write is always durable. Each queued transaction is still atomic and isolated:
//! its compares see the effects of the transactions queued before it.
//!
//! Layout: `kv` holds the current value of every key; `log` holds every change since the last
//! compaction (the history that `watch` replays, like etcd's MVCC history); `meta` holds the
//! current and compacted revisions.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{broadcast, oneshot};

use crate::{Compare, Error, Event, EventKind, KeyValue, Op, RangeResult, Result, Store, Txn, TxnResult};

/// How many queued transactions may share one commit. Bounds the latency a large burst adds
/// to the first writer in it.
const MAX_BATCH: usize = 256;

enum Request {
    Txn(Txn, oneshot::Sender<Result<TxnResult>>),
    Compact(i64, oneshot::Sender<Result<()>>),
}

pub struct SqliteStore {
    writer: Mutex<mpsc::Sender<Request>>,
    reader: Arc<Mutex<Connection>>,
    revision: Arc<AtomicI64>,
    compacted: Arc<AtomicI64>,
    events: broadcast::Sender<Arc<Vec<Event>>>,
}

fn backend(e: rusqlite::Error) -> Error {
    Error::Backend(e.to_string())
}

fn open(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(backend)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         PRAGMA synchronous=FULL;
         PRAGMA secure_delete=ON;
         PRAGMA busy_timeout=10000;
         PRAGMA foreign_keys=OFF;",
    )
    .map_err(backend)?;
    Ok(conn)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    create_rev INTEGER NOT NULL,
    mod_rev INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log (
    rev INTEGER NOT NULL,
    sub INTEGER NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    create_rev INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (rev, sub)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 1), ('compacted', 0);
";

fn meta(conn: &Connection, name: &str) -> Result<i64> {
    conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| r.get(0)).map_err(backend)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Arc<Self>> {
        let write = open(path)?;
        write.execute_batch(SCHEMA).map_err(backend)?;
        let reader = open(path)?;
        let revision = Arc::new(AtomicI64::new(meta(&write, "revision")?));
        let compacted = Arc::new(AtomicI64::new(meta(&write, "compacted")?));
        // Small: a slot keeps its batch (values included) until overwritten, and the only
        // subscriber, the watch cache, replays from the log when it lags.
        let (events, _) = broadcast::channel(256);
        let (tx, rx) = mpsc::channel();
        let writer = Writer { conn: write, revision: revision.clone(), compacted: compacted.clone(), events: events.clone() };
        std::thread::Builder::new().name("sqlite-writer".into()).spawn(move || writer.run(rx)).map_err(|e| Error::Backend(e.to_string()))?;
        Ok(Arc::new(SqliteStore { writer: Mutex::new(tx), reader: Arc::new(Mutex::new(reader)), revision, compacted, events }))
    }

    fn send(&self, req: Request) -> Result<()> {
        self.writer.lock().map_err(|_| Error::Closed)?.send(req).map_err(|_| Error::Closed)
    }

    async fn read<T: Send + 'static>(&self, f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static) -> Result<T> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = reader.lock().map_err(|_| Error::Closed)?;
            f(&mut conn)
        })
        .await
        .map_err(|e| Error::Backend(e.to_string()))?
    }
}

fn row_kv(r: &rusqlite::Row) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue { key: r.get(0)?, value: Bytes::from(r.get::<_, Vec<u8>>(1)?), create_revision: r.get(2)?, mod_revision: r.get(3)? })
}

fn get_kv(conn: &Connection, key: &str) -> rusqlite::Result<Option<KeyValue>> {
    conn.prepare_cached("SELECT key, value, create_rev, mod_rev FROM kv WHERE key = ?1")?.query_row([key], row_kv).optional()
}

/// The smallest string greater than every string that starts with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; 1]
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_string();
        self.read(move |c| get_kv(c, &key).map_err(backend)).await
    }

    async fn range(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<RangeResult> {
        let prefix = prefix.to_string();
        let start = start_after.map(str::to_string);
        self.read(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            let revision = meta(&tx, "revision")?;
            let end = prefix_end(&prefix);
            let fetch = if limit == 0 { i64::MAX } else { limit as i64 + 1 };
            let mut kvs = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT key, value, create_rev, mod_rev FROM kv
                         WHERE key >= ?1 AND CAST(key AS BLOB) < ?2 AND (?3 IS NULL OR key > ?3)
                         ORDER BY key LIMIT ?4",
                    )
                    .map_err(backend)?;
                let rows = stmt.query_map(params![prefix, end, start, fetch], row_kv).map_err(backend)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)?
            };
            let more = limit != 0 && kvs.len() > limit;
            kvs.truncate(if limit == 0 { kvs.len() } else { limit });
            Ok(RangeResult { kvs, revision, more })
        })
        .await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResult> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Txn(txn, tx))?;
        rx.await.map_err(|_| Error::Closed)?
    }

    async fn watch(&self, after: i64) -> Result<(Vec<Event>, broadcast::Receiver<Arc<Vec<Event>>>)> {
        // Subscribe before reading the history so that no event falls between the two; the
        // caller skips live events at or below the last revision it has seen.
        let rx = self.events.subscribe();
        let compacted = self.compacted_revision();
        if after < compacted {
            return Err(Error::Compacted { requested: after + 1, compacted });
        }
        let history = self
            .read(move |conn| {
                let mut stmt =
                    conn.prepare_cached("SELECT key, value, create_rev, rev, deleted, created FROM log WHERE rev > ?1 ORDER BY rev, sub").map_err(backend)?;
                let rows = stmt
                    .query_map([after], |r| {
                        Ok(Event { kv: row_kv(r)?, kind: if r.get::<_, bool>(4)? { EventKind::Delete } else { EventKind::Put }, created: r.get(5)? })
                    })
                    .map_err(backend)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
            })
            .await?;
        Ok((history, rx))
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Compact(revision, tx))?;
        rx.await.map_err(|_| Error::Closed)?
    }

    fn revision(&self) -> i64 {
        self.revision.load(Ordering::Acquire)
    }

    fn compacted_revision(&self) -> i64 {
        self.compacted.load(Ordering::Acquire)
    }
}

struct Writer {
    conn: Connection,
    revision: Arc<AtomicI64>,
    compacted: Arc<AtomicI64>,
    events: broadcast::Sender<Arc<Vec<Event>>>,
}

type Pending = (Result<TxnResult>, oneshot::Sender<Result<TxnResult>>);

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
        }
    }

    fn commit_batch(&mut self, batch: Vec<Request>) {
        let start_rev = self.revision.load(Ordering::Acquire);
        let mut rev = start_rev;
        let mut events = Vec::new();
        let mut answers: Vec<Pending> = Vec::new();
        let mut compactions = Vec::new();
        let outcome = (|| -> rusqlite::Result<()> {
            let tx = self.conn.transaction()?;
            for req in batch {
                match req {
                    Request::Txn(txn, reply) => {
                        let result = apply_txn(&tx, &txn, &mut rev, &mut events)?;
                        answers.push((Ok(result), reply));
                    }
                    Request::Compact(at, reply) => {
                        let at = at.min(rev);
                        tx.execute("DELETE FROM log WHERE rev <= ?1", [at])?;
                        tx.execute("UPDATE meta SET value = max(value, ?1) WHERE name = 'compacted'", [at])?;
                        compactions.push((at, reply));
                    }
                }
            }
            if rev != start_rev {
                tx.execute("UPDATE meta SET value = ?1 WHERE name = 'revision'", [rev])?;
            }
            tx.commit()
        })();
        match outcome {
            Ok(()) => {
                self.revision.store(rev, Ordering::Release);
                if !compactions.is_empty() {
                    // Old values must not outlive their compaction in the WAL either (they may
                    // be plaintext from before encryption): fold the WAL in and truncate it.
                    // secure_delete has already zeroed the freed pages.
                    if let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
                        tracing::warn!(error = %e, "WAL checkpoint after compaction failed");
                    }
                }
                for (at, reply) in compactions {
                    self.compacted.fetch_max(at, Ordering::AcqRel);
                    let _ = reply.send(Ok(()));
                }
                if !events.is_empty() {
                    // No receivers is fine: nobody is watching yet.
                    let _ = self.events.send(Arc::new(events));
                }
                for (result, reply) in answers {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "storage commit failed; the batch was rolled back");
                let msg = e.to_string();
                for (_, reply) in answers {
                    let _ = reply.send(Err(Error::Backend(msg.clone())));
                }
                for (_, reply) in compactions {
                    let _ = reply.send(Err(Error::Backend(msg.clone())));
                }
            }
        }
    }
}

fn apply_txn(tx: &rusqlite::Transaction, txn: &Txn, rev: &mut i64, events: &mut Vec<Event>) -> rusqlite::Result<TxnResult> {
    let mut failed = false;
    for Compare::ModRevision(key, want) in &txn.compare {
        let have = get_kv(tx, key)?.map(|kv| kv.mod_revision).unwrap_or(0);
        failed |= have != *want;
    }
    if failed {
        let current = txn.compare.iter().map(|Compare::ModRevision(key, _)| get_kv(tx, key)).collect::<rusqlite::Result<_>>()?;
        return Ok(TxnResult::Failed { current });
    }
    let next = *rev + 1;
    let mut sub = 0;
    for op in &txn.success {
        match op {
            Op::Put(key, value) => {
                let existing = get_kv(tx, key)?;
                let create_rev = existing.as_ref().map(|kv| kv.create_revision).unwrap_or(next);
                tx.prepare_cached("INSERT OR REPLACE INTO kv (key, value, create_rev, mod_rev) VALUES (?1, ?2, ?3, ?4)")?.execute(params![
                    key,
                    value.as_ref(),
                    create_rev,
                    next
                ])?;
                tx.prepare_cached("INSERT INTO log (rev, sub, key, value, create_rev, deleted, created) VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)")?
                    .execute(params![next, sub, key, value.as_ref(), create_rev, existing.is_none()])?;
                events.push(Event {
                    kind: EventKind::Put,
                    kv: KeyValue { key: key.clone(), value: value.clone(), create_revision: create_rev, mod_revision: next },
                    created: existing.is_none(),
                });
            }
            Op::Delete(key) => {
                let Some(existing) = get_kv(tx, key)? else {
                    continue;
                };
                tx.prepare_cached("DELETE FROM kv WHERE key = ?1")?.execute([key])?;
                tx.prepare_cached("INSERT INTO log (rev, sub, key, value, create_rev, deleted, created) VALUES (?1, ?2, ?3, ?4, ?5, 1, 0)")?
                    .execute(params![next, sub, key, existing.value.as_ref(), existing.create_revision])?;
                events.push(Event { kind: EventKind::Delete, kv: KeyValue { mod_revision: next, ..existing }, created: false });
            }
        }
        sub += 1;
    }
    if sub > 0 {
        *rev = next;
    }
    Ok(TxnResult::Committed { revision: *rev })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, v: &str) -> Op {
        Op::Put(k.into(), Bytes::from(v.to_string()))
    }

    #[tokio::test]
    async fn revisions_compare_and_swap_and_watch_history() {
        let dir = tempfile_dir();
        let store = SqliteStore::open(&dir.join("db")).unwrap();
        let r1 = match store.txn(Txn { compare: vec![Compare::ModRevision("/a".into(), 0)], success: vec![put("/a", "1")] }).await.unwrap() {
            TxnResult::Committed { revision } => revision,
            other => panic!("{other:?}"),
        };
        // Creating again fails: the key exists.
        let again = store.txn(Txn { compare: vec![Compare::ModRevision("/a".into(), 0)], success: vec![put("/a", "2")] }).await.unwrap();
        assert!(matches!(again, TxnResult::Failed { ref current } if current[0].as_ref().unwrap().mod_revision == r1));
        // A stale mod revision fails; the right one succeeds.
        let stale = store.txn(Txn { compare: vec![Compare::ModRevision("/a".into(), r1 - 1)], success: vec![put("/a", "2")] }).await.unwrap();
        assert!(matches!(stale, TxnResult::Failed { .. }));
        let ok = store.txn(Txn { compare: vec![Compare::ModRevision("/a".into(), r1)], success: vec![put("/a", "2")] }).await.unwrap();
        let TxnResult::Committed { revision: r2 } = ok else { panic!() };
        assert_eq!(r2, r1 + 1);
        let kv = store.get("/a").await.unwrap().unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision, &kv.value[..]), (r1, r2, &b"2"[..]));
        store.txn(Txn { compare: vec![], success: vec![Op::Delete("/a".into())] }).await.unwrap();
        let (history, _) = store.watch(0).await.unwrap();
        let kinds: Vec<_> = history.iter().map(|e| (e.kind, e.kv.mod_revision)).collect();
        assert_eq!(kinds, vec![(EventKind::Put, r1), (EventKind::Put, r2), (EventKind::Delete, r2 + 1)]);
        store.compact(r2).await.unwrap();
        assert!(matches!(store.watch(r1 - 1).await, Err(Error::Compacted { .. })));
        assert_eq!(store.watch(r2).await.unwrap().0.len(), 1);
    }

    #[tokio::test]
    async fn range_pages_by_prefix_and_survives_reopen() {
        let dir = tempfile_dir();
        {
            let store = SqliteStore::open(&dir.join("db")).unwrap();
            for i in 0..5 {
                store.txn(Txn { compare: vec![], success: vec![put(&format!("/p/{i}"), "x")] }).await.unwrap();
            }
            store.txn(Txn { compare: vec![], success: vec![put("/q/0", "x")] }).await.unwrap();
        }
        let store = SqliteStore::open(&dir.join("db")).unwrap();
        let page = store.range("/p/", None, 2).await.unwrap();
        assert_eq!(page.kvs.iter().map(|k| k.key.as_str()).collect::<Vec<_>>(), ["/p/0", "/p/1"]);
        assert!(page.more);
        let rest = store.range("/p/", Some("/p/1"), 0).await.unwrap();
        assert_eq!(rest.kvs.len(), 3);
        assert!(!rest.more);
        assert_eq!(store.revision(), 7);
    }

    #[tokio::test]
    async fn concurrent_writers_share_commits_and_all_land() {
        let dir = tempfile_dir();
        let store = SqliteStore::open(&dir.join("db")).unwrap();
        let mut tasks = Vec::new();
        for i in 0..64 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move { s.txn(Txn { compare: vec![], success: vec![put(&format!("/c/{i}"), "v")] }).await }));
        }
        for t in tasks {
            assert!(matches!(t.await.unwrap().unwrap(), TxnResult::Committed { .. }));
        }
        assert_eq!(store.range("/c/", None, 0).await.unwrap().kvs.len(), 64);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("lockbox-store-test-{}", uuid_like()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn uuid_like() -> String {
        use std::time::{SystemTime, UNIX_EPOCH};
        static N: AtomicI64 = AtomicI64::new(0);
        format!("{}-{}-{}", std::process::id(), SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos(), N.fetch_add(1, Ordering::Relaxed))
    }
}
