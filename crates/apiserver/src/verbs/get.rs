//! GET of one object.

use axum::body::Body;
use axum::http::{Response, StatusCode};

use api::ApiResult;

use crate::app::App;
use crate::negotiate::{self, Negotiated};
use crate::request::ResourceRequest;
use crate::respond::encode_one;

pub async fn serve(app: &App, req: ResourceRequest, n: Negotiated) -> ApiResult<Response<Body>> {
    let obj = app.registry.get(req.res(), req.namespace(), req.name()).await?;
    Ok(negotiate::respond(StatusCode::OK, &encode_one(req.res(), &obj, n, &req.query), n.format))
}
