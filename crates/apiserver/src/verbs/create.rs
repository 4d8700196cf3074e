//! POST to a collection: decode, type-check, place in the namespace, the escalation check,
//! the admission chain, then the registry's create.

use axum::body::Body;
use axum::http::{Response, StatusCode};

use api::{object, ApiError, ApiResult};

use crate::app::App;
use crate::authz::{self, CacheRbac};
use crate::decode::{type_check, FieldProblems};
use crate::negotiate::{self, Negotiated};
use crate::options::{field_validation, write_options};
use crate::request::ResourceRequest;
use crate::respond::{encode_one, with_warnings};

pub async fn serve(app: &App, mut req: ResourceRequest, n: Negotiated) -> ApiResult<Response<Body>> {
    let res = req.res();
    let decoded = req.decode_body(res.kind).await?;
    let (mut obj, unknown) = type_check(res, decoded.value)?;
    let warnings = FieldProblems::new(&unknown, &decoded.duplicates).check_as(field_validation(&req.query)?, Some(res))?;
    let ns = req.namespace();
    if res.namespaced {
        match object::namespace(&obj) {
            "" => object::set_meta(&mut obj, "namespace", ns),
            body_ns if body_ns != ns => {
                return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
            }
            _ => {}
        }
    } else if let Some(m) = obj["metadata"].as_object_mut() {
        // A cluster-scoped object has no namespace: one in the body is dropped
        // (EnsureObjectNamespaceMatchesRequestNamespace).
        m.remove("namespace");
    }
    let opts = write_options(&req.query, &req.headers, "CreateOptions", false)?;
    authz::check_escalation(&CacheRbac(app.registry.clone()), res, &req.user, ns, &obj)?;
    crate::admission::admit_create(&app.registry, res, ns, &mut obj).await?;
    let created = app.registry.create(res, ns, obj, &opts).await?;
    Ok(with_warnings(negotiate::respond(StatusCode::CREATED, &encode_one(res, &created, n, &req.query), n.format), &warnings))
}
