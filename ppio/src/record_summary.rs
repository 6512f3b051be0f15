//! What counts, fleet metrics and expiry read of a record: a [`RecordSummary`], a few of its
//! fields, decoded by the rules of the same fields of a whole [`Instance`] and redacted of the API
//! key. The sync reads every listed record's summary, and the whole record only when its mirror may
//! change; [`super::memo`] remembers summaries across listings.

use jiff::Timestamp;
use serde::Deserialize;

use super::api_key::ApiKey;
use super::error::{PpioError, redact};
use super::model::{
    Billing, BillingMode, Instance, InstanceId, InstanceStatus, ResourceSpecs, null_as_default,
};

/// The fields of a record that counts, fleet metrics and expiry read, decoded by the rules of the
/// same fields of [`Instance`] and redacted of the API key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordSummary {
    /// The instance's ID.
    pub id: InstanceId,
    /// Its name (may be empty).
    pub name: String,
    /// Its product ID (may be empty).
    pub product_id: String,
    /// Its region (may be empty).
    pub region: String,
    /// Its remote status, e.g. `running`; empty when PPIO sent none.
    pub status: String,
    /// Whether PPIO reports an error with that status.
    pub has_error: bool,
    /// Its billing mode as sent; empty when PPIO sent no billing.
    pub billing_mode: String,
    /// Its prepaid term, when PPIO sent one.
    pub prepaid: Option<PrepaidTerm>,
    /// GPUs it holds (0 when PPIO sent no resources).
    pub gpus: i64,
}

/// The prepaid term of a record, as far as expiry and its price need it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrepaidTerm {
    /// Months bought (`billing.prepaid.months`; 0 when PPIO sent none): which of the product's
    /// prepaid terms prices it.
    pub months: i64,
    /// When the term ends, if PPIO says.
    pub end_time: Option<Timestamp>,
    /// Whether the term renews itself.
    pub auto_renew: bool,
}

impl RecordSummary {
    /// Whether the billing mode is prepaid.
    pub fn is_prepaid(&self) -> bool {
        self.billing_mode.parse::<BillingMode>() == Ok(BillingMode::Prepaid)
    }

    /// Replaces every echo of `key` in its strings (not its ID: a record whose ID holds the key is
    /// refused); how many strings changed.
    pub(super) fn redact(&mut self, key: &ApiKey) -> usize {
        [
            &mut self.name,
            &mut self.product_id,
            &mut self.region,
            &mut self.status,
            &mut self.billing_mode,
        ]
        .into_iter()
        .map(|text| usize::from(redact(text, key)))
        .sum()
    }
}

impl From<&Instance> for RecordSummary {
    fn from(instance: &Instance) -> Self {
        Wire {
            id: instance.id.clone(),
            name: instance.name.clone(),
            product_id: instance.product_id.clone(),
            billing: instance.billing.clone(),
            resource_specs: instance.resource_specs.clone(),
            region: instance.region.clone(),
            status: instance.status.clone(),
        }
        .into_summary()
    }
}

/// The fields of a record a summary is made of, with the attributes of the same fields of
/// [`Instance`], so that they decode, or fail to, exactly as in a whole record.
#[derive(Deserialize)]
pub(super) struct Wire {
    id: InstanceId,
    #[serde(default, deserialize_with = "null_as_default")]
    name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    product_id: String,
    #[serde(default)]
    billing: Option<Billing>,
    #[serde(default)]
    resource_specs: Option<ResourceSpecs>,
    #[serde(default, deserialize_with = "null_as_default")]
    region: String,
    #[serde(default)]
    status: Option<InstanceStatus>,
}

impl Wire {
    pub(super) fn into_summary(self) -> RecordSummary {
        let (status, has_error) = self.status.map_or((String::new(), false), |s| {
            let has_error = !s.error.trim().is_empty();
            (s.status, has_error)
        });
        let (billing_mode, prepaid) = self.billing.map_or((String::new(), None), |b| {
            let prepaid = b.prepaid.map(|p| PrepaidTerm {
                months: p.months,
                end_time: p.end_time,
                auto_renew: p.auto_renew.is_some_and(|a| a.enabled),
            });
            (b.mode, prepaid)
        });
        RecordSummary {
            id: self.id,
            name: self.name,
            product_id: self.product_id,
            region: self.region,
            status,
            has_error,
            billing_mode,
            prepaid,
            gpus: self.resource_specs.map_or(0, |r| r.gpu_num),
        }
    }
}

/// The error of a page with a record whose ID holds the API key: it could only be mirrored under
/// the key or under a made-up ID.
pub(super) fn id_holds_key(index: usize) -> PpioError {
    PpioError::InvalidResponse {
        detail: format!(
            "a record's ID contains the API key (record {} of the page), so it cannot be \
             mirrored safely; the page was discarded",
            index + 1
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RawPage;
    use serde_json::json;

    fn page(records: serde_json::Value) -> RawPage {
        let body = json!({"data": records, "has_more": false});
        RawPage::from_json(body.to_string().into_bytes()).expect("a page")
    }

    #[test]
    fn a_summary_of_a_whole_record_is_the_summary_read_from_the_page() {
        let record = json!({
            "id": "p1", "name": "n", "product_id": "p", "region": "eu",
            "billing": {"mode": "prepaid", "prepaid": {"months": "3", "end_time": "1767225600",
                "auto_renew": {"enabled": true}}},
            "resource_specs": {"gpu_num": 4},
            "status": {"status": "running", "error": " ", "message": "m"},
        });
        let page = page(json!([record]));
        let whole = page.decode(0).expect("decodes");
        let summary = page.decode_summary(0).expect("decodes");
        assert_eq!(RecordSummary::from(&whole), summary);
        assert!(
            summary.is_prepaid() && !summary.has_error,
            "a blank error is none"
        );
        assert_eq!(summary.prepaid.map(|p| p.auto_renew), Some(true));
        assert_eq!(summary.prepaid.map(|p| p.months), Some(3));
    }
}
