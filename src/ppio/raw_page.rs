//! A list page whose records stay as the server sent them until someone needs them whole.
//!
//! Most syncs of a large account find most records as they were: decoding each one fully (two dozen
//! strings, timestamps, lists) only to find it unchanged was most of the CPU a sync in which nothing
//! changed cost. A [`RawPage`] therefore reads each record once for its [`summary`](RawPage::summary)
//! (ID, name, product, region, billing, resources, remote status: what counts, metrics and expiry
//! need) and a hash of its bytes, and decodes the whole record only when asked
//! ([`RawPage::decode`]).
//!
//! The rules of [`super::model`] hold unchanged: the envelope is checked the same way, the item bound
//! is applied first, every field a summary holds is decoded by the same rules as in a full record,
//! and an error says where in the page it is (`data[3].billing.mode`). A record whose summary does
//! not decode fails the page as a whole; one that fails only in a field outside its summary fails
//! when it is decoded.

use std::hash::Hasher;
use std::ops::Range;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::model::{
    Billing, DecodeError, Instance, InstanceId, InstanceStatus, ResourceSpecs, check_envelope,
    located_error, null_as_default, present, required,
};

/// A decoded page envelope whose records are located but not decoded; see the module documentation.
#[derive(Debug, Clone)]
pub struct RawPage {
    /// The body as received; its records are ranges of it.
    body: Vec<u8>,
    records: Vec<RawRecord>,
    /// Cursor for the next page; `None` when the server sent none or an empty one.
    pub next_cursor: Option<String>,
    /// Whether the server says more pages follow.
    pub has_more: bool,
}

/// One record of a [`RawPage`].
#[derive(Debug, Clone)]
struct RawRecord {
    /// Where the record is in the body.
    span: Range<usize>,
    /// The record's summary fields; every other field empty.
    summary: Instance,
}

impl RawPage {
    /// Reads a list response body as [`Page::from_json`](super::Page::from_json) does, decoding each record's summary only.
    /// On error the body is handed back, for a caller that wants to say more about it.
    pub fn from_json(body: Vec<u8>) -> Result<RawPage, (DecodeError, Vec<u8>)> {
        match Self::locate(&body) {
            Ok((records, next_cursor, has_more)) => Ok(RawPage {
                body,
                records,
                next_cursor,
                has_more,
            }),
            Err(error) => Err((error, body)),
        }
    }

    /// The records of `body`, its cursor and `has_more`.
    #[allow(clippy::type_complexity)] // the parts of a page, named by the caller
    fn locate(body: &[u8]) -> Result<(Vec<RawRecord>, Option<String>, bool), DecodeError> {
        check_envelope(body)?;
        let text = simdutf8::basic::from_utf8(body).map_err(|_| located_error(body))?;
        let wire: WireRawPage<'_> = serde_json::from_str(text).map_err(|_| located_error(body))?;
        let (data, has_more) = required(wire.data, wire.has_more)?;
        let start = text.as_ptr() as usize;
        let mut records = Vec::with_capacity(data.len());
        for raw in data {
            let summary: WireSummary =
                serde_json::from_str(raw.get()).map_err(|_| located_error(body))?;
            // `raw` borrows from `text`: its offset there is where the record starts.
            let span = (raw.get().as_ptr() as usize)
                .checked_sub(start)
                .map(|at| at..at + raw.get().len())
                .filter(|span| span.end <= text.len())
                .ok_or_else(|| located_error(body))?;
            records.push(RawRecord {
                span,
                summary: summary.into_instance(),
            });
        }
        let next_cursor = Some(wire.next_cursor).filter(|cursor| !cursor.is_empty());
        Ok((records, next_cursor, has_more))
    }

    /// Records on the page.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the page holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The IDs of the page's records, in the order sent.
    pub fn ids(&self) -> impl ExactSizeIterator<Item = &InstanceId> {
        self.records.iter().map(|record| &record.summary.id)
    }

    /// Record `index`'s summary: its ID, name, product, region, billing, resources and remote
    /// status, decoded as in a full record; every other field is empty.
    pub fn summary(&self, index: usize) -> &Instance {
        &self.records[index].summary
    }

    /// Mutable access to every summary, e.g. to redact them.
    pub fn summaries_mut(&mut self) -> impl Iterator<Item = &mut Instance> {
        self.records.iter_mut().map(|record| &mut record.summary)
    }

    /// A hash of record `index` exactly as sent: equal bytes, equal hash (within one process).
    pub fn record_hash(&self, index: usize) -> u64 {
        let mut hasher = rustc_hash::FxHasher::default();
        hasher.write(self.bytes(index));
        hasher.finish()
    }

    /// Record `index` decoded whole.
    pub fn decode(&self, index: usize) -> Result<Instance, DecodeError> {
        let bytes = self.bytes(index);
        if let Some(instance) = simdutf8::basic::from_utf8(bytes)
            .ok()
            .and_then(|text| serde_json::from_str::<Instance>(text).ok())
        {
            return Ok(instance);
        }
        // Decoded again with the path tracked, only to say where it went wrong.
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let error = match serde_path_to_error::deserialize::<_, Instance>(&mut deserializer) {
            Err(e) => {
                let inner = e.path().to_string();
                DecodeError {
                    path: if inner.is_empty() || inner == "." {
                        format!("data[{index}]")
                    } else {
                        format!("data[{index}].{inner}")
                    },
                    message: e.inner().to_string(),
                }
            }
            // Decodes now although it did not before: cannot happen (decoding is deterministic).
            Ok(_) => DecodeError {
                path: format!("data[{index}]"),
                message: "the record does not decode".to_owned(),
            },
        };
        Err(error)
    }

