//! OpenAPI documents: v3 as JSON (kubectl 1.29+ for `apply` and `explain`) and v2 as gnostic
//! protobuf (kubectl 1.27 and 1.28 for `apply`).
//!
//! The schemas are generated from k8s-openapi's types through schemars, so they are the real
//! Kubernetes schemas, named as Kubernetes names them (`io.k8s.api.core.v1.ConfigMap`). Each
//! kind's schema carries `x-kubernetes-group-version-kind`, which is how kubectl finds it, and
//! every write operation lists the `fieldValidation` parameter, which is how kubectl learns that
//! the server validates fields itself.

use std::collections::BTreeMap;

use prost::Message;
use serde_json::{json, Map, Value};
use sha2::Digest;

use crate::kinds::{self, Resource};

/// The generated documents, built once at start-up.
pub struct OpenApi {
    /// Path of each group-version (`api/v1`, `apis/apps/v1`) to its v3 document and hash.
    pub v3: BTreeMap<String, (Value, String)>,
    pub v2_protobuf: Vec<u8>,
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Schemas of the kinds a group-version serves, with every definition they reference.
fn schemas_for(resources: &[&Resource]) -> Map<String, Value> {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    for r in resources {
        (kinds::schema_registrar(r))(&mut generator);
    }
    let mut defs = generator.take_definitions(true);
    for r in resources {
        let name = kinds::schema_name(r);
        if let Some(Value::Object(schema)) = defs.get_mut(&name) {
            schema.insert("x-kubernetes-group-version-kind".into(), json!([{"group": r.group, "version": r.version, "kind": r.kind}]));
            // k8s-openapi marks metadata required because the Rust field is not optional; the
            // Kubernetes schema does not.
            schema.remove("required");
        }
    }
    defs
}

fn parameter(name: &str, location: &str, description: &str) -> Value {
    json!({"name": name, "in": location, "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(r: &Resource, action: &str, op_id: String, with_body: bool, writes: bool) -> Value {
    let schema_ref = json!({"$ref": format!("#/components/schemas/{}", kinds::schema_name(r))});
    let mut params = vec![];
    if writes {
        params.push(parameter("dryRun", "query", "When present, indicates that modifications should not be persisted."));
        params.push(parameter("fieldManager", "query", "fieldManager is a name associated with the actor or entity that is making these changes."));
        params.push(parameter("fieldValidation", "query", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: Ignore, Warn (default), Strict."));
    }
    let mut op = json!({
        "operationId": op_id,
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": schema_ref}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
    });
    if with_body {
        op["requestBody"] = json!({"content": {"*/*": {"schema": schema_ref}}, "required": true});
    }
    op
}

fn paths_for(group: &str, version: &str, resources: &[&Resource]) -> Map<String, Value> {
    let mut paths = Map::new();
    let base = format!("/{}", gv_path(group, version));
    for r in resources {
        let (collection, item) = if r.namespaced {
            (format!("{base}/namespaces/{{namespace}}/{}", r.plural), format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural))
        } else {
            (format!("{base}/{}", r.plural), format!("{base}/{}/{{name}}", r.plural))
        };
        let k = r.kind;
        let scope = if r.namespaced { "Namespaced" } else { "" };
        if r.computed.is_some() {
            paths.insert(collection, json!({"post": operation(r, "post", format!("create{scope}{k}"), true, true)}));
            continue;
        }
        paths.insert(
            collection,
            json!({
                "get": operation(r, "list", format!("list{scope}{k}"), false, false),
                "post": operation(r, "post", format!("create{scope}{k}"), true, true),
                "delete": operation(r, "deletecollection", format!("deleteCollection{scope}{k}"), false, false),
            }),
        );
        paths.insert(
            item,
            json!({
                "get": operation(r, "get", format!("read{scope}{k}"), false, false),
                "put": operation(r, "put", format!("replace{scope}{k}"), true, true),
                "patch": operation(r, "patch", format!("patch{scope}{k}"), true, true),
                "delete": operation(r, "delete", format!("delete{scope}{k}"), false, false),
            }),
        );
        if r.namespaced {
            paths.insert(format!("{base}/{}", r.plural), json!({"get": operation(r, "list", format!("list{k}ForAllNamespaces"), false, false)}));
        }
    }
    paths
}

impl OpenApi {
    pub fn build() -> OpenApi {
        let mut v3 = BTreeMap::new();
        for (group, version, resources) in kinds::group_versions() {
            let doc = json!({
                "openapi": "3.0.0",
                "info": {"title": "Kubernetes", "version": "v1.32.0"},
                "paths": paths_for(group, version, &resources),
                "components": {"schemas": schemas_for(&resources)},
            });
            let hash = hex::encode_upper(sha2::Sha512::digest(doc.to_string().as_bytes()))[..128].to_string();
            v3.insert(gv_path(group, version), (doc, hash));
        }
        OpenApi { v2_protobuf: v2::document().encode_to_vec(), v3 }
    }

    /// The `/openapi/v3` root document.
    pub fn v3_root(&self) -> Value {
        let paths: Map<String, Value> =
            self.v3.iter().map(|(p, (_, h))| (p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={h}")}))).collect();
        json!({"paths": paths})
    }
}

/// The subset of gnostic's `openapi_v2.Document` (google/gnostic openapiv2/OpenAPIv2.proto) that
/// kubectl 1.27/1.28 read: paths whose operations carry the group-version-kind and the
/// `fieldValidation` query parameter. A oneof with one used variant is encoded exactly like an
/// optional field with that tag, which is how the oneofs are modelled here.
mod v2 {
    use super::*;

    #[derive(Clone, PartialEq, Message)]
    pub struct Document {
        #[prost(string, tag = "1")]
        pub swagger: String,
        #[prost(message, optional, tag = "2")]
        pub info: Option<Info>,
        #[prost(message, optional, tag = "8")]
        pub paths: Option<Paths>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub struct Info {
        #[prost(string, tag = "1")]
        pub title: String,
        #[prost(string, tag = "2")]
        pub version: String,
    }
    #[derive(Clone, PartialEq, Message)]
    pub struct Paths {
        #[prost(message, repeated, tag = "2")]
        pub path: Vec<NamedPathItem>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub struct NamedPathItem {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<PathItem>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub struct PathItem {
        #[prost(message, optional, tag = "2")]
        pub get: Option<Operation>,
        #[prost(message, optional, tag = "3")]
        pub put: Option<Operation>,
        #[prost(message, optional, tag = "4")]
        pub post: Option<Operation>,
        #[prost(message, optional, tag = "5")]
        pub delete: Option<Operation>,
        #[prost(message, optional, tag = "8")]
        pub patch: Option<Operation>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub struct Operation {
        #[prost(string, tag = "5")]
        pub operation_id: String,
        #[prost(message, repeated, tag = "8")]
        pub parameters: Vec<ParametersItem>,
        #[prost(message, optional, tag = "9")]
        pub responses: Option<Responses>,
        #[prost(message, repeated, tag = "13")]
        pub vendor_extension: Vec<NamedAny>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub struct ParametersItem {
        #[prost(message, optional, tag = "1")]
        pub parameter: Option<Parameter>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub struct Parameter {
        #[prost(message, optional, tag = "2")]
        pub non_body_parameter: Option<NonBodyParameter>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub struct NonBodyParameter {
        #[prost(message, optional, tag = "3")]
        pub query_parameter_sub_schema: Option<QueryParameterSubSchema>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub struct QueryParameterSubSchema {
        #[prost(string, tag = "2")]
        pub r#in: String,
        #[prost(string, tag = "3")]
        pub description: String,
        #[prost(string, tag = "4")]
        pub name: String,
        #[prost(string, tag = "6")]
        pub r#type: String,
        #[prost(bool, tag = "20")]
        pub unique_items: bool,
    }
    #[derive(Clone, PartialEq, Message)]
    pub struct Responses {
        #[prost(message, repeated, tag = "1")]
        pub response_code: Vec<NamedResponseValue>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub struct NamedResponseValue {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<ResponseValue>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub struct ResponseValue {
        #[prost(message, optional, tag = "1")]
        pub response: Option<Response>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub struct Response {
        #[prost(string, tag = "1")]
        pub description: String,
    }
    #[derive(Clone, PartialEq, Message)]
    pub struct NamedAny {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<Any>,
    }
    #[derive(Clone, PartialEq, Message)]
    pub struct Any {
        #[prost(string, tag = "2")]
        pub yaml: String,
    }

    fn query(name: &str) -> ParametersItem {
        ParametersItem {
            parameter: Some(Parameter {
                non_body_parameter: Some(NonBodyParameter {
                    query_parameter_sub_schema: Some(QueryParameterSubSchema {
                        r#in: "query".into(),
                        description: String::new(),
                        name: name.into(),
                        r#type: "string".into(),
                        unique_items: true,
                    }),
                }),
            }),
        }
    }

    fn op(r: &Resource, action: &str, id: String, writes: bool) -> Operation {
        let gvk = format!("group: \"{}\"\nkind: {}\nversion: {}\n", r.group, r.kind, r.version);
        Operation {
            operation_id: id,
            parameters: if writes { vec![query("dryRun"), query("fieldManager"), query("fieldValidation")] } else { vec![] },
            responses: Some(Responses {
                response_code: vec![NamedResponseValue {
                    name: "200".into(),
                    value: Some(ResponseValue { response: Some(Response { description: "OK".into() }) }),
                }],
            }),
            vendor_extension: vec![
                NamedAny { name: "x-kubernetes-action".into(), value: Some(Any { yaml: format!("{action}\n") }) },
                NamedAny { name: "x-kubernetes-group-version-kind".into(), value: Some(Any { yaml: gvk }) },
            ],
        }
    }

    pub fn document() -> Document {
        let mut path = Vec::new();
        for r in kinds::ALL {
            let base = format!("/{}", gv_path(r.group, r.version));
            let (collection, item) = if r.namespaced {
                (format!("{base}/namespaces/{{namespace}}/{}", r.plural), format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural))
            } else {
                (format!("{base}/{}", r.plural), format!("{base}/{}/{{name}}", r.plural))
            };
            let k = r.kind;
            path.push(NamedPathItem {
                name: collection,
                value: Some(PathItem {
                    get: Some(op(r, "list", format!("list{k}"), false)),
                    post: Some(op(r, "post", format!("create{k}"), true)),
                    ..Default::default()
                }),
            });
            path.push(NamedPathItem {
                name: item,
                value: Some(PathItem {
                    get: Some(op(r, "get", format!("read{k}"), false)),
                    put: Some(op(r, "put", format!("replace{k}"), true)),
                    patch: Some(op(r, "patch", format!("patch{k}"), true)),
                    delete: Some(op(r, "delete", format!("delete{k}"), false)),
                    ..Default::default()
                }),
            });
        }
        Document { swagger: "2.0".into(), info: Some(Info { title: "Kubernetes".into(), version: "v1.32.0".into() }), paths: Some(Paths { path }) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_has_real_schemas_with_gvk() {
        let o = OpenApi::build();
        let (doc, _) = &o.v3["api/v1"];
        let cm = &doc["components"]["schemas"]["io.k8s.api.core.v1.ConfigMap"];
        assert_eq!(cm["x-kubernetes-group-version-kind"][0]["kind"], "ConfigMap");
        assert!(cm["properties"]["data"]["description"].as_str().unwrap().starts_with("Data contains the configuration data"));
        assert!(doc["components"]["schemas"]["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object());
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"];
        assert!(patch["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));
        assert!(o.v3_root()["paths"]["api/v1"]["serverRelativeURL"].as_str().unwrap().starts_with("/openapi/v3/api/v1?hash="));
        assert!(!o.v2_protobuf.is_empty());
    }
}
