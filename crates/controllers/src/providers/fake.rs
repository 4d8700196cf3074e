//! The `fake` provider: static data written in the store's spec, as ESO has it for examples
//! and tests.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Remote, NOT_FOUND};
use crate::eso_api::s;

pub struct Fake(BTreeMap<String, String>);

impl Fake {
    pub fn new(spec: &Value) -> Fake {
        Fake(spec["data"].as_array().into_iter().flatten().map(|d| (s(&d["key"]), s(&d["value"]))).collect())
    }

    pub fn fetch(&self, key: &str) -> Result<Remote, String> {
        self.0.get(key).map(|v| Remote::Raw(v.clone().into_bytes())).ok_or_else(|| format!("{NOT_FOUND}{key}"))
    }
}
