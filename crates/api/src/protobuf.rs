//! Kubernetes protobuf request bodies, decoded into the JSON form every other layer uses.
//!
//! kubectl's typed commands (`create namespace|configmap|secret|serviceaccount|deployment|role|
//! rolebinding|clusterrole|clusterrolebinding`, `run`, `auth can-i`, `create token`) send
//! `application/vnd.kubernetes.protobuf`: the magic `k8s\0`, then a `runtime.Unknown` whose
//! `raw` holds the object's message. The messages come from the k8s-pb crate; this module maps
//! them to JSON. Go encodes zero values explicitly, so empty strings count as absent.
//!
//! The same decoding reads objects kube-apiserver stored: it writes protobuf to etcd, so a
//! Secret moved from its etcd into lockbox's store (decrypted by the same provider) reads here.

use base64::Engine;
use prost::Message;
use serde_json::{json, Map, Value};

use std::collections::BTreeMap;

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::authentication::v1 as authn;
use k8s_pb::api::authorization::v1 as authz;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::rbac::v1 as rbac;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;

pub const MAGIC: &[u8] = b"k8s\0";
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The JSON form of one k8s-pb message. `None` is "absent". k8s-pb has no serde support, so the
/// mapping is written here, once per message, by `message!` (which destructures every field, so
/// a field added to k8s-pb fails to compile until it is mapped or refused).
trait ToJson {
    fn to_json(&self) -> Result<Option<Value>, String>;
}

/// Scalars are present as they are; `put` decides which zero values mean "absent".
macro_rules! scalar {
    ($($t:ty),*) => {$(
        impl ToJson for $t {
            fn to_json(&self) -> Result<Option<Value>, String> {
                Ok(Some(json!(self)))
            }
        }
    )*};
}
scalar!(String, i32, i64, bool);
impl<T: ToJson> ToJson for Option<T> {
    fn to_json(&self) -> Result<Option<Value>, String> {
        self.as_ref().map_or(Ok(None), T::to_json)
    }
}
impl<T: ToJson> ToJson for Vec<T> {
    fn to_json(&self) -> Result<Option<Value>, String> {
        if self.is_empty() {
            return Ok(None);
        }
        let items = self.iter().map(|v| Ok(v.to_json()?.unwrap_or(Value::Null))).collect::<Result<Vec<_>, String>>()?;
        Ok(Some(Value::Array(items)))
    }
}
impl<T: ToJson> ToJson for BTreeMap<String, T> {
    fn to_json(&self) -> Result<Option<Value>, String> {
        if self.is_empty() {
            return Ok(None);
        }
        let mut out = Map::new();
        for (k, v) in self {
            out.insert(k.clone(), v.to_json()?.unwrap_or(Value::Null));
        }
        Ok(Some(Value::Object(out)))
    }
}
/// `bytes` fields (Secret.data, ConfigMap.binaryData) are raw in protobuf and base64 in JSON.
struct Bytes<'a>(&'a BTreeMap<String, Vec<u8>>);
impl ToJson for Bytes<'_> {
    fn to_json(&self) -> Result<Option<Value>, String> {
        Ok((!self.0.is_empty())
            .then(|| Value::Object(self.0.iter().map(|(k, v)| (k.clone(), json!(base64::engine::general_purpose::STANDARD.encode(v)))).collect())))
    }
}
impl ToJson for Quantity {
    fn to_json(&self) -> Result<Option<Value>, String> {
        self.string.to_json()
    }
}
impl ToJson for IntOrString {
    fn to_json(&self) -> Result<Option<Value>, String> {
        Ok(Some(match self.r#type {
            Some(1) => json!(self.str_val.clone().unwrap_or_default()),
            _ => json!(self.int_val.unwrap_or_default()),
        }))
    }
}
impl ToJson for meta::Time {
    fn to_json(&self) -> Result<Option<Value>, String> {
        let Some(secs) = self.seconds.filter(|s| *s != 0) else { return Ok(None) };
        let ts = jiff::Timestamp::from_second(secs).map_err(decode_err)?;
        Ok(Some(json!(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())))
    }
}

