//! Admission: the ordered chain of plugins a create goes through after authorization and
//! before storage, as kube-apiserver's admission chain. Which plugins a kind's creates go
//! through is the kind's fact (`Resource::admission`); the order is the chain's, here.

pub mod service_account;

use serde_json::Value;

use api::resource::{Admission, Resource};
use api::ApiResult;

use crate::rest::Registry;

/// The chain, in kube-apiserver's order of its plugins.
const CHAIN: &[Admission] = &[Admission::ServiceAccount];

/// Runs every plugin of the chain that `res` declares on `obj`, about to be created in `ns`;
/// a plugin may change the object or refuse it.
pub async fn admit_create(reg: &Registry, res: &Resource, ns: &str, obj: &mut Value) -> ApiResult<()> {
    for plugin in CHAIN.iter().filter(|p| res.admission.contains(p)) {
        match plugin {
            Admission::ServiceAccount => service_account::admit(reg, ns, obj).await?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_plugin_is_in_the_chain() {
        for r in api::kinds::ALL {
            for p in r.admission {
                assert!(CHAIN.contains(p), "{} declares {p:?}, which the chain does not run", r.kind);
            }
        }
        assert_eq!(api::workload_kinds::PODS.admission, &[Admission::ServiceAccount]);
    }
}