    fn bytes(&self, index: usize) -> &[u8] {
        &self.body[self.records[index].span.clone()]
    }
}

/// The envelope, its records left as raw JSON.
#[derive(Deserialize)]
struct WireRawPage<'a> {
    #[serde(default, deserialize_with = "present", borrow)]
    data: Option<Option<Vec<&'a RawValue>>>,
    #[serde(default, deserialize_with = "null_as_default")]
    next_cursor: String,
    #[serde(default, deserialize_with = "present")]
    has_more: Option<Option<bool>>,
}

/// The fields of a record a summary holds, with the attributes of the same fields of [`Instance`].
#[derive(Deserialize)]
struct WireSummary {
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

impl WireSummary {
    fn into_instance(self) -> Instance {
        Instance {
            name: self.name,
            product_id: self.product_id,
            billing: self.billing,
            resource_specs: self.resource_specs,
            region: self.region,
            status: self.status,
            ..Instance::new(self.id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ppio::Page;
    use serde_json::json;

    fn page(records: serde_json::Value) -> RawPage {
        let body = json!({"data": records, "next_cursor": "c2", "has_more": true});
        RawPage::from_json(body.to_string().into_bytes()).expect("a page")
    }

    #[test]
    fn a_summary_holds_the_fields_counts_need_and_decode_gives_the_whole_record() {
        let record = json!({
            "id": "a1", "name": "trainer", "product_id": "p", "region": "eu",
            "image": "repo/img:1", "command": "python train.py",
            "billing": {"mode": "prepaid", "prepaid": {"end_time": "1767225600",
                "auto_renew": {"enabled": false}}},
            "resource_specs": {"gpu_num": "2", "memory_gb": 62},
            "status": {"status": "exited", "error": "OOM", "message": "killed"},
            "ports": [{"port": 22, "protocol": "tcp", "endpoint": "h:22"}],
        });
        let page = page(json!([record]));
        assert_eq!((page.len(), page.has_more), (1, true));
        assert_eq!(page.next_cursor.as_deref(), Some("c2"));
        let summary = page.summary(0);
        assert_eq!(summary.id.as_str(), "a1");
        assert_eq!(
            (summary.name.as_str(), summary.region.as_str()),
            ("trainer", "eu")
        );
        assert_eq!(summary.resource_specs.as_ref().map(|r| r.gpu_num), Some(2));
        assert_eq!(
            summary.status.as_ref().map(|s| s.error.as_str()),
            Some("OOM")
        );
        let prepaid = summary.billing.as_ref().and_then(|b| b.prepaid.as_ref());
        assert!(prepaid.and_then(|p| p.end_time).is_some());
        assert!(
            summary.image.is_empty() && summary.ports.is_empty(),
            "not in a summary"
        );

        let whole = page.decode(0).expect("decodes");
        let expected = Page::from_json(
            json!({"data": [record], "has_more": false})
                .to_string()
                .as_bytes(),
        )
        .expect("decodes")
        .instances
        .remove(0);
        assert_eq!(whole, expected, "decoded as a full page decodes it");
    }

    #[test]
    fn equal_records_hash_equal_and_any_byte_changes_the_hash() {
        let page = page(json!([
            {"id": "a", "status": {"status": "running"}},
            {"id": "b", "status": {"status": "running"}},
            {"id": "a", "status": {"status": "running"}},
            {"id": "a", "status": {"status": "runninG"}},
        ]));
        assert_eq!(page.record_hash(0), page.record_hash(2));
        assert_ne!(page.record_hash(0), page.record_hash(1));
        assert_ne!(page.record_hash(0), page.record_hash(3));
        let ids: Vec<&str> = page.ids().map(InstanceId::as_str).collect();
        assert_eq!(ids, ["a", "b", "a", "a"]);
    }

    #[test]
    fn a_bad_summary_field_fails_the_page_and_a_bad_other_field_fails_its_decode() {
        let body = json!({"data": [{"id": "a", "region": 5}], "has_more": false});
        let (error, returned) =
            RawPage::from_json(body.to_string().into_bytes()).expect_err("region is a string");
        assert_eq!(error.path, "data[0].region");
        assert_eq!(
            returned,
            body.to_string().into_bytes(),
            "the body comes back"
        );

        let page = page(json!([{"id": "a"}, {"id": "b", "ports": [{"port": "x"}]}]));
        assert!(page.decode(0).is_ok());
        let error = page.decode(1).expect_err("port is not a number");
        assert_eq!(error.path, "data[1].ports[0].port");
    }

    #[test]
    fn the_envelope_rules_are_those_of_a_full_page() {
        for body in [
            json!([]).to_string(),
            json!({"data": [], "has_more": null}).to_string(),
            json!({"has_more": false}).to_string(),
            json!({"data": [{"name": "no id"}], "has_more": false}).to_string(),
            format!(
                r#"{{"data": [{}], "has_more": false}}"#,
                vec!["{\"id\": \"a\"}"; MAX_ITEMS_PLUS_ONE].join(",")
            ),
        ] {
            let raw = RawPage::from_json(body.clone().into_bytes()).map(|_| ());
            let full = Page::from_json(body.as_bytes()).map(|_| ());
            assert_eq!(
                raw.map_err(|(e, _)| e),
                full,
                "{}",
                &body[..body.len().min(80)]
            );
        }
    }

    const MAX_ITEMS_PLUS_ONE: usize = super::super::model::MAX_PAGE_ITEMS + 1;
}
