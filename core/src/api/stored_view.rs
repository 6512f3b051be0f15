//! A `GpuInstanceView` as the API server stores it, read leniently: its metadata always, its spec
//! when this version of the operator can decode it, and otherwise why not.
//!
//! The API server keeps what a newer CRD admitted after the CRD is rolled back (e.g. an
//! `omitFields` value this version does not know). Decoding such a view as the typed
//! [`GpuInstanceView`] would fail the list and watch of its whole namespace, so the operator would
//! no longer see any of its neighbours; read as a [`StoredView`], it is one view that reports its
//! own spec as unreadable. What this is not: validation. The API server's schema is the gate; this
//! only says what the operator could not read.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::{Deserialize, Deserializer};

use super::view::{GpuInstanceView, GpuInstanceViewSpec, GpuInstanceViewStatus};

/// The longest description of an unreadable spec a view's status carries, in bytes: it quotes a
/// value someone wrote into the object.
pub const MAX_SPEC_PROBLEM: usize = 512;

/// A view whose spec may not decode. Its `Resource` identity is [`GpuInstanceView`]'s.
#[derive(Clone, Debug)]
pub struct StoredView {
    /// The view's metadata.
    pub metadata: ObjectMeta,
    /// The typed spec, or why this version of the operator cannot read it.
    pub spec: Result<GpuInstanceViewSpec, SpecProblem>,
    /// The view's status; `None` too when it cannot be read (the next status written replaces it).
    pub status: Option<GpuInstanceViewStatus>,
}

/// Why a stored spec does not decode: the field and what is wrong with its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecProblem {
    /// The field's path from the object's root, e.g. `spec.mirror.omitFields[0]`.
    pub field: String,
    /// What is wrong, naming the value, e.g. ``unknown variant `ssh`, expected one of ...``:
    /// without control characters and cut to [`MAX_SPEC_PROBLEM`] bytes.
    pub problem: String,
}

impl std::fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl SpecProblem {
    fn of(error: serde_path_to_error::Error<serde_json::Error>) -> SpecProblem {
        let path = error.path().to_string();
        let field = match path.as_str() {
            "." | "" => "spec".to_owned(),
            _ => format!("spec.{path}"),
        };
        let problem = error.into_inner().to_string();
        let problem = ppio::text::strip_control(&problem, false);
        SpecProblem {
            field: ppio::text::truncate(&field, MAX_SPEC_PROBLEM / 2),
            problem: ppio::text::truncate(&problem, MAX_SPEC_PROBLEM),
        }
    }
}

/// Decodes `spec` as this version's [`GpuInstanceViewSpec`], or says which field holds what it
/// does not understand.
pub fn decode_spec(spec: serde_json::Value) -> Result<GpuInstanceViewSpec, SpecProblem> {
    serde_path_to_error::deserialize(spec).map_err(SpecProblem::of)
}

impl StoredView {
    /// The typed view, when its spec decodes.
    pub fn typed(&self) -> Result<GpuInstanceView, &SpecProblem> {
        let spec = self.spec.as_ref()?;
        Ok(GpuInstanceView {
            metadata: self.metadata.clone(),
            spec: spec.clone(),
            status: self.status.clone(),
        })
    }
}

impl<'de> Deserialize<'de> for StoredView {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Only the metadata must decode; spec and status are read from what was stored, whatever
        // it holds.
        #[derive(Deserialize)]
        struct Stored {
            #[serde(default)]
            metadata: ObjectMeta,
            #[serde(default)]
            spec: serde_json::Value,
            #[serde(default)]
            status: Option<serde_json::Value>,
        }
        let stored = Stored::deserialize(deserializer)?;
        Ok(StoredView {
            metadata: stored.metadata,
            spec: decode_spec(stored.spec),
            status: stored
                .status
                .and_then(|status| serde_json::from_value(status).ok()),
        })
    }
}

impl Resource for StoredView {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        GpuInstanceView::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        GpuInstanceView::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        GpuInstanceView::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        GpuInstanceView::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(spec: serde_json::Value) -> StoredView {
        serde_json::from_value(json!({
            "apiVersion": "gpu.ppio.io/v1alpha1",
            "kind": "GpuInstanceView",
            "metadata": { "name": "v", "namespace": "ml", "generation": 2 },
            "spec": spec,
            "status": { "observedGeneration": 1, "lastHandledRefresh": "r1" }
        }))
        .expect("a stored view always decodes")
    }

    #[test]
    fn a_value_this_version_does_not_know_is_named_with_its_field() {
        let view = stored(json!({
            "credentials": { "secretRef": { "name": "ppio" } },
            "mirror": { "omitFields": ["image", "sshKeys"] }
        }));
        let problem = view.spec.as_ref().unwrap_err();
        assert_eq!(problem.field, "spec.mirror.omitFields[1]");
        assert!(problem.problem.contains("`sshKeys`"), "{problem}");
        assert!(problem.problem.contains("`image`"), "{problem}");
        assert_eq!(view.metadata.generation, Some(2));
        assert_eq!(
            view.status.and_then(|s| s.last_handled_refresh).as_deref(),
            Some("r1")
        );
    }

    #[test]
    fn a_missing_or_malformed_spec_is_a_problem_and_not_a_failed_decoding() {
        let view: StoredView = serde_json::from_value(json!({
            "metadata": { "name": "v", "namespace": "ml" },
            "status": { "conditions": "not a list" }
        }))
        .unwrap();
        assert_eq!(view.spec.unwrap_err().field, "spec");
        assert_eq!(view.status, None);
        let view = stored(json!({ "credentials": { "secretRef": { "name": 7 } } }));
        let problem = view.spec.unwrap_err();
        assert_eq!(problem.field, "spec.credentials.secretRef.name");
        assert!(problem.problem.contains('7'), "{problem}");
    }

    #[test]
    fn a_long_or_hostile_value_is_cut_and_cleaned() {
        let value = format!("\u{202e}evil\n{}", "x".repeat(10_000));
        let view = stored(json!({
            "credentials": { "secretRef": { "name": "ppio" } },
            "filter": { "billingMode": value }
        }));
        let problem = view.spec.unwrap_err();
        assert!(
            problem.problem.len() <= MAX_SPEC_PROBLEM,
            "{}",
            problem.problem.len()
        );
        assert!(
            !problem.problem.contains(['\u{202e}', '\n']),
            "{}",
            problem.problem
        );
        assert!(problem.problem.contains("evil"), "{}", problem.problem);
    }

    #[test]
    fn a_readable_spec_gives_the_typed_view() {
        let view = stored(json!({ "credentials": { "secretRef": { "name": "ppio" } } }));
        let typed = view.typed().expect("decodes");
        assert_eq!(typed.spec.credentials.secret_ref.name, "ppio");
        assert_eq!(typed.metadata.name.as_deref(), Some("v"));
        assert_eq!(typed.status.and_then(|s| s.observed_generation), Some(1));
    }
}
