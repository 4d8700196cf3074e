//! The Kubernetes API model, independent of HTTP and storage: which kinds exist, how their
//! objects are decoded, defaulted, validated, patched, selected and printed, and the `Status`
//! errors that describe what went wrong.

pub mod codec;
pub mod discovery;
pub mod eso_kinds;
pub mod fieldmanager;
pub mod kinds;
pub mod object;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod rbac_kinds;
pub mod resource;
pub mod review_kinds;
pub mod selector;
pub mod status;
pub mod table;
pub mod validation;
pub mod workload_kinds;

pub use status::{ApiError, ApiResult, Reason};
