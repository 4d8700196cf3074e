//! The bootstrap ClusterRoles and ClusterRoleBindings every Kubernetes cluster has
//! (plugin/pkg/auth/authorizer/rbac/bootstrappolicy), limited to the kinds and API groups
//! lockbox serves or that clients expect to find. `admin`, `edit` and `view` are aggregated
//! from the `system:aggregate-to-*` roles by the aggregation controller, as in Kubernetes.

use serde_json::{json, Value};

const R: &[&str] = &["get", "list", "watch"];
const W: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const RW: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn urls(urls: &[&str], verbs: &[&str]) -> Value {
    json!({"nonResourceURLs": urls, "verbs": verbs})
}

fn meta(name: &str, labels: Value) -> Value {
    let mut l = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    if let (Some(m), Some(extra)) = (l.as_object_mut(), labels.as_object()) {
        m.extend(extra.clone());
    }
    json!({"name": name, "labels": l, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}})
}

fn role(name: &str, labels: Value, rules: Vec<Value>) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta(name, labels), "rules": rules})
}

fn aggregated(name: &str, labels: Value, selector_label: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta(name, labels),
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {selector_label: "true"}}]},
        "rules": [],
    })
}

pub fn cluster_roles() -> Vec<Value> {
    vec![
        role("cluster-admin", json!({}), vec![rule(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])]),
        role(
            "system:discovery",
            json!({}),
            vec![urls(&["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"], &["get"])],
        ),
        role("system:public-info-viewer", json!({}), vec![urls(&["/healthz", "/livez", "/readyz", "/version", "/version/"], &["get"])]),
        role(
            "system:basic-user",
            json!({}),
            vec![
                rule(&["authorization.k8s.io"], &["selfsubjectaccessreviews", "selfsubjectrulesreviews"], &["create"]),
                rule(&["authentication.k8s.io"], &["selfsubjectreviews"], &["create"]),
            ],
        ),
        role(
            "system:auth-delegator",
            json!({}),
            vec![rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]), rule(&["authorization.k8s.io"], &["subjectaccessreviews"], &["create"])],
        ),
        role("system:service-account-issuer-discovery", json!({}), vec![urls(&["/.well-known/openid-configuration", "/openid/v1/jwks"], &["get"])]),
        aggregated("admin", json!({}), "rbac.authorization.k8s.io/aggregate-to-admin"),
        aggregated("edit", json!({"rbac.authorization.k8s.io/aggregate-to-admin": "true"}), "rbac.authorization.k8s.io/aggregate-to-edit"),
        aggregated("view", json!({"rbac.authorization.k8s.io/aggregate-to-edit": "true"}), "rbac.authorization.k8s.io/aggregate-to-view"),
        role(
            "system:aggregate-to-view",
            json!({"rbac.authorization.k8s.io/aggregate-to-view": "true"}),
            vec![
                rule(
                    &[""],
                    &[
                        "configmaps",
                        "endpoints",
                        "persistentvolumeclaims",
                        "persistentvolumeclaims/status",
                        "pods",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "serviceaccounts",
                        "services",
                        "services/status",
                    ],
                    R,
                ),
                rule(
                    &[""],
                    &[
                        "bindings",
                        "events",
                        "limitranges",
                        "namespaces/status",
                        "pods/log",
                        "pods/status",
                        "replicationcontrollers/status",
                        "resourcequotas",
                        "resourcequotas/status",
                    ],
                    R,
                ),
                rule(&[""], &["namespaces"], R),
                rule(
                    &["apps"],
                    &[
                        "controllerrevisions",
                        "daemonsets",
                        "daemonsets/status",
                        "deployments",
                        "deployments/scale",
                        "deployments/status",
                        "replicasets",
                        "replicasets/scale",
                        "replicasets/status",
                        "statefulsets",
                        "statefulsets/scale",
                        "statefulsets/status",
                    ],
                    R,
                ),
                rule(&["external-secrets.io"], &["externalsecrets", "secretstores", "clustersecretstores", "clusterexternalsecrets"], R),
            ],
        ),
        role(
            "system:aggregate-to-edit",
            json!({"rbac.authorization.k8s.io/aggregate-to-edit": "true"}),
            vec![
                rule(&[""], &["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"], R),
                rule(&[""], &["serviceaccounts"], &["impersonate"]),
                rule(&[""], &["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"], W),
                rule(&[""], &["pods/eviction"], &["create"]),
                rule(
                    &[""],
                    &[
                        "configmaps",
                        "events",
                        "persistentvolumeclaims",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "secrets",
                        "serviceaccounts",
                        "services",
                        "services/proxy",
                    ],
                    W,
                ),
                rule(&[""], &["serviceaccounts/token"], &["create"]),
                rule(
                    &["apps"],
                    &[
                        "daemonsets",
                        "deployments",
                        "deployments/rollback",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/scale",
                        "statefulsets",
                        "statefulsets/scale",
                    ],
                    W,
                ),
                rule(&["coordination.k8s.io"], &["leases"], RW),
                rule(&["external-secrets.io"], &["externalsecrets", "secretstores"], W),
            ],
        ),
        // lockbox's own components, which are API clients like any other and not
        // system:masters: RBAC and the escalation checks apply to them. The controllers need what
        // kube-controller-manager's garbage collector has (every resource, no escalate, bind or
        // impersonate); the node agent what the kubelet's system:node role gave before the Node
        // authorizer: its pods, its Node and Lease, events, and reading what pods consume.
        role("system:lockbox:controller-manager", json!({}), vec![rule(&["*"], &["*"], &["get", "list", "watch", "create", "update", "patch", "delete"])]),
        role(
            "system:node",
            json!({}),
            vec![
                rule(&[""], &["pods"], &["get", "list", "watch", "delete"]),
                rule(&[""], &["pods/status"], &["patch", "update"]),
                rule(&[""], &["nodes"], &["get", "list", "watch", "create", "patch", "update"]),
                rule(&[""], &["nodes/status"], &["patch", "update"]),
                rule(&["coordination.k8s.io"], &["leases"], &["get", "create", "update", "patch"]),
                rule(&[""], &["events"], &["create", "patch", "update"]),
                rule(&[""], &["configmaps", "secrets"], R),
                rule(&[""], &["serviceaccounts"], &["get"]),
                rule(&[""], &["serviceaccounts/token"], &["create"]),
            ],
        ),
        role(
            "system:aggregate-to-admin",
            json!({"rbac.authorization.k8s.io/aggregate-to-admin": "true"}),
            vec![
                rule(&["authorization.k8s.io"], &["localsubjectaccessreviews"], &["create"]),
                rule(&["rbac.authorization.k8s.io"], &["rolebindings", "roles"], RW),
            ],
        ),
    ]
}

fn binding(name: &str, subjects: Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": meta(name, json!({})),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": subjects,
    })
}

fn group(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name})
}

pub fn cluster_role_bindings() -> Vec<Value> {
    vec![
        binding("cluster-admin", json!([group("system:masters")])),
        binding("system:discovery", json!([group("system:authenticated")])),
        binding("system:basic-user", json!([group("system:authenticated")])),
        binding("system:public-info-viewer", json!([group("system:authenticated"), group("system:unauthenticated")])),
        binding("system:service-account-issuer-discovery", json!([group("system:serviceaccounts")])),
        binding(
            "system:lockbox:controller-manager",
            json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:kube-controller-manager"}]),
        ),
        binding("system:node", json!([group("system:nodes")])),
    ]
}
