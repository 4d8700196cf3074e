//! A revisioned key-value store with etcd v3 semantics.
//!
//! Everything above this crate (the watch cache, the registry, encryption) talks to storage only
//! through [`Store`], so that the embedded SQLite backend and an etcd backend are interchangeable.
//! The semantics are etcd's on purpose: one global revision that every write increments, a
//! create and a mod revision per key, transactions that compare mod revisions (the basis of
//! optimistic concurrency and of `resourceVersion`), watches from a revision, and compaction that
//! makes older revisions unreadable (clients then get `410 Gone`).
//!
//! The store knows nothing of HTTP or of Kubernetes resources: keys are strings, values are
//! opaque bytes (already encrypted by the time they get here).

mod sqlite;

pub use sqlite::SqliteStore;

use bytes::Bytes;
use tokio::sync::broadcast;

/// One key at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created this key (since its last deletion).
    pub create_revision: i64,
    /// Revision of the last write to this key.
    pub mod_revision: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// A change, as a watcher sees it. For a delete, `kv.value` is the last value before deletion
/// and `kv.mod_revision` is the revision of the delete itself.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    /// True when this put created the key.
    pub created: bool,
}

/// A condition of a transaction, checked atomically with its operations.
#[derive(Clone, Debug)]
pub enum Compare {
    /// The key's mod revision equals this value; 0 means "the key does not exist".
    ModRevision(String, i64),
}

#[derive(Clone, Debug)]
pub enum Op {
    Put(String, Bytes),
    Delete(String),
}

#[derive(Clone, Debug, Default)]
pub struct Txn {
    pub compare: Vec<Compare>,
    pub success: Vec<Op>,
}

#[derive(Debug)]
pub enum TxnResult {
    /// Every compare held and the operations are durable at this revision.
    Committed { revision: i64 },
    /// A compare failed; nothing was written. Holds the current values of the compared keys.
    Failed { current: Vec<Option<KeyValue>> },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage: the requested revision {requested} has been compacted (oldest is {compacted})")]
    Compacted { requested: i64, compacted: i64 },
    #[error("storage: {0}")]
    Backend(String),
    #[error("storage is closed")]
    Closed,
}

pub type Result<T> = std::result::Result<T, Error>;

/// A page of a range read.
#[derive(Debug, Default)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    /// The store's revision at the time of the read.
    pub revision: i64,
    /// True when more keys follow the last one returned.
    pub more: bool,
}

/// The storage seam. Every write is durable (fsynced, or committed by a quorum) before it returns.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;
    /// Keys with `prefix`, strictly after `start_after` when given, in key order; `limit` 0 means all.
    async fn range(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<RangeResult>;
    async fn txn(&self, txn: Txn) -> Result<TxnResult>;
    /// Events with revision greater than `after`, in order, then every later event as it
    /// happens. Fails with [`Error::Compacted`] when `after` is older than the compaction point.
    async fn watch(&self, after: i64) -> Result<(Vec<Event>, broadcast::Receiver<std::sync::Arc<Vec<Event>>>)>;
    /// Forget the history at and before `revision`.
    async fn compact(&self, revision: i64) -> Result<()>;
    /// The latest committed revision.
    fn revision(&self) -> i64;
    /// The oldest revision still available to `watch`.
    fn compacted_revision(&self) -> i64;
}
