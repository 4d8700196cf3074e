//! Encryption metrics, with kube-apiserver's names where an equivalent exists:
//! `apiserver_storage_transformation_operations_total` per provider prefix and outcome, and the
//! KMS plugin calls by provider and method. The server registers these families at start.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransformLabels {
    pub transformation_type: &'static str,
    pub transformer_prefix: String,
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KmsLabels {
    pub provider_name: String,
    pub method_name: &'static str,
    pub status: &'static str,
}

pub struct Metrics {
    pub transformations: Family<TransformLabels, Counter>,
    pub kms_calls: Family<KmsLabels, Counter>,
    pub reloads: Family<ReloadLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub status: &'static str,
}

pub static METRICS: LazyLock<Metrics> =
    LazyLock::new(|| Metrics { transformations: Family::default(), kms_calls: Family::default(), reloads: Family::default() });

pub fn transformation(kind: &'static str, prefix: &[u8], ok: bool) {
    let prefix = if prefix.is_empty() { "identity".to_string() } else { String::from_utf8_lossy(prefix).into_owned() };
    METRICS
        .transformations
        .get_or_create(&TransformLabels { transformation_type: kind, transformer_prefix: prefix, status: if ok { "OK" } else { "Error" } })
        .inc();
}

pub fn kms_call(provider: &str, method: &'static str, ok: bool) {
    METRICS.kms_calls.get_or_create(&KmsLabels { provider_name: provider.to_string(), method_name: method, status: if ok { "OK" } else { "Error" } }).inc();
}

/// Registers the families with the server's registry.
pub fn register(registry: &mut Registry) {
    registry.register(
        "apiserver_storage_transformation_operations",
        "Total number of transformations (encryption and decryption) by prefix and status",
        METRICS.transformations.clone(),
    );
    registry.register("apiserver_envelope_encryption_kms_operations", "KMS v2 plugin calls by provider, gRPC method and outcome", METRICS.kms_calls.clone());
    registry.register(
        "apiserver_encryption_config_controller_automatic_reloads",
        "Reloads of the encryption configuration by outcome",
        METRICS.reloads.clone(),
    );
}
