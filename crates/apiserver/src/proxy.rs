//! `pods/log`, `pods/exec` and `pods/attach`: proxied to the node agent that runs the pod, as
//! kube-apiserver proxies to the kubelet. The API server has already authorized the request;
//! this finds the pod's node and container and hands the request to `agents`.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use hyper::upgrade::OnUpgrade;

use api::kinds;
use api::{ApiError, ApiResult, Reason};

use crate::app::App;
use crate::request::Query;

/// The agent address of the node a pod runs on.
async fn agent_address(app: &App, ns: &str, pod: &str) -> ApiResult<(String, serde_json::Value)> {
    let reg = &app.registry;
    let p = reg.get(&api::workload_kinds::PODS, ns, pod).await?;
    let node_name = p["spec"]["nodeName"].as_str().unwrap_or_default().to_string();
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!("pod {pod} does not have a host assigned")));
    }
    let node = reg.get(&api::workload_kinds::NODES, "", &node_name).await?;
    let ip = node["status"]["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
        .and_then(|x| x["address"].as_str())
        .unwrap_or("127.0.0.1")
        .to_string();
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_i64().unwrap_or(10250);
    let host = if ip.contains(':') { format!("[{ip}]") } else { ip };
    let _ = kinds::ALL;
    Ok((format!("{host}:{port}"), (*p).clone()))
}

/// The container a request names, or the pod's only (or first) container.
fn container(pod: &serde_json::Value, q: &Query) -> ApiResult<String> {
    let names: Vec<String> =
        pod["spec"]["containers"].as_array().map(|a| a.iter().filter_map(|c| c["name"].as_str().map(String::from)).collect()).unwrap_or_default();
    match q.get("container").filter(|c| !c.is_empty()) {
        Some(c) if names.iter().any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!("container {c} is not valid for pod {}", pod["metadata"]["name"].as_str().unwrap_or_default()))),
        None => names.first().cloned().ok_or_else(|| ApiError::bad_request("the pod has no containers")),
    }
}

pub async fn logs(app: &App, ns: &str, pod: &str, q: &Query, headers: &HeaderMap) -> ApiResult<Response<Body>> {
    let (addr, p) = agent_address(app, ns, pod).await?;
    let c = container(&p, q)?;
    let query = {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for k in ["follow", "tailLines", "sinceSeconds", "sinceTime", "previous", "timestamps", "limitBytes"] {
            if let Some(v) = q.get(k) {
                query.append_pair(k, v);
            }
        }
        query.finish()
    };
    let path = format!("/containerLogs/{ns}/{pod}/{c}?{query}");
    let mut r = app.agents.forward(&addr, &path, &Method::GET, headers, None).await?;
    if r.status() != StatusCode::OK {
        // The kubelet's refusal becomes a Status with its text (NewGenericServerResponse).
        let code = r.status().as_u16();
        let body = http_body_util::BodyExt::collect(r.into_body()).await.map(|b| b.to_bytes()).unwrap_or_default();
        let text = String::from_utf8_lossy(&body[..body.len().min(4096)]).trim().to_string();
        let reason = match code {
            400 => Reason::BadRequest,
            401 => Reason::Unauthorized,
            403 => Reason::Forbidden,
            404 => Reason::NotFound,
            409 => Reason::Conflict,
            500 => Reason::InternalError,
            _ => Reason::Unknown,
        };
        let message = if text.is_empty() { "the server rejected our request for an unknown reason".to_string() } else { text };
        return Err(ApiError { code, reason, message, details: None });
    }
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(r)
}

pub async fn exec(
    app: &App,
    ns: &str,
    pod: &str,
    method: &Method,
    q: &Query,
    raw_query: &str,
    headers: &HeaderMap,
    on_upgrade: Option<OnUpgrade>,
) -> ApiResult<Response<Body>> {
    let (addr, p) = agent_address(app, ns, pod).await?;
    let c = container(&p, q)?;
    if p["status"]["phase"] != "Running" {
        return Err(ApiError::bad_request(format!("unable to upgrade connection: container not found (\"{c}\")")));
    }
    app.agents.forward(&addr, &format!("/exec/{ns}/{pod}/{c}?{raw_query}"), method, headers, on_upgrade).await
}
