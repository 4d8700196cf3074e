//! Encryption metrics, with kube-apiserver's names, labels and label values:
//! `apiserver_storage_transformation_operations_total` and `_duration_seconds` per direction,
//! provider prefix and status (`OK`, or `unknown-non-grpc` for a failure that is not a gRPC
//! status, as value/metrics.go), `apiserver_envelope_encryption_kms_operations_latency_seconds`
//! per KMS provider, method and gRPC status code, and the automatic reload counters and
//! timestamps. The server registers these families at start.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransformLabels {
    pub transformation_type: &'static str,
    pub transformer_prefix: String,
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    pub transformation_type: &'static str,
    pub transformer_prefix: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KmsLabels {
    pub provider_name: String,
    pub method_name: &'static str,
    pub grpc_status_code: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    pub transformations: Family<TransformLabels, Counter>,
    pub durations: Histograms<DurationLabels>,
    pub kms_calls: Histograms<KmsLabels>,
    /// The same calls, counted, for in-process readers (the benchmark); not exported.
    pub kms_call_counts: Family<KmsLabels, Counter>,
    pub reloads: Family<ReloadLabels, Counter>,
    pub reload_times: Family<ReloadLabels, Gauge>,
}

/// kube-apiserver's buckets: transformations 5 µs × 2ⁿ (15), KMS calls 5 ms × 2ⁿ (14).
fn transformation_histogram() -> Histogram {
    Histogram::new(exponential_buckets(5e-6, 2.0, 15))
}

fn kms_histogram() -> Histogram {
    Histogram::new(exponential_buckets(5e-3, 2.0, 14))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub status: &'static str,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    transformations: Family::default(),
    durations: Family::new_with_constructor(transformation_histogram),
    kms_calls: Family::new_with_constructor(kms_histogram),
    kms_call_counts: Family::default(),
    reloads: Family::default(),
    reload_times: Family::default(),
});

/// One transformation: its direction (`to_storage`, `from_storage`), the prefix of the
/// provider that did it (empty: identity), how long it took and whether it worked.
pub fn transformation(kind: &'static str, prefix: &[u8], elapsed: std::time::Duration, ok: bool) {
    let prefix = String::from_utf8_lossy(prefix).into_owned();
    let status = if ok { "OK" } else { "unknown-non-grpc" };
    METRICS.transformations.get_or_create(&TransformLabels { transformation_type: kind, transformer_prefix: prefix.clone(), status }).inc();
    METRICS.durations.get_or_create(&DurationLabels { transformation_type: kind, transformer_prefix: prefix }).observe(elapsed.as_secs_f64());
}

/// One call to a KMS plugin; `code` is the gRPC status code's name (`OK`, `Unavailable`, …).
pub fn kms_call(provider: &str, method: &'static str, code: &str, elapsed: std::time::Duration) {
    let labels = KmsLabels { provider_name: provider.to_string(), method_name: method, grpc_status_code: code.to_string() };
    METRICS.kms_calls.get_or_create(&labels).observe(elapsed.as_secs_f64());
    METRICS.kms_call_counts.get_or_create(&labels).inc();
}

/// A reload of the encryption configuration, and when it happened.
pub fn reload(ok: bool) {
    let labels = ReloadLabels { status: if ok { "success" } else { "failure" } };
    METRICS.reloads.get_or_create(&labels).inc();
    METRICS
        .reload_times
        .get_or_create(&labels)
        .set(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0));
}

/// Registers the families with the server's registry.
pub fn register(registry: &mut Registry) {
    registry.register(
        "apiserver_storage_transformation_operations",
        "Total number of transformations. Successful transformation will have a status 'OK' and a varied status string when the transformation fails.",
        METRICS.transformations.clone(),
    );
    registry.register(
        "apiserver_storage_transformation_duration_seconds",
        "Latencies in seconds of value transformation operations.",
        METRICS.durations.clone(),
    );
    registry.register(
        "apiserver_envelope_encryption_kms_operations_latency_seconds",
        "KMS operation duration with gRPC error code status total.",
        METRICS.kms_calls.clone(),
    );
    registry.register(
        "apiserver_encryption_config_controller_automatic_reloads",
        "Total number of reload successes and failures of encryption configuration split by apiserver identity.",
        METRICS.reloads.clone(),
    );
    registry.register(
        "apiserver_encryption_config_controller_automatic_reload_last_timestamp_seconds",
        "Timestamp of the last successful or failed automatic reload of encryption configuration split by apiserver identity.",
        METRICS.reload_times.clone(),
    );
}