/// Go writes every non-pointer field, zero or not; JSON omits these when zero (`omitempty`), so
/// a zero here means "not set". Pointer fields (`replicas`, `automountServiceAccountToken` …)
/// keep their zero.
const OMIT_ZERO: &[&str] =
    &["generation", "hostPort", "minReadySeconds", "stdin", "stdinOnce", "tty", "readOnly", "hostNetwork", "hostPID", "hostIPC", "paused"];

/// Adds one field to a JSON object: absent and empty values are left out, as Go's `omitempty`
/// does; an `inline` field (an embedded Go struct, like `LocalObjectReference`) is flattened.
fn put(out: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    match value {
        None => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(Value::Bool(false)) if OMIT_ZERO.contains(&key) => {}
        Some(Value::Number(n)) if n.as_i64() == Some(0) && OMIT_ZERO.contains(&key) => {}
        Some(Value::Object(inner)) if key.is_empty() => out.extend(inner),
        Some(v) => {
            out.insert(key.into(), v);
        }
    }
}

fn is_set<T: Default + PartialEq>(v: &T) -> bool {
    *v != T::default()
}

/// `message!(Type { rust_field: "jsonName", … } refused { rust_field: "jsonName", … })` maps a
/// k8s-pb message to JSON. A field under `refused` is one lockbox does not model: a body that
/// sets it is rejected rather than stored without it. A field under `ignored` is dropped
/// (status on create, as the API server does). A JSON name of `""` inlines the field.
macro_rules! message {
    ($ty:path { $($field:ident : $json:literal),* $(,)? } $(refused { $($rfield:ident : $rjson:literal),* $(,)? })? $(ignored { $($ifield:ident),* $(,)? })?) => {
        impl ToJson for $ty {
            fn to_json(&self) -> Result<Option<Value>, String> {
                #[allow(unused_variables)]
                let $ty { $($field,)* $($($rfield,)*)? $($($ifield,)*)? } = self;
                let mut out = Map::new();
                $(put(&mut out, $json, $field.to_json()?);)*
                $($(
                    if is_set($rfield) {
                        return Err(format!("field {} is not supported by lockbox in protobuf; send the object as JSON or YAML", $rjson));
                    }
                )*)?
                Ok(Some(Value::Object(out)))
            }
        }
    };
}

message!(meta::ObjectMeta {
    name: "name", generate_name: "generateName", namespace: "namespace", uid: "uid", resource_version: "resourceVersion",
    generation: "generation", creation_timestamp: "creationTimestamp", deletion_timestamp: "deletionTimestamp",
    deletion_grace_period_seconds: "deletionGracePeriodSeconds", labels: "labels", annotations: "annotations",
    owner_references: "ownerReferences", finalizers: "finalizers", managed_fields: "managedFields"
} ignored { self_link });
message!(meta::ManagedFieldsEntry {
    manager: "manager",
    operation: "operation",
    api_version: "apiVersion",
    time: "time",
    fields_type: "fieldsType",
    fields_v1: "fieldsV1",
    subresource: "subresource"
});
/// FieldsV1 holds its JSON as raw bytes.
impl ToJson for meta::FieldsV1 {
    fn to_json(&self) -> Result<Option<Value>, String> {
        let raw = self.raw.as_deref().unwrap_or_default();
        if raw.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(raw).map(Some).map_err(|e| decode_err(format!("fieldsV1: {e}")))
    }
}
message!(meta::OwnerReference {
    api_version: "apiVersion",
    kind: "kind",
    name: "name",
    uid: "uid",
    controller: "controller",
    block_owner_deletion: "blockOwnerDeletion"
});
message!(meta::LabelSelector { match_labels: "matchLabels", match_expressions: "matchExpressions" });
message!(meta::LabelSelectorRequirement { key: "key", operator: "operator", values: "values" });

