//! Computed, create-only kinds: access reviews (`authorization.k8s.io/v1`) and token and self
//! reviews (`authentication.k8s.io/v1`). They are never stored; the server answers them.

use serde_json::Value;

use crate::resource::{register, roundtrip_as, Computed, Resource, Strategy, TypeError, CREATE_ONLY};
use crate::validation::NameRule;

pub struct ReviewStrategy<T>(std::marker::PhantomData<T>);

impl<T: serde::de::DeserializeOwned + serde::Serialize + Sync> Strategy for ReviewStrategy<T> {
    fn roundtrip(&self, obj: Value) -> Result<(Value, Vec<String>), TypeError> {
        roundtrip_as::<T>(obj)
    }
}

macro_rules! review {
    ($name:ident, $group:expr, $kind:ident, $plural:expr, $singular:expr, $namespaced:expr, $ty:ty) => {
        pub static $name: Resource = Resource {
            group: $group,
            version: "v1",
            kind: stringify!($kind),
            plural: $plural,
            singular: $singular,
            namespaced: $namespaced,
            short_names: &[],
            categories: &[],
            name_rule: NameRule::PathSegment,
            selectable_fields: &[],
            strategy: &ReviewStrategy::<$ty>(std::marker::PhantomData),
            register_schema: register::<$ty>,
            verbs: CREATE_ONLY,
            subresources: &[],
            admission: &[],
            grants: None,
            computed: Some(Computed::$kind),
        };
    };
}

use k8s_openapi::api::authentication::v1 as authn;
use k8s_openapi::api::authorization::v1 as authz;

review!(
    SELF_SUBJECT_ACCESS_REVIEWS,
    "authorization.k8s.io",
    SelfSubjectAccessReview,
    "selfsubjectaccessreviews",
    "selfsubjectaccessreview",
    false,
    authz::SelfSubjectAccessReview
);
review!(SUBJECT_ACCESS_REVIEWS, "authorization.k8s.io", SubjectAccessReview, "subjectaccessreviews", "subjectaccessreview", false, authz::SubjectAccessReview);
review!(
    LOCAL_SUBJECT_ACCESS_REVIEWS,
    "authorization.k8s.io",
    LocalSubjectAccessReview,
    "localsubjectaccessreviews",
    "localsubjectaccessreview",
    true,
    authz::LocalSubjectAccessReview
);
review!(
    SELF_SUBJECT_RULES_REVIEWS,
    "authorization.k8s.io",
    SelfSubjectRulesReview,
    "selfsubjectrulesreviews",
    "selfsubjectrulesreview",
    false,
    authz::SelfSubjectRulesReview
);
review!(TOKEN_REVIEWS, "authentication.k8s.io", TokenReview, "tokenreviews", "tokenreview", false, authn::TokenReview);
review!(SELF_SUBJECT_REVIEWS, "authentication.k8s.io", SelfSubjectReview, "selfsubjectreviews", "selfsubjectreview", false, authn::SelfSubjectReview);
