//! PUT of one object: decode, type-check, match the path, the escalation check, then the
//! registry's update (the kind's update strategy).

use axum::body::Body;
use axum::http::{Response, StatusCode};

use api::ApiResult;

use crate::app::App;
use crate::authz::{self, CacheRbac};
use crate::decode::{check_name, type_check, FieldProblems};
use crate::negotiate::{self, Negotiated};
use crate::options::{field_validation, write_options};
use crate::request::ResourceRequest;
use crate::respond::{encode_one, with_warnings};

pub async fn serve(app: &App, mut req: ResourceRequest, n: Negotiated) -> ApiResult<Response<Body>> {
    let res = req.res();
    let decoded = req.decode_body(res.kind).await?;
    let (mut obj, unknown) = type_check(res, decoded.value)?;
    let warnings = FieldProblems::new(&unknown, &decoded.duplicates).check_as(field_validation(&req.query)?, Some(res))?;
    let (ns, name) = (req.namespace(), req.name());
    check_name(res, &mut obj, ns, name)?;
    let opts = write_options(&req.query, &req.headers, "UpdateOptions", false)?;
    authz::check_escalation(&CacheRbac(app.registry.clone()), res, &req.user, ns, &obj)?;
    let updated = app.registry.update(res, ns, name, obj, &opts).await?;
    Ok(with_warnings(negotiate::respond(StatusCode::OK, &encode_one(res, &updated, n, &req.query), n.format), &warnings))
}
