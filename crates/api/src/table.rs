//! `meta.k8s.io/v1` Table output: the columns `kubectl get` prints.
//!
//! kubectl asks for `as=Table` and prints the server's column names and cells verbatim, so the
//! columns here are kube-apiserver's (pkg/printers/internalversion). Each row carries the
//! object's metadata as PartialObjectMetadata, from which kubectl takes the NAMESPACE column.

use serde_json::{json, Value};

use crate::resource::Resource;

pub use crate::resource::{Column, DEFAULT_COLUMNS};
use crate::resource::{AGE_COLUMN as AGE, AGE_DESC, NAME_COLUMN as NAME, NAME_DESC};

pub static CONFIGMAP_COLUMNS: [Column; 3] = [
    NAME,
    Column { name: "Data", kind: "string", format: "", description: "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.", priority: 0 },
    AGE,
];

pub static SECRET_COLUMNS: [Column; 4] = [
    NAME,
    Column { name: "Type", kind: "string", format: "", description: "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types", priority: 0 },
    Column { name: "Data", kind: "string", format: "", description: "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4", priority: 0 },
    AGE,
];

pub static NAMESPACE_COLUMNS: [Column; 3] =
    [NAME, Column { name: "Status", kind: "string", format: "", description: "The status of the namespace", priority: 0 }, AGE];

pub static SERVICEACCOUNT_COLUMNS: [Column; 3] = [
    NAME,
    Column {
        name: "Secrets",
        kind: "string",
        format: "",
        description: "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
        priority: 0,
    },
    AGE,
];

pub static ROLE_COLUMNS: [Column; 2] = [NAME, Column { name: "Created At", kind: "date", format: "", description: AGE_DESC, priority: 0 }];

pub static BINDING_COLUMNS: [Column; 6] = [
    NAME,
    Column {
        name: "Role",
        kind: "string",
        format: "",
        description: "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
        priority: 0,
    },
    AGE,
    Column { name: "Users", kind: "string", format: "", description: "Users in the binding", priority: 1 },
    Column { name: "Groups", kind: "string", format: "", description: "Groups in the binding", priority: 1 },
    Column { name: "ServiceAccounts", kind: "string", format: "", description: "ServiceAccounts in the binding", priority: 1 },
];

const fn col(name: &'static str, priority: u32) -> Column {
    Column { name, kind: "string", format: "", description: "", priority }
}

pub static DEPLOYMENT_COLUMNS: [Column; 8] = [
    NAME,
    col("Ready", 0),
    Column {
        name: "Up-to-date",
        kind: "integer",
        format: "",
        description: "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
        priority: 0,
    },
    Column {
        name: "Available",
        kind: "integer",
        format: "",
        description: "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
        priority: 0,
    },
    AGE,
    col("Containers", 1),
    col("Images", 1),
    col("Selector", 1),
];

pub static REPLICASET_COLUMNS: [Column; 8] = [
    NAME,
    Column { name: "Desired", kind: "integer", format: "", description: "Replicas is the number of desired replicas.", priority: 0 },
    Column { name: "Current", kind: "integer", format: "", description: "Replicas is the most recently observed number of replicas.", priority: 0 },
    Column { name: "Ready", kind: "integer", format: "", description: "The number of ready replicas for this replica set.", priority: 0 },
    AGE,
    col("Containers", 1),
    col("Images", 1),
    col("Selector", 1),
];

pub static POD_COLUMNS: [Column; 9] = [
    NAME,
    col("Ready", 0),
    col("Status", 0),
    Column { name: "Restarts", kind: "string", format: "", description: "The number of times the containers in this pod have been restarted.", priority: 0 },
    AGE,
    col("IP", 1),
    col("Node", 1),
    col("Nominated Node", 1),
    col("Readiness Gates", 1),
];

pub static EVENT_COLUMNS: [Column; 10] = [
    col("Last Seen", 0),
    col("Type", 0),
    col("Reason", 0),
    col("Object", 0),
    col("Subobject", 1),
    col("Source", 1),
    col("Message", 0),
    col("First Seen", 1),
    col("Count", 1),
    Column { name: "Name", kind: "string", format: "name", description: NAME_DESC, priority: 1 },
];

pub static NODE_COLUMNS: [Column; 10] = [
    NAME,
    col("Status", 0),
    col("Roles", 0),
    AGE,
    col("Version", 0),
    col("Internal-IP", 1),
    col("External-IP", 1),
    col("OS-Image", 1),
    col("Kernel-Version", 1),
    col("Container-Runtime", 1),
];

pub static LEASE_COLUMNS: [Column; 3] = [NAME, col("Holder", 0), AGE];

pub static STORE_COLUMNS: [Column; 5] = [NAME, AGE, col("Status", 0), col("Capabilities", 0), col("Ready", 0)];

pub static EXTERNALSECRET_COLUMNS: [Column; 5] = [NAME, col("Store", 0), col("Refresh Interval", 0), col("Status", 0), col("Ready", 0)];

fn partial_metadata(obj: &Value) -> Value {
    // Copies every metadata field but managedFields (the largest), rather than all then removing.
    let meta: serde_json::Map<String, Value> =
        obj["metadata"].as_object().into_iter().flatten().filter(|(k, _)| *k != "managedFields").map(|(k, v)| (k.clone(), v.clone())).collect();
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta})
}

/// A Table of `objects`; `include_object` is the `includeObject` parameter (Metadata by default).
pub fn table<'a>(resource: &Resource, objects: impl IntoIterator<Item = &'a Value>, list_meta: Value, include_object: &str) -> Value {
    let columns: Vec<Value> = resource
        .strategy
        .columns()
        .iter()
        .map(|c| json!({"name": c.name, "type": c.kind, "format": c.format, "description": c.description, "priority": c.priority}))
        .collect();
    let rows: Vec<Value> = objects
        .into_iter()
        .map(|o| {
            let object = match include_object {
                "None" => Value::Null,
                "Object" => o.clone(),
                _ => partial_metadata(o),
            };
            let mut row = json!({"cells": resource.strategy.cells(o)});
            if !object.is_null() {
                row["object"] = object;
            }
            row
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "columnDefinitions": columns, "rows": rows})
}
