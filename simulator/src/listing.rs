//! The list operation as a pure function: query parameters in, one page out.
//!
//! Parsing and validating the query (`limit`, `cursor`, `name`, `status`, `regions`, `billing_mode`),
//! filtering and cutting a page out of the [`Store`]'s listing order live here, with no HTTP and no
//! shared state, so the paging rules can be read and tested on their own. [`super::api`] wraps this in the HTTP endpoint.
//!
//! Instances are listed by `created_at`, then `id`. A cursor names the last instance served (its sort
//! key), not an offset: the next page holds the instances sorted after it *in the state at the time of
//! that request*, so instances added or removed between pages behave as on a real service (no
//! duplicates; an instance added before the cursor's position is simply not seen in this pass).

use std::collections::BTreeMap;

use serde_json::Value;

use super::store::{SortKey, Store};

/// Longest accepted `cursor`, in characters (from the API documentation).
const MAX_CURSOR_CHARS: usize = 1024;
/// Longest accepted `name` filter, in characters.
const MAX_NAME_CHARS: usize = 255;
/// Longest accepted `status` filter, in characters.
const MAX_STATUS_CHARS: usize = 63;
/// Longest accepted `regions` filter, in characters.
const MAX_REGIONS_CHARS: usize = 1024;
/// Marks the cursor format, so a cursor from elsewhere is refused rather than misread.
const CURSOR_VERSION: &str = "v1";

/// Page sizes of the simulated service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageSizes {
    /// Used when `limit` is absent or 0.
    pub(crate) default: usize,
    /// Larger `limit`s are clamped to this.
    pub(crate) max: usize,
}

impl PageSizes {
    /// Page sizes from a configuration, made consistent: both at least 1, default at most max.
    pub(crate) fn new(default: usize, max: usize) -> PageSizes {
        let max = max.max(1);
        PageSizes {
            default: default.clamp(1, max),
            max,
        }
    }
}

/// A point in the listing order: the sort key of the last instance served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cursor {
    created_at: i64,
    id: String,
}

impl Cursor {
    /// A cursor before every instance: following it serves the first page again.
    pub(crate) fn start() -> Cursor {
        Cursor {
            created_at: i64::MIN,
            id: String::new(),
        }
    }

    /// The cursor's opaque text form (hex, so it is safe in a URL without escaping).
    pub(crate) fn encode(&self) -> String {
        let plain = format!("{CURSOR_VERSION}|{}|{}", self.created_at, self.id);
        plain.bytes().map(|byte| format!("{byte:02x}")).collect()
    }

    /// Reads a cursor produced by [`Cursor::encode`]; `None` when it is not one.
    pub(crate) fn decode(text: &str) -> Option<Cursor> {
        if !text.len().is_multiple_of(2) {
            return None;
        }
        let bytes = (0..text.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        let plain = String::from_utf8(bytes).ok()?;
        let rest = plain.strip_prefix(CURSOR_VERSION)?.strip_prefix('|')?;
        let (created_at, id) = rest.split_once('|')?;
        Some(Cursor {
            created_at: created_at.parse().ok()?,
            id: id.to_owned(),
        })
    }

    fn sort_key(&self) -> SortKey {
        (self.created_at, self.id.clone())
    }
}

/// The billing modes the `billing_mode` filter accepts.
const BILLING_MODES: [&str; 3] = ["postpaid", "prepaid", "spot"];

/// A validated list query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListQuery {
    /// Page size after applying the default and the maximum.
    pub(crate) limit: usize,
    /// Where the page starts; `None` for the first page.
    pub(crate) cursor: Option<Cursor>,
    /// Lower-cased substring of name or id; `None` for no filter.
    pub(crate) name: Option<String>,
    /// Exact `status.status`; `None` for no filter.
    pub(crate) status: Option<String>,
    /// Accepted regions; empty for no filter.
    pub(crate) regions: Vec<String>,
    /// Exact `billing.mode`; `None` for no filter.
    pub(crate) billing_mode: Option<String>,
}

impl ListQuery {
    /// Whether any filter is set.
    fn has_filters(&self) -> bool {
        self.name.is_some()
            || self.status.is_some()
            || !self.regions.is_empty()
            || self.billing_mode.is_some()
    }
}

