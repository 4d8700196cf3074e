//! External-secrets metrics, with the External Secrets Operator's names so its dashboards
//! work: per ExternalSecret `externalsecret_sync_calls_total`, `externalsecret_sync_calls_error`,
//! `externalsecret_status_condition` and `externalsecret_reconcile_duration`; ESO has no per-store
//! or per-provider sync counter, so `secretstore_sync_calls` (by store kind, namespace, name and
//! outcome) and `externalsecret_provider_syncs` (by provider and outcome) are lockbox's own. The
//! API server registers these families and serves them on `/metrics`.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EsLabels {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    pub namespace: String,
    pub name: String,
    pub condition: &'static str,
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: &'static str,
    pub status: &'static str,
}

#[derive(Default)]
pub struct Metrics {
    pub sync_calls: Family<EsLabels, Counter>,
    pub sync_errors: Family<EsLabels, Counter>,
    pub condition: Family<ConditionLabels, Gauge>,
    pub reconcile_ms: Family<EsLabels, Gauge>,
    pub store_calls: Family<StoreLabels, Counter>,
    pub provider_calls: Family<ProviderLabels, Counter>,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

const fn outcome(ok: bool) -> &'static str {
    if ok {
        "success"
    } else {
        "error"
    }
}

/// Records one sync of an ExternalSecret through a store.
pub fn sync(namespace: &str, name: &str, store: Option<(&str, &str, &str)>, provider: Option<&'static str>, took: Duration, ok: bool) {
    let es = EsLabels { namespace: namespace.into(), name: name.into() };
    let m = &*METRICS;
    m.sync_calls.get_or_create(&es).inc();
    if !ok {
        m.sync_errors.get_or_create(&es).inc();
    }
    m.reconcile_ms.get_or_create(&es).set(took.as_millis() as i64);
    // Ready is either True or False: exactly one of the two series is 1, as in ESO.
    for (status, value) in [("True", ok), ("False", !ok)] {
        m.condition.get_or_create(&ConditionLabels { namespace: namespace.into(), name: name.into(), condition: "Ready", status }).set(value as i64);
    }
    if let Some((kind, ns, store_name)) = store {
        m.store_calls.get_or_create(&StoreLabels { kind: kind.into(), namespace: ns.into(), name: store_name.into(), status: outcome(ok) }).inc();
    }
    if let Some(provider) = provider {
        m.provider_calls.get_or_create(&ProviderLabels { provider, status: outcome(ok) }).inc();
    }
}

/// Drops the series of an ExternalSecret that no longer exists.
pub fn forget(namespace: &str, name: &str) {
    let es = EsLabels { namespace: namespace.into(), name: name.into() };
    let m = &*METRICS;
    m.sync_calls.remove(&es);
    m.sync_errors.remove(&es);
    m.reconcile_ms.remove(&es);
    for status in ["True", "False"] {
        m.condition.remove(&ConditionLabels { namespace: namespace.into(), name: name.into(), condition: "Ready", status });
    }
}

/// Registers the families with the server's registry.
pub fn register(registry: &mut Registry) {
    let m = &*METRICS;
    registry.register("externalsecret_sync_calls", "Total number of ExternalSecret syncs", m.sync_calls.clone());
    registry.register("externalsecret_sync_calls_error", "Total number of failed ExternalSecret syncs", m.sync_errors.clone());
    registry.register("externalsecret_status_condition", "The status condition of an ExternalSecret", m.condition.clone());
    registry.register("externalsecret_reconcile_duration", "How long the last sync of an ExternalSecret took, in milliseconds", m.reconcile_ms.clone());
    registry.register("secretstore_sync_calls", "Syncs through a SecretStore or ClusterSecretStore, by outcome", m.store_calls.clone());
    registry.register("externalsecret_provider_syncs", "Syncs against each provider, by outcome", m.provider_calls.clone());
}
