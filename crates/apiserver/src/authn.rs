//! Authentication: who is making a request. For now the only credential is an x509 client
//! certificate signed by the cluster CA (CN is the user, O the groups), as kube-apiserver's
//! `--client-ca-file` authenticator reads it. A request without one is unauthenticated (401).

use x509_parser::prelude::{FromDer, X509Certificate};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    /// The user a verified client certificate names; None if it has no CN.
    pub fn from_certificate(der: &[u8]) -> Option<User> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let subject = cert.subject();
        let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
        let mut groups: Vec<String> = subject.iter_organization().filter_map(|o| o.as_str().ok().map(String::from)).collect();
        groups.push("system:authenticated".into());
        Some(User { name, groups })
    }
}
