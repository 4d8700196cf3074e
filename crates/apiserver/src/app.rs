//! What every request handler shares: the registry, the documents served, authentication,
//! audit, the agents' client and the fairness limits.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::rest::Registry;

pub struct App {
    pub registry: Arc<Registry>,
    pub openapi: api::openapi::OpenApi,
    pub health: crate::health::Health,
    pub encryption: Arc<crypt::reload::Reloading>,
    pub authn: crate::authn::Authenticator,
    pub audit: Option<crate::audit::AuditLog>,
    pub agents: crate::agents::AgentClient,
    pub fairness: crate::fairness::Fairness,
}

impl App {
    /// The OpenID discovery document for the ServiceAccount issuer.
    pub fn authn_discovery(&self) -> Value {
        let iss = &self.authn.signer.issuer;
        json!({"issuer": iss, "jwks_uri": format!("{iss}/openid/v1/jwks"), "response_types_supported": ["id_token"], "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["ES256"]})
    }
}