/// Validates the query parameters of a list request. The error is the message of a 400
/// `VALIDATOR_PARAM` answer. Unknown parameters are ignored, as most services do.
pub(crate) fn parse_list_query(
    params: &BTreeMap<String, String>,
    sizes: PageSizes,
) -> Result<ListQuery, String> {
    let param = |name: &str| params.get(name).map(String::as_str).unwrap_or("");
    let limit = parse_limit(param("limit"), sizes)?;

    let cursor_text = param("cursor");
    check_length("cursor", cursor_text, MAX_CURSOR_CHARS)?;
    let cursor = if cursor_text.is_empty() {
        None
    } else {
        Some(Cursor::decode(cursor_text).ok_or_else(|| {
            "invalid cursor: pass the next_cursor of a previous response unchanged".to_owned()
        })?)
    };

    let name = param("name");
    check_length("name", name, MAX_NAME_CHARS)?;
    let status = param("status");
    check_length("status", status, MAX_STATUS_CHARS)?;
    let regions = param("regions");
    check_length("regions", regions, MAX_REGIONS_CHARS)?;

    let billing_mode = param("billing_mode");
    if !billing_mode.is_empty() && !BILLING_MODES.contains(&billing_mode) {
        return Err(format!(
            "invalid billing_mode {billing_mode:?}: must be one of postpaid, prepaid, spot, or empty"
        ));
    }

    Ok(ListQuery {
        limit,
        cursor,
        name: non_empty(name).map(str::to_lowercase),
        status: non_empty(status).map(str::to_owned),
        regions: regions
            .split(',')
            .map(str::trim)
            .filter(|region| !region.is_empty())
            .map(str::to_owned)
            .collect(),
        billing_mode: non_empty(billing_mode).map(str::to_owned),
    })
}

/// `limit`: absent, empty or 0 → default; above the maximum → the maximum; negative or not an integer
/// → error.
fn parse_limit(text: &str, sizes: PageSizes) -> Result<usize, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(sizes.default);
    }
    let digits = text.strip_prefix('+').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit()) {
        // Saturate: a huge but well-formed limit is clamped like any other too-large one.
        let requested = digits.parse::<usize>().unwrap_or(usize::MAX);
        return Ok(match requested {
            0 => sizes.default,
            n => n.min(sizes.max),
        });
    }
    match text.strip_prefix('-') {
        Some(negative) if !negative.is_empty() && negative.bytes().all(|b| b.is_ascii_digit()) => {
            Err(format!("invalid limit {text}: must be >= 0"))
        }
        _ => Err(format!("invalid limit {text:?}: must be an integer >= 0")),
    }
}

fn check_length(name: &str, value: &str, max_chars: usize) -> Result<(), String> {
    let chars = value.chars().count();
    if chars > max_chars {
        return Err(format!(
            "{name} is {chars} characters long; at most {max_chars} are allowed"
        ));
    }
    Ok(())
}