message!(core::Namespace { metadata: "metadata", spec: "spec" } ignored { status });
message!(core::NamespaceSpec { finalizers: "finalizers" });
message!(core::ConfigMap { metadata: "metadata", data: "data", immutable: "immutable" } ignored { binary_data });
message!(core::ServiceAccount {
    metadata: "metadata",
    secrets: "secrets",
    image_pull_secrets: "imagePullSecrets",
    automount_service_account_token: "automountServiceAccountToken"
});
message!(core::ObjectReference {
    kind: "kind",
    namespace: "namespace",
    name: "name",
    uid: "uid",
    api_version: "apiVersion",
    resource_version: "resourceVersion",
    field_path: "fieldPath"
});
message!(core::LocalObjectReference { name: "name" });
message!(core::Pod { metadata: "metadata", spec: "spec" } ignored { status });
message!(core::PodTemplateSpec { metadata: "metadata", spec: "spec" });
message!(core::PodSpec {
    volumes: "volumes", init_containers: "initContainers", containers: "containers", restart_policy: "restartPolicy",
    termination_grace_period_seconds: "terminationGracePeriodSeconds", active_deadline_seconds: "activeDeadlineSeconds",
    dns_policy: "dnsPolicy", node_selector: "nodeSelector", service_account_name: "serviceAccountName",
    service_account: "serviceAccount", automount_service_account_token: "automountServiceAccountToken",
    node_name: "nodeName", host_network: "hostNetwork", host_pid: "hostPID", host_ipc: "hostIPC",
    share_process_namespace: "shareProcessNamespace", image_pull_secrets: "imagePullSecrets", hostname: "hostname",
    subdomain: "subdomain", scheduler_name: "schedulerName", tolerations: "tolerations",
    priority_class_name: "priorityClassName", priority: "priority", runtime_class_name: "runtimeClassName",
    enable_service_links: "enableServiceLinks", preemption_policy: "preemptionPolicy",
    set_hostname_as_fqdn: "setHostnameAsFQDN", host_users: "hostUsers"
} refused {
    ephemeral_containers: "spec.ephemeralContainers", security_context: "spec.securityContext", affinity: "spec.affinity",
    host_aliases: "spec.hostAliases", dns_config: "spec.dnsConfig", readiness_gates: "spec.readinessGates",
    overhead: "spec.overhead", topology_spread_constraints: "spec.topologySpreadConstraints", os: "spec.os",
    scheduling_gates: "spec.schedulingGates", resource_claims: "spec.resourceClaims", resources: "spec.resources",
    hostname_override: "spec.hostnameOverride", workload_ref: "spec.workloadRef"
});
message!(core::Toleration { key: "key", operator: "operator", value: "value", effect: "effect", toleration_seconds: "tolerationSeconds" });
message!(core::Container {
    name: "name", image: "image", command: "command", args: "args", working_dir: "workingDir", ports: "ports",
    env_from: "envFrom", env: "env", resources: "resources", restart_policy: "restartPolicy",
    volume_mounts: "volumeMounts", termination_message_path: "terminationMessagePath",
    termination_message_policy: "terminationMessagePolicy", image_pull_policy: "imagePullPolicy", stdin: "stdin",
    stdin_once: "stdinOnce", tty: "tty"
} refused {
    resize_policy: "resizePolicy", restart_policy_rules: "restartPolicyRules", volume_devices: "volumeDevices",
    liveness_probe: "livenessProbe", readiness_probe: "readinessProbe", startup_probe: "startupProbe",
    lifecycle: "lifecycle", security_context: "securityContext"
});
message!(core::ContainerPort { name: "name", host_port: "hostPort", container_port: "containerPort", protocol: "protocol", host_ip: "hostIP" });
message!(core::ResourceRequirements { limits: "limits", requests: "requests" } refused { claims: "resources.claims" });
message!(core::VolumeMount {
    name: "name",
    read_only: "readOnly",
    recursive_read_only: "recursiveReadOnly",
    mount_path: "mountPath",
    sub_path: "subPath",
    mount_propagation: "mountPropagation",
    sub_path_expr: "subPathExpr"
});
message!(core::EnvVar { name: "name", value: "value", value_from: "valueFrom" });
message!(core::EnvVarSource {
    field_ref: "fieldRef", resource_field_ref: "resourceFieldRef", config_map_key_ref: "configMapKeyRef",
    secret_key_ref: "secretKeyRef"
} refused { file_key_ref: "fileKeyRef" });
message!(core::EnvFromSource { prefix: "prefix", config_map_ref: "configMapRef", secret_ref: "secretRef" });
message!(core::ConfigMapEnvSource { local_object_reference: "", optional: "optional" });
message!(core::SecretEnvSource { local_object_reference: "", optional: "optional" });
message!(core::ConfigMapKeySelector { local_object_reference: "", key: "key", optional: "optional" });
message!(core::SecretKeySelector { local_object_reference: "", key: "key", optional: "optional" });
message!(core::ObjectFieldSelector { api_version: "apiVersion", field_path: "fieldPath" });
message!(core::ResourceFieldSelector { container_name: "containerName", resource: "resource", divisor: "divisor" });
message!(core::Volume { name: "name", volume_source: "" });
message!(core::VolumeSource {
    host_path: "hostPath", empty_dir: "emptyDir", secret: "secret", downward_api: "downwardAPI",
    config_map: "configMap", projected: "projected"
} refused {
    gce_persistent_disk: "gcePersistentDisk", aws_elastic_block_store: "awsElasticBlockStore", git_repo: "gitRepo",
    nfs: "nfs", iscsi: "iscsi", glusterfs: "glusterfs", persistent_volume_claim: "persistentVolumeClaim", rbd: "rbd",
    flex_volume: "flexVolume", cinder: "cinder", cephfs: "cephfs", flocker: "flocker", fc: "fc",
    azure_file: "azureFile", vsphere_volume: "vsphereVolume", quobyte: "quobyte", azure_disk: "azureDisk",
    photon_persistent_disk: "photonPersistentDisk", portworx_volume: "portworxVolume", scale_io: "scaleIO",
    storageos: "storageos", csi: "csi", ephemeral: "ephemeral", image: "image"
});
message!(core::HostPathVolumeSource { path: "path", r#type: "type" });
message!(core::EmptyDirVolumeSource { medium: "medium", size_limit: "sizeLimit" });
message!(core::KeyToPath { key: "key", path: "path", mode: "mode" });
message!(core::ConfigMapVolumeSource { local_object_reference: "", items: "items", default_mode: "defaultMode", optional: "optional" });
message!(core::SecretVolumeSource { secret_name: "secretName", items: "items", default_mode: "defaultMode", optional: "optional" });
message!(core::DownwardAPIVolumeSource { items: "items", default_mode: "defaultMode" });
message!(core::DownwardAPIVolumeFile { path: "path", field_ref: "fieldRef", resource_field_ref: "resourceFieldRef", mode: "mode" });
message!(core::ProjectedVolumeSource { sources: "sources", default_mode: "defaultMode" });
message!(core::VolumeProjection {
    secret: "secret", downward_api: "downwardAPI", config_map: "configMap", service_account_token: "serviceAccountToken"
} refused { cluster_trust_bundle: "clusterTrustBundle", pod_certificate: "podCertificate" });
message!(core::SecretProjection { local_object_reference: "", items: "items", optional: "optional" });
message!(core::ConfigMapProjection { local_object_reference: "", items: "items", optional: "optional" });
message!(core::DownwardAPIProjection { items: "items" });
message!(core::ServiceAccountTokenProjection { audience: "audience", expiration_seconds: "expirationSeconds", path: "path" });

message!(apps::Deployment { metadata: "metadata", spec: "spec" } ignored { status });
message!(apps::DeploymentSpec {
    replicas: "replicas",
    selector: "selector",
    template: "template",
    strategy: "strategy",
    min_ready_seconds: "minReadySeconds",
    revision_history_limit: "revisionHistoryLimit",
    paused: "paused",
    progress_deadline_seconds: "progressDeadlineSeconds"
});
message!(apps::DeploymentStrategy { r#type: "type", rolling_update: "rollingUpdate" });
message!(apps::RollingUpdateDeployment { max_unavailable: "maxUnavailable", max_surge: "maxSurge" });
message!(apps::ReplicaSet { metadata: "metadata", spec: "spec" } ignored { status });
message!(apps::ReplicaSetSpec { replicas: "replicas", min_ready_seconds: "minReadySeconds", selector: "selector", template: "template" });

message!(rbac::Role { metadata: "metadata", rules: "rules" });
message!(rbac::ClusterRole { metadata: "metadata", rules: "rules", aggregation_rule: "aggregationRule" });
message!(rbac::AggregationRule { cluster_role_selectors: "clusterRoleSelectors" });
message!(rbac::PolicyRule {
    verbs: "verbs",
    api_groups: "apiGroups",
    resources: "resources",
    resource_names: "resourceNames",
    non_resource_ur_ls: "nonResourceURLs"
});
message!(rbac::RoleBinding { metadata: "metadata", subjects: "subjects", role_ref: "roleRef" });
message!(rbac::ClusterRoleBinding { metadata: "metadata", subjects: "subjects", role_ref: "roleRef" });
message!(rbac::Subject { kind: "kind", api_group: "apiGroup", name: "name", namespace: "namespace" });
message!(rbac::RoleRef { api_group: "apiGroup", kind: "kind", name: "name" });

message!(authz::SelfSubjectAccessReview { metadata: "metadata", spec: "spec" } ignored { status });
message!(authz::SelfSubjectAccessReviewSpec { resource_attributes: "resourceAttributes", non_resource_attributes: "nonResourceAttributes" });
message!(authz::ResourceAttributes {
    namespace: "namespace", verb: "verb", group: "group", version: "version", resource: "resource",
    subresource: "subresource", name: "name"
} refused { field_selector: "fieldSelector", label_selector: "labelSelector" });
message!(authz::NonResourceAttributes { path: "path", verb: "verb" });
message!(authz::SelfSubjectRulesReview { metadata: "metadata", spec: "spec" } ignored { status });
message!(authz::SelfSubjectRulesReviewSpec { namespace: "namespace" });
message!(authn::TokenRequest { metadata: "metadata", spec: "spec" } ignored { status });
message!(authn::TokenRequestSpec { audiences: "audiences", expiration_seconds: "expirationSeconds", bound_object_ref: "boundObjectRef" });
message!(authn::BoundObjectReference { kind: "kind", api_version: "apiVersion", name: "name", u_id: "uid" });
message!(authn::SelfSubjectReview { metadata: "metadata" } ignored { status });

/// Secret by hand: `data` is bytes, and `type` is `r#type`.
impl ToJson for core::Secret {
    fn to_json(&self) -> Result<Option<Value>, String> {
        let core::Secret { metadata, immutable, data, string_data, r#type } = self;
        let mut out = Map::new();
        put(&mut out, "metadata", metadata.to_json()?);
        put(&mut out, "immutable", immutable.to_json()?);
        put(&mut out, "data", Bytes(data).to_json()?);
        put(&mut out, "stringData", string_data.to_json()?);
        put(&mut out, "type", r#type.to_json()?);
        Ok(Some(Value::Object(out)))
    }
}

fn decode_err(e: impl std::fmt::Display) -> String {
    format!("unable to decode protobuf body: {e}")
}

fn convert<M: Message + Default + ToJson>(raw: &[u8]) -> Result<Value, String> {
    let msg = M::decode(raw).map_err(decode_err)?;
    Ok(msg.to_json()?.unwrap_or_else(|| json!({})))
}

/// Decodes an enveloped protobuf body into its JSON object, apiVersion and kind included.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body.strip_prefix(MAGIC).ok_or_else(|| "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]".to_string())?;
    let unknown = Unknown::decode(rest).map_err(decode_err)?;
    let tm = unknown.type_meta.unwrap_or_default();
    let api_version = tm.api_version.unwrap_or_default();
    let kind = tm.kind.unwrap_or_default();
    let raw = unknown.raw.unwrap_or_default();
    let raw = raw.as_slice();
    let mut obj = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => convert::<core::Namespace>(raw)?,
        ("v1", "ConfigMap") => {
            // binaryData is bytes, like Secret.data; the macro maps the rest.
            let cm = core::ConfigMap::decode(raw).map_err(decode_err)?;
            let mut o = cm.to_json()?.unwrap_or_else(|| json!({}));
            if let Some(b) = Bytes(&cm.binary_data).to_json()? {
                o["binaryData"] = b;
            }
            o
        }
        ("v1", "Secret") => convert::<core::Secret>(raw)?,
        ("v1", "ServiceAccount") => convert::<core::ServiceAccount>(raw)?,
        ("v1", "Pod") => convert::<core::Pod>(raw)?,
        ("apps/v1", "Deployment") => convert::<apps::Deployment>(raw)?,
        ("apps/v1", "ReplicaSet") => convert::<apps::ReplicaSet>(raw)?,
        ("rbac.authorization.k8s.io/v1", "Role") => convert::<rbac::Role>(raw)?,
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => convert::<rbac::ClusterRole>(raw)?,
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => convert::<rbac::RoleBinding>(raw)?,
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => convert::<rbac::ClusterRoleBinding>(raw)?,
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => convert::<authz::SelfSubjectAccessReview>(raw)?,
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => convert::<authz::SelfSubjectRulesReview>(raw)?,
        ("authentication.k8s.io/v1", "TokenRequest") => convert::<authn::TokenRequest>(raw)?,
        ("authentication.k8s.io/v1", "SelfSubjectReview") => convert::<authn::SelfSubjectReview>(raw)?,
        _ => return Err(format!("no kind \"{kind}\" is registered for version \"{api_version}\" in scheme \"protobuf\"")),
    };
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    // Bodies captured from kubectl 1.32 (reference/kubectl-wire.md §2).
    #[test]
    fn kubectl_review_and_token_bodies() {
        let ssar = decode(&unhex("6b3873000a320a17617574686f72697a6174696f6e2e6b38732e696f2f7631121753656c665375626a65637441636365737352657669657712440a100a0012001a0022002a0032003800420012260a240a0c61692d696e666572656e636512036765741a0022002a077365637265747332003a001a08080012001a0020001a002200")).unwrap();
        assert_eq!(ssar["spec"], json!({"resourceAttributes": {"namespace": "ai-inference", "verb": "get", "resource": "secrets"}}));
        let tr = decode(&unhex("6b3873000a280a1861757468656e7469636174696f6e2e6b38732e696f2f7631120c546f6b656e52657175657374121a0a100a0012001a0022002a0032003800420012001a040a0012001a002200")).unwrap();
        assert_eq!(tr["kind"], "TokenRequest");
        assert_eq!(tr["spec"], json!({}));
    }

    #[test]
    fn kubectl_create_bodies() {
        let ns =
            decode(&unhex("6b3873000a0f0a02763112094e616d65737061636512240a1c0a0c61692d696e666572656e636512001a0022002a0032003800420012001a020a001a002200"))
                .unwrap();
        assert_eq!(ns, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ai-inference"}, "spec": {}}));
        let cm = decode(&unhex("6b3873000a0f0a0276311209436f6e6669674d617012570a2c0a10696e666572656e63652d706172616d7312001a0c61692d696e666572656e636522002a0032003800420012110a094c4f475f4c4556454c1204696e666f12140a0e4d41585f42415443485f53495a45120233321a002200")).unwrap();
        assert_eq!(cm["data"], json!({"LOG_LEVEL": "info", "MAX_BATCH_SIZE": "32"}));
        assert_eq!(cm["metadata"]["namespace"], "ai-inference");
        let s = decode(&unhex("6b3873000a0c0a027631120653656372657412440a2a0a0e68662d63726564656e7469616c7312001a0c61692d696e666572656e636522002a0032003800420012140a0868665f746f6b656e120868665f78787878781a001a002200")).unwrap();
        assert_eq!(s["data"]["hf_token"], base64::engine::general_purpose::STANDARD.encode("hf_xxxxx"));
        assert!(s.get("type").is_none());
    }

    fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let unknown = Unknown {
            type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta { api_version: Some(api_version.into()), kind: Some(kind.into()) }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        [MAGIC, &unknown.encode_to_vec()].concat()
    }

    // What `kubectl create deployment web --image=busybox --replicas=0 -- sleep 1` sends: Go's
    // explicit zero values (empty strings, minReadySeconds 0, empty strategy) and a pointer zero
    // (replicas) that must survive.
    #[test]
    fn deployment_keeps_pointer_zeros_and_drops_go_zero_values() {
        let container = core::Container {
            name: Some("busybox".into()),
            image: Some("busybox".into()),
            command: vec!["sleep".into(), "1".into()],
            working_dir: Some(String::new()),
            resources: Some(Default::default()),
            stdin: Some(false),
            tty: Some(false),
            ..Default::default()
        };
        let d = apps::Deployment {
            metadata: Some(meta::ObjectMeta {
                name: Some("web".into()),
                namespace: Some(String::new()),
                generation: Some(0),
                labels: [("app".to_string(), "web".to_string())].into(),
                ..Default::default()
            }),
            spec: Some(apps::DeploymentSpec {
                replicas: Some(0),
                selector: Some(meta::LabelSelector { match_labels: [("app".to_string(), "web".to_string())].into(), ..Default::default() }),
                template: Some(core::PodTemplateSpec {
                    metadata: Some(meta::ObjectMeta { labels: [("app".to_string(), "web".to_string())].into(), ..Default::default() }),
                    spec: Some(core::PodSpec { containers: vec![container], ..Default::default() }),
                }),
                strategy: Some(Default::default()),
                min_ready_seconds: Some(0),
                ..Default::default()
            }),
            status: Some(apps::DeploymentStatus { replicas: Some(3), ..Default::default() }),
        };
        let v = decode(&envelope("apps/v1", "Deployment", d.encode_to_vec())).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}}, "spec": {
                "replicas": 0, "selector": {"matchLabels": {"app": "web"}}, "strategy": {},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "busybox", "image": "busybox", "command": ["sleep", "1"], "resources": {}}]}}
            }})
        );
    }

    // `kubectl create role` puts the core group as "" inside apiGroups: an empty string in a
    // list is a value, not an absence.
    #[test]
    fn role_keeps_the_core_group() {
        let role = rbac::Role {
            metadata: Some(meta::ObjectMeta { name: Some("r".into()), ..Default::default() }),
            rules: vec![rbac::PolicyRule {
                verbs: vec!["get".into()],
                api_groups: vec!["".into()],
                resources: vec!["secrets".into()],
                resource_names: vec!["a".into()],
                non_resource_ur_ls: vec![],
            }],
        };
        let v = decode(&envelope("rbac.authorization.k8s.io/v1", "Role", role.encode_to_vec())).unwrap();
        assert_eq!(v["rules"], json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["a"]}]));
    }

    // A field lockbox does not model is refused, never silently dropped.
    #[test]
    fn unmodelled_fields_are_refused() {
        let pod = core::Pod { spec: Some(core::PodSpec { affinity: Some(Default::default()), ..Default::default() }), ..Default::default() };
        let err = decode(&envelope("v1", "Pod", pod.encode_to_vec())).unwrap_err();
        assert!(err.contains("spec.affinity"), "{err}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode(b"k8s\0\xff\xff\xff").is_err());
        assert!(decode(b"nope").is_err());
        assert!(decode(b"k8s\0").unwrap_err().contains("no kind"));
    }
}
