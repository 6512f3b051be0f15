//! A list page whose records stay as the server sent them until someone needs them.
//!
//! Most syncs of a large account find most records as they were: decoding each one (two dozen
//! strings, timestamps, lists) only to find it unchanged was most of the CPU a sync in which nothing
//! changed cost. A [`RawPage`] therefore only locates each record and hashes its bytes; its summary
//! ([`RawPage::decode_summary`], see [`super::record_summary`]) and the whole record ([`RawPage::decode`])
//! are decoded when asked.
//!
//! The rules of [`super::model`] hold unchanged: the envelope is checked the same way, the item bound
//! is applied first, every field is decoded by the same rules as in a full page, and an error says
//! where in the page it is (`data[3].billing.mode`).

use std::hash::{BuildHasher, RandomState};
use std::ops::Range;
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::model::{
    DecodeError, Instance, check_envelope, located_error, null_as_default, present, required,
};
use super::record_summary::{self, RecordSummary};

/// The per-process key of [`hash_of`]: no server can choose bytes that collide.
static HASHER: LazyLock<RandomState> = LazyLock::new(RandomState::new);

/// A hash of `bytes` (a record, or a whole body): equal bytes hash equal within one process.
pub(super) fn hash_of(bytes: &[u8]) -> u64 {
    HASHER.hash_one(bytes)
}

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
    /// A hash of its bytes ([`hash_of`]).
    hash: u64,
}

/// What reading a body found: where its records are, with their hashes, and what its envelope
/// says. It holds for any body with the same bytes, which need not be read again.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    body_len: usize,
    records: Vec<RawRecord>,
    next_cursor: Option<String>,
    has_more: bool,
}

impl Layout {
    /// The estimated memory it takes.
    pub(super) fn footprint(&self) -> usize {
        std::mem::size_of::<Layout>()
            + 48
            + self.records.len() * std::mem::size_of::<RawRecord>()
            + self.next_cursor.as_ref().map_or(0, String::capacity)
    }
}

impl RawPage {
    /// Reads a list response body as `Page::from_json` does, locating its
    /// records without decoding them.
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

    /// The page of `body`, whose bytes are those `layout` was found in: not read again. The body
    /// comes back when it cannot be (its length differs).
    pub(super) fn with_layout(body: Vec<u8>, layout: &Layout) -> Result<RawPage, Vec<u8>> {
        if body.len() != layout.body_len {
            return Err(body);
        }
        Ok(RawPage {
            body,
            records: layout.records.clone(),
            next_cursor: layout.next_cursor.clone(),
            has_more: layout.has_more,
        })
    }

    /// What reading this page's body found, for [`RawPage::with_layout`].
    pub(super) fn layout(&self) -> Layout {
        Layout {
            body_len: self.body.len(),
            records: self.records.clone(),
            next_cursor: self.next_cursor.clone(),
            has_more: self.has_more,
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
            // `raw` borrows from `text`: its offset there is where the record starts.
            let span = (raw.get().as_ptr() as usize)
                .checked_sub(start)
                .map(|at| at..at + raw.get().len())
                .filter(|span| span.end <= text.len())
                .ok_or_else(|| located_error(body))?;
            records.push(RawRecord {
                span,
                hash: hash_of(raw.get().as_bytes()),
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

    /// A hash of record `index` exactly as sent: equal bytes, equal hash (within one process).
    pub fn record_hash(&self, index: usize) -> u64 {
        self.records[index].hash
    }

    /// Record `index`'s [`RecordSummary`], not redacted.
    pub fn decode_summary(&self, index: usize) -> Result<RecordSummary, DecodeError> {
        self.decode_as::<record_summary::Wire>(index)
            .map(record_summary::Wire::into_summary)
    }

    /// Record `index` decoded whole, not redacted.
    pub fn decode(&self, index: usize) -> Result<Instance, DecodeError> {
        self.decode_as::<Instance>(index)
    }

    /// Record `index` decoded as a `T`; an error says where in the page it went wrong.
    fn decode_as<T: for<'de> Deserialize<'de>>(&self, index: usize) -> Result<T, DecodeError> {
        let bytes = self.bytes(index);
        if let Some(decoded) = simdutf8::basic::from_utf8(bytes)
            .ok()
            .and_then(|text| serde_json::from_str::<T>(text).ok())
        {
            return Ok(decoded);
        }
        // Decoded again with the path tracked, only to say where it went wrong.
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let error = match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record_summary::PrepaidTerm;
    use crate::{InstanceId, Page};
    use jiff::Timestamp;
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
        let summary = page.decode_summary(0).expect("decodes");
        let end = "1767225600".parse::<i64>().map(Timestamp::from_second);
        assert_eq!(
            summary,
            RecordSummary {
                id: InstanceId::new("a1").expect("an ID"),
                name: "trainer".to_owned(),
                product_id: "p".to_owned(),
                region: "eu".to_owned(),
                status: "exited".to_owned(),
                has_error: true,
                billing_mode: "prepaid".to_owned(),
                prepaid: Some(PrepaidTerm {
                    months: 0,
                    end_time: Some(end.expect("a number").expect("a time")),
                    auto_renew: false,
                }),
                gpus: 2,
            }
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
    }

    #[test]
    fn a_bad_field_fails_the_decode_that_reads_it_and_says_where() {
        let page = page(json!([
            {"id": "a"},
            {"id": "b", "ports": [{"port": "x"}]},
            {"id": "c", "region": 5},
            {"name": "no id"},
            5,
        ]));
        assert!(page.decode(0).is_ok() && page.decode_summary(0).is_ok());
        assert!(page.decode_summary(1).is_ok(), "ports are not in a summary");
        let error = page.decode(1).expect_err("port is not a number");
        assert_eq!(error.path, "data[1].ports[0].port");
        for error in [page.decode_summary(2), page.decode(2).map(|i| (&i).into())] {
            assert_eq!(
                error.expect_err("region is a string").path,
                "data[2].region"
            );
        }
        let error = page.decode_summary(3).expect_err("no ID");
        assert_eq!(error.path, "data[3]");
        assert!(error.message.contains("ID is missing"), "{error}");
        assert_eq!(
            page.decode_summary(4).expect_err("not a record").path,
            "data[4]"
        );
    }

    #[test]
    fn a_body_that_is_not_a_page_comes_back_with_the_error() {
        let body = json!({"data": [{"id": "a"}], "has_more": "no"}).to_string();
        let (error, returned) =
            RawPage::from_json(body.clone().into_bytes()).expect_err("has_more is a boolean");
        assert_eq!(error.path, "has_more");
        assert_eq!(returned, body.into_bytes(), "the body comes back");
    }

    #[test]
    fn the_envelope_rules_are_those_of_a_full_page() {
        for body in [
            json!([]).to_string(),
            json!({"data": [], "has_more": null}).to_string(),
            json!({"has_more": false}).to_string(),
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