fn non_empty(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

/// Whether an instance record passes the query's filters. Reads the record in place: it runs for
/// every stored instance on every page.
fn matches(id: &str, record: &Value, query: &ListQuery) -> bool {
    fn text(value: Option<&Value>) -> &str {
        value.and_then(Value::as_str).unwrap_or("")
    }
    if let Some(needle) = &query.name {
        let name = text(record.get("name")).to_lowercase();
        if !name.contains(needle) && !id.to_lowercase().contains(needle) {
            return false;
        }
    }
    if let Some(status) = &query.status
        && text(record.pointer("/status/status")) != status
    {
        return false;
    }
    if !query.regions.is_empty()
        && !query
            .regions
            .iter()
            .any(|region| region == text(record.get("region")))
    {
        return false;
    }
    if let Some(mode) = &query.billing_mode
        && text(record.pointer("/billing/mode")) != mode
    {
        return false;
    }
    true
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Page {
    /// The instances of the page, in listing order.
    pub(crate) data: Vec<Value>,
    /// Cursor for the next page; empty on the last page.
    pub(crate) next_cursor: String,
    /// Whether more instances follow this page.
    pub(crate) has_more: bool,
    /// How many instances match the filters in all (all pages).
    pub(crate) total: usize,
    /// The last matching instance before the page (at or before the cursor), if any: what the
    /// `duplicate_ids` fault repeats.
    pub(crate) previous: Option<Value>,
}

impl Page {
    /// The page as the API sends it.
    pub(crate) fn to_json(&self) -> Value {
        serde_json::json!({
            "data": self.data,
            "next_cursor": self.next_cursor,
            "has_more": self.has_more,
            "total": self.total,
        })
    }
}

/// Cuts the page the query asks for out of the stored instances: from the record after the cursor
/// on, in listing order, the first `limit` that pass the filters. `total` needs a pass over every
/// record only when a filter is set.
pub(crate) fn list_page(store: &Store, query: &ListQuery) -> Page {
    let cursor = query.cursor.as_ref().map(Cursor::sort_key);
    let passes = |key: &SortKey, record: &Value| matches(&key.1, record, query);
    let total = if query.has_filters() {
        store
            .iter()
            .filter(|(id, record)| matches(id, record, query))
            .count()
    } else {
        store.len()
    };
    let mut data: Vec<(&SortKey, &Value)> = store
        .after(cursor.as_ref())
        .filter(|(key, record)| passes(key, record))
        .take(query.limit + 1)
        .collect();
    let has_more = data.len() > query.limit;
    data.truncate(query.limit);
    let next_cursor = match data.last() {
        Some(((created_at, id), _)) if has_more => Cursor {
            created_at: *created_at,
            id: id.clone(),
        }
        .encode(),
        _ => String::new(),
    };
    // The last matching instance at or before the cursor.
    let previous = cursor.as_ref().and_then(|cursor| {
        store
            .up_to_backwards(cursor)
            .find(|(key, record)| passes(key, record))
            .map(|(_, record)| record.clone())
    });
    Page {
        data: data.into_iter().map(|(_, record)| record.clone()).collect(),
        next_cursor,
        has_more,
        total,
        previous,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sizes() -> PageSizes {
        PageSizes::new(20, 100)
    }

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn store(records: Vec<Value>) -> Store {
        Store::new(
            records
                .into_iter()
                .map(|r| (r["id"].as_str().expect("id").to_owned(), r)),
        )
    }

    fn ids(page: &Page) -> Vec<&str> {
        page.data.iter().filter_map(|r| r["id"].as_str()).collect()
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = Cursor {
            created_at: 1785780950,
            id: "ca338f12f3".to_owned(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(
            Cursor::decode(&Cursor::start().encode()),
            Some(Cursor::start())
        );
        for garbage in ["zz", "abc", "deadbeef", "😀😀", "7631"] {
            assert_eq!(Cursor::decode(garbage), None, "{garbage}");
        }
    }

    #[test]
    fn limit_defaults_clamps_and_rejects() {
        let limit = |text: &str| parse_list_query(&params(&[("limit", text)]), sizes());
        assert_eq!(limit("").map(|q| q.limit), Ok(20));
        assert_eq!(limit("0").map(|q| q.limit), Ok(20));
        assert_eq!(limit("7").map(|q| q.limit), Ok(7));
        assert_eq!(limit("101").map(|q| q.limit), Ok(100));
        assert_eq!(limit("99999999999999999999999").map(|q| q.limit), Ok(100));
        assert!(limit("-1").is_err());
        assert!(limit("1.5").is_err());
        assert!(limit("ten").is_err());
    }

    #[test]
    fn page_sizes_are_made_consistent() {
        assert_eq!(PageSizes::new(0, 0), PageSizes { default: 1, max: 1 });
        assert_eq!(
            PageSizes::new(50, 10),
            PageSizes {
                default: 10,
                max: 10
            }
        );
    }

    #[test]
    fn overlong_parameters_are_refused() {
        let long = "x".repeat(256);
        assert!(parse_list_query(&params(&[("name", &long)]), sizes()).is_err());
        let long = "x".repeat(64);
        assert!(parse_list_query(&params(&[("status", &long)]), sizes()).is_err());
        let long = "a".repeat(1026);
        assert!(parse_list_query(&params(&[("cursor", &long)]), sizes()).is_err());
    }

    #[test]
    fn regions_ignore_blanks_and_whitespace() {
        let query = parse_list_query(&params(&[("regions", " us-west-1, ,cn-east-1,")]), sizes())
            .expect("valid");
        assert_eq!(query.regions, vec!["us-west-1", "cn-east-1"]);
        let query = parse_list_query(&params(&[("regions", " , ")]), sizes()).expect("valid");
        assert!(query.regions.is_empty());
    }

    #[test]
    fn listing_orders_by_created_at_then_id_reading_string_timestamps() {
        let instances = store(vec![
            json!({"id": "c", "created_at": 30}),
            json!({"id": "b", "created_at": "10"}),
            json!({"id": "a", "created_at": 30}),
            json!({"id": "d"}),
        ]);
        let query = parse_list_query(&BTreeMap::new(), sizes()).expect("valid");
        assert_eq!(
            ids(&list_page(&instances, &query)),
            vec!["d", "b", "a", "c"]
        );
    }

    #[test]
    fn a_cursor_resumes_after_its_instance_even_when_that_instance_was_removed() {
        let mut instances = store(
            (0..5)
                .map(|i| json!({"id": format!("i{i}"), "created_at": i}))
                .collect(),
        );
        let mut query = parse_list_query(&params(&[("limit", "2")]), sizes()).expect("valid");
        let first = list_page(&instances, &query);
        assert_eq!(ids(&first), vec!["i0", "i1"]);
        instances.remove("i1");
        query.cursor = Cursor::decode(&first.next_cursor);
        let second = list_page(&instances, &query);
        assert_eq!(ids(&second), vec!["i2", "i3"]);
        assert_eq!(second.total, 4);
        assert_eq!(
            second.previous.as_ref().map(|r| r["id"].clone()),
            Some(json!("i0"))
        );
    }
}
