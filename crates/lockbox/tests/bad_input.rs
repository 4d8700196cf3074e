//! Bad input of every kind gets kube-apiserver's code and reason, never a 5xx, and writes nothing.

mod common;

use common::{raw, Server};

const NS: &str = "/api/v1/namespaces/bad";
const JSON: &str = "application/json";

#[tokio::test]
async fn bad_inputs_get_kubernetes_status_errors() {
    let s = Server::start().await;
    let c = s.client().await;
    let (code, _, _) = raw(&c, "POST", "/api/v1/namespaces", JSON, br#"{"metadata":{"name":"bad"}}"#).await;
    assert_eq!(code, 201);
    let (code, _, existing) = raw(&c, "POST", &format!("{NS}/configmaps"), JSON, br#"{"metadata":{"name":"exists"},"data":{"a":"1"}}"#).await;
    assert_eq!(code, 201);
    let stale_rv: i64 = existing["metadata"]["resourceVersion"].as_str().unwrap().parse::<i64>().unwrap() - 1;
    raw(&c, "PATCH", &format!("{NS}/configmaps/exists"), "application/merge-patch+json", br#"{"data":{"a":"2"}}"#).await;

    let huge_value = "x".repeat(1024 * 1024 + 10);
    let too_much_data = format!(r#"{{"metadata":{{"name":"big"}},"data":{{"k":"{huge_value}"}}}}"#);
    let over_limit_body = format!(r#"{{"metadata":{{"name":"huge"}},"data":{{"k":"{}"}}}}"#, "y".repeat(3 * 1024 * 1024 + 10));
    let stale = format!(r#"{{"metadata":{{"name":"exists","resourceVersion":"{stale_rv}"}},"data":{{"a":"3"}}}}"#);

    let cases: Vec<(&str, &str, String, &str, Vec<u8>, u16, &str)> = vec![
        ("malformed JSON", "POST", format!("{NS}/configmaps"), JSON, b"{".to_vec(), 400, "BadRequest"),
        ("trailing garbage", "POST", format!("{NS}/configmaps"), JSON, b"{} {}".to_vec(), 400, "BadRequest"),
        ("null body", "POST", format!("{NS}/configmaps"), JSON, b"null".to_vec(), 400, "BadRequest"),
        ("malformed YAML", "POST", format!("{NS}/configmaps"), "application/yaml", b"metadata: [".to_vec(), 400, "BadRequest"),
        ("malformed protobuf", "POST", format!("{NS}/configmaps"), "application/vnd.kubernetes.protobuf", b"k8s\0\xff\xff\xff".to_vec(), 400, "BadRequest"),
        ("protobuf without magic", "POST", format!("{NS}/configmaps"), "application/vnd.kubernetes.protobuf", b"\x0a\x00".to_vec(), 400, "BadRequest"),
        ("wrong type in field", "POST", format!("{NS}/configmaps"), JSON, br#"{"metadata":{"name":"t"},"data":{"a":1}}"#.to_vec(), 400, "BadRequest"),
        ("wrong kind", "POST", format!("{NS}/configmaps"), JSON, br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"k"}}"#.to_vec(), 400, "BadRequest"),
        (
            "wrong apiVersion",
            "POST",
            format!("{NS}/configmaps"),
            JSON,
            br#"{"apiVersion":"v2","kind":"ConfigMap","metadata":{"name":"k"}}"#.to_vec(),
            400,
            "BadRequest",
        ),
        ("namespace mismatch", "POST", format!("{NS}/configmaps"), JSON, br#"{"metadata":{"name":"n","namespace":"other"}}"#.to_vec(), 400, "BadRequest"),
        ("unsupported media type", "POST", format!("{NS}/configmaps"), "text/plain", b"hello".to_vec(), 415, "UnsupportedMediaType"),
        ("body over 3 MiB", "POST", format!("{NS}/configmaps"), JSON, over_limit_body.into_bytes(), 413, "RequestEntityTooLarge"),
        ("data over 1 MiB", "POST", format!("{NS}/configmaps"), JSON, too_much_data.into_bytes(), 422, "Invalid"),
        ("invalid name", "POST", format!("{NS}/configmaps"), JSON, br#"{"metadata":{"name":"Bad Name"}}"#.to_vec(), 422, "Invalid"),
        ("missing name", "POST", format!("{NS}/configmaps"), JSON, br#"{"metadata":{}}"#.to_vec(), 422, "Invalid"),
        ("invalid data key", "POST", format!("{NS}/configmaps"), JSON, br#"{"metadata":{"name":"k"},"data":{"a b":"x"}}"#.to_vec(), 422, "Invalid"),
        (
            "data and binaryData overlap",
            "POST",
            format!("{NS}/configmaps"),
            JSON,
            br#"{"metadata":{"name":"k"},"data":{"a":"x"},"binaryData":{"a":"eA=="}}"#.to_vec(),
            422,
            "Invalid",
        ),
        ("invalid label", "POST", format!("{NS}/configmaps"), JSON, br#"{"metadata":{"name":"k","labels":{"a b":"c"}}}"#.to_vec(), 422, "Invalid"),
        ("invalid annotation key", "POST", format!("{NS}/configmaps"), JSON, br#"{"metadata":{"name":"k","annotations":{"/x":"c"}}}"#.to_vec(), 422, "Invalid"),
        ("secret with bad base64", "POST", format!("{NS}/secrets"), JSON, br#"{"metadata":{"name":"s"},"data":{"a":"!!"}}"#.to_vec(), 400, "BadRequest"),
        (
            "dockerconfigjson without its key",
            "POST",
            format!("{NS}/secrets"),
            JSON,
            br#"{"metadata":{"name":"s"},"type":"kubernetes.io/dockerconfigjson","data":{}}"#.to_vec(),
            422,
            "Invalid",
        ),
        (
            "basic-auth without keys",
            "POST",
            format!("{NS}/secrets"),
            JSON,
            br#"{"metadata":{"name":"s"},"type":"kubernetes.io/basic-auth"}"#.to_vec(),
            422,
            "Invalid",
        ),
        (
            "ssh-auth without key",
            "POST",
            format!("{NS}/secrets"),
            JSON,
            br#"{"metadata":{"name":"s"},"type":"kubernetes.io/ssh-auth"}"#.to_vec(),
            422,
            "Invalid",
        ),
        ("invalid namespace name", "POST", "/api/v1/namespaces".into(), JSON, br#"{"metadata":{"name":"Bad_NS"}}"#.to_vec(), 422, "Invalid"),
        ("duplicate create", "POST", format!("{NS}/configmaps"), JSON, br#"{"metadata":{"name":"exists"}}"#.to_vec(), 409, "AlreadyExists"),
        ("stale resourceVersion", "PUT", format!("{NS}/configmaps/exists"), JSON, stale.into_bytes(), 409, "Conflict"),
        ("name mismatch on update", "PUT", format!("{NS}/configmaps/exists"), JSON, br#"{"metadata":{"name":"other"}}"#.to_vec(), 400, "BadRequest"),
        ("update of a missing object", "PUT", format!("{NS}/configmaps/missing"), JSON, br#"{"metadata":{"name":"missing"}}"#.to_vec(), 404, "NotFound"),
        ("bad label selector", "GET", format!("{NS}/configmaps?labelSelector=a%20in%20b"), "", vec![], 400, "BadRequest"),
        ("bad field selector", "GET", format!("{NS}/configmaps?fieldSelector=nonsense"), "", vec![], 400, "BadRequest"),
        ("unsupported field selector", "GET", format!("{NS}/configmaps?fieldSelector=data.a%3D1"), "", vec![], 400, "BadRequest"),
        ("bad continue token", "GET", format!("{NS}/configmaps?limit=1&continue=garbage"), "", vec![], 400, "BadRequest"),
        ("bad limit", "GET", format!("{NS}/configmaps?limit=many"), "", vec![], 400, "BadRequest"),
        ("bad resourceVersion", "GET", format!("{NS}/configmaps?resourceVersion=abc"), "", vec![], 400, "BadRequest"),
        ("bad resourceVersionMatch", "GET", format!("{NS}/configmaps?resourceVersion=1&resourceVersionMatch=Sometimes"), "", vec![], 422, "Invalid"),
        ("bad watch resourceVersion", "GET", format!("{NS}/configmaps?watch=true&resourceVersion=abc"), "", vec![], 400, "BadRequest"),
        ("unknown resource", "GET", format!("{NS}/widgets"), "", vec![], 404, "NotFound"),
        ("unknown group", "GET", "/apis/nope.example/v1/things".into(), "", vec![], 404, "NotFound"),
        ("missing object", "GET", format!("{NS}/configmaps/missing"), "", vec![], 404, "NotFound"),
        ("create without namespace", "POST", "/api/v1/configmaps".into(), JSON, br#"{"metadata":{"name":"x"}}"#.to_vec(), 405, "MethodNotAllowed"),
        ("malformed merge patch", "PATCH", format!("{NS}/configmaps/exists"), "application/merge-patch+json", b"{".to_vec(), 400, "BadRequest"),
        ("malformed strategic patch", "PATCH", format!("{NS}/configmaps/exists"), "application/strategic-merge-patch+json", b"[1]".to_vec(), 400, "BadRequest"),
        ("malformed JSON patch", "PATCH", format!("{NS}/configmaps/exists"), "application/json-patch+json", br#"{"op":"add"}"#.to_vec(), 400, "BadRequest"),
        (
            "JSON patch on a missing path",
            "PATCH",
            format!("{NS}/configmaps/exists"),
            "application/json-patch+json",
            br#"[{"op":"remove","path":"/data/zzz"}]"#.to_vec(),
            422,
            "Invalid",
        ),
        ("unknown patch type", "PATCH", format!("{NS}/configmaps/exists"), "text/plain", b"{}".to_vec(), 415, "UnsupportedMediaType"),
        (
            "patch that makes the object invalid",
            "PATCH",
            format!("{NS}/configmaps/exists"),
            "application/merge-patch+json",
            br#"{"data":{"a b":"1"}}"#.to_vec(),
            422,
            "Invalid",
        ),
        (
            "patch that renames",
            "PATCH",
            format!("{NS}/configmaps/exists"),
            "application/merge-patch+json",
            br#"{"metadata":{"name":"renamed"}}"#.to_vec(),
            400,
            "BadRequest",
        ),
        (
            "apply without fieldManager",
            "PATCH",
            format!("{NS}/configmaps/exists"),
            "application/apply-patch+yaml",
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: exists\n".to_vec(),
            422,
            "Invalid",
        ),
        (
            "apply without kind",
            "PATCH",
            format!("{NS}/configmaps/exists?fieldManager=m"),
            "application/apply-patch+yaml",
            b"metadata:\n  name: exists\n".to_vec(),
            400,
            "BadRequest",
        ),
        ("bad fieldValidation", "POST", format!("{NS}/configmaps?fieldValidation=Loose"), JSON, br#"{"metadata":{"name":"fv"}}"#.to_vec(), 400, "BadRequest"),
        (
            "ownerReference without uid",
            "POST",
            format!("{NS}/configmaps"),
            JSON,
            br#"{"metadata":{"name":"o","ownerReferences":[{"apiVersion":"v1","kind":"ConfigMap","name":"x","uid":""}]}}"#.to_vec(),
            422,
            "Invalid",
        ),
        ("exact list at 0", "GET", format!("{NS}/configmaps?resourceVersion=0&resourceVersionMatch=Exact"), "", vec![], 422, "Invalid"),
        ("sendInitialEvents on a list", "GET", format!("{NS}/configmaps?sendInitialEvents=true"), "", vec![], 422, "Invalid"),
        ("continue with a resourceVersion", "GET", format!("{NS}/configmaps?continue=abc&resourceVersion=5"), "", vec![], 400, "BadRequest"),
        ("bad dryRun", "POST", format!("{NS}/configmaps?dryRun=Some"), JSON, br#"{"metadata":{"name":"dr"}}"#.to_vec(), 422, "Invalid"),
        ("bad dryRun on update", "PUT", format!("{NS}/configmaps/exists?dryRun=Some"), JSON, br#"{"metadata":{"name":"exists"}}"#.to_vec(), 422, "Invalid"),
        (
            "force on a merge patch",
            "PATCH",
            format!("{NS}/configmaps/exists?force=true"),
            "application/merge-patch+json",
            br#"{"data":{"a":"9"}}"#.to_vec(),
            422,
            "Invalid",
        ),
        ("bad propagationPolicy", "DELETE", format!("{NS}/configmaps/exists"), JSON, br#"{"propagationPolicy":"Sideways"}"#.to_vec(), 422, "Invalid"),
        ("malformed DeleteOptions", "DELETE", format!("{NS}/configmaps/exists"), JSON, b"{".to_vec(), 400, "BadRequest"),
        (
            "stale delete precondition",
            "DELETE",
            format!("{NS}/configmaps/exists"),
            JSON,
            br#"{"preconditions":{"resourceVersion":"1"}}"#.to_vec(),
            409,
            "Conflict",
        ),
        ("deletecollection of namespaces", "DELETE", "/api/v1/namespaces".into(), "", vec![], 405, "MethodNotAllowed"),
    ];
    let mut failures = Vec::new();
    for (what, method, path, ct, body, want_code, want_reason) in &cases {
        let (code, _, status) = raw(&c, method, path, ct, body).await;
        let reason = status["reason"].as_str().unwrap_or_default();
        if code != *want_code || reason != *want_reason || status["kind"] != "Status" {
            failures.push(format!("{what}: got {code} {reason} {status}, want {want_code} {want_reason}"));
        }
        assert!(code < 500, "{what}: {code} {status}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let (_, _, status) = raw(&c, "POST", &format!("{NS}/configmaps?dryRun=Some"), JSON, br#"{"metadata":{"name":"dr"}}"#).await;
    assert_eq!(status["message"], "CreateOptions.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: []string{\"Some\"}: supported values: \"All\"");
    let (_, _, status) = raw(&c, "PATCH", &format!("{NS}/configmaps/exists?force=true"), "application/merge-patch+json", br#"{}"#).await;
    assert_eq!(status["message"], "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch");

    let body = br#"{"metadata":{"name":"o","ownerReferences":[{"apiVersion":"","kind":"ConfigMap","name":"x","uid":""}]}}"#;
    let (_, _, status) = raw(&c, "POST", &format!("{NS}/configmaps"), JSON, body).await;
    assert_eq!(
        status["message"],
        "ConfigMap \"o\" is invalid: [metadata.ownerReferences.apiVersion: Invalid value: \"\": version must not be empty, metadata.ownerReferences.uid: Invalid value: \"\": uid must not be empty]"
    );

    // Base64 errors in Go's words, at the byte Go's decoder reports.
    for (value, at) in [("ab c", 2), ("abc", 0), ("YWJjZA=x", 6)] {
        let body = format!(r#"{{"metadata":{{"name":"b64"}},"data":{{"k":"{value}"}}}}"#);
        let (code, _, status) = raw(&c, "POST", &format!("{NS}/secrets"), JSON, body.as_bytes()).await;
        assert_eq!(code, 400);
        assert_eq!(status["message"], format!("Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte {at}"), "{value}");
    }

    // A 406 for a client that accepts only protobuf.
    let req =
        http::Request::get(format!("{NS}/configmaps")).header("Accept", "application/vnd.kubernetes.protobuf").body(kube::client::Body::from(vec![])).unwrap();
    assert_eq!(c.send(req).await.unwrap().status().as_u16(), 406);

    // Nothing was written by the rejected requests, and the existing object is intact.
    let (_, _, list) = raw(&c, "GET", &format!("{NS}/configmaps"), "", b"").await;
    // kube-root-ca.crt is published into every namespace by the server itself.
    let names: Vec<&str> =
        list["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap()).filter(|n| *n != "kube-root-ca.crt").collect();
    assert_eq!(names, ["exists"]);
    assert_eq!(list["items"].as_array().unwrap().iter().find(|i| i["metadata"]["name"] == "exists").unwrap()["data"]["a"], "2");
    let (_, _, secrets) = raw(&c, "GET", &format!("{NS}/secrets"), "", b"").await;
    assert_eq!(secrets["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn seed_verbatim_name_message_matches_kubernetes() {
    let s = Server::start().await;
    let c = s.client().await;
    raw(&c, "POST", "/api/v1/namespaces", JSON, br#"{"metadata":{"name":"ai-inference"}}"#).await;
    let body = br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"model-registry credentials"},"type":"Opaque"}"#;
    let (code, _, status) = raw(&c, "POST", "/api/v1/namespaces/ai-inference/secrets", JSON, body).await;
    assert_eq!(code, 422);
    assert_eq!(
        status["details"]["causes"][0],
        serde_json::json!({
            "reason": "FieldValueInvalid",
            "field": "metadata.name",
            "message": "Invalid value: \"model-registry credentials\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        })
    );
    assert_eq!(status["details"]["kind"], "Secret");
}
