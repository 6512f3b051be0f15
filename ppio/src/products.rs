//! The PPIO GPU API v2 product list (`GET /gpus/v2/products`), reduced to what a price needs: each
//! product's ID, name, type, GPU model, and its prices per billing mode as exact [`Decimal`]s.
//!
//! Decoding rules:
//! - The envelope is strict: the body must be a JSON object whose `data` is an array (`[]` when
//!   empty). A body without it (`{}`, a gateway's error object sent with HTTP 200) is not an empty
//!   product list.
//! - Integers are read as the instance record reads them: a JSON number or a numeric string, null
//!   or `""` meaning absent. Unknown fields are skipped without being kept; `storage_price_per_gb` is
//!   among them, since PPIO documents no time unit for it.
//! - Prices are integers scaled by `pricing.precision` decimal places (12600 at precision 3 is
//!   12.600) and become [`Decimal`]s, never floats. A precision outside
//!   0..=[`MAX_PRICE_PRECISION`], a price that is negative, fractional or above
//!   [`MAX_PRICE_UNITS`], or a prepaid term outside 1..=[`MAX_TERM_MONTHS`] months fails the whole
//!   read: such a list is not understood, and a price read from it could be off by any factor.
//! - A price that cannot be known is [`ListedPrice::Unknown`], with why, never zero: a billing mode
//!   the product does not list, a `unit` other than `per_hour`, no `final_price`, or no precision.
//! - A product without an ID, a product ID listed twice with different contents, or two prepaid terms
//!   of the same length with different prices fail the whole read: a price must not be ambiguous.
//!
//! Decoding memory is bounded: a body holding more than [`MAX_PAGE_ITEMS`] array items, counted at
//! any depth without allocating, is refused unread; the list keeps at most [`MAX_PRODUCTS`] products
//! and a product at most [`MAX_PREPAID_TERMS`] terms, counted as they are decoded; nesting deeper
//! than serde_json's recursion limit is an error, never a stack overflow.
//!
//! [`Products::redact`] replaces echoes of the API key in every string kept; a product whose ID holds
//! the key makes the client refuse the whole list. A failed read never yields part of a list. This
//! module does no I/O; the client asks for the list (feature `client`).

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use super::api_key::ApiKey;
use super::decimal::Decimal;
use super::error::redact;
use super::model::{
    DecodeError, LenientInt, MAX_PAGE_ITEMS, holds_more_items_than, lenient_int, null_as_default,
    present,
};

/// Most decimal places a product's `pricing.precision` may give its prices; the documented example
/// uses 3. More would be a list this client does not understand (and a precision of 40 could not
/// be represented exactly).
pub const MAX_PRICE_PRECISION: u8 = 9;

/// Largest price accepted, in units of the product's precision: 10^15, at precision 3 a trillion
/// a card-hour, beyond any real price. The bound keeps every derived amount exact: a fleet of a
/// million instances of 1024 cards at this price still sums within a [`Decimal`].
pub const MAX_PRICE_UNITS: i64 = 1_000_000_000_000_000;

/// Most products one list may hold: PPIO sells a few dozen; the bound caps what a hostile list
/// costs to decode (a product takes a few hundred bytes besides its strings).
pub const MAX_PRODUCTS: usize = 10_000;

/// Most prepaid terms one product may list (real products list a handful: 1, 3, 6, 12 months).
pub const MAX_PREPAID_TERMS: usize = 64;

/// Longest prepaid term accepted, in months (ten years).
pub const MAX_TERM_MONTHS: u32 = 120;

/// The `unit` of an hourly price: the only one whose price is known.
const PER_HOUR: &str = "per_hour";

/// Which products a list call asks for: `type` (`gpu` or `cpu`) and `category` (`instance` for
/// instances; `serverless` exists too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProductQuery {
    /// GPU or CPU products.
    pub product_type: ProductType,
    /// Instance or serverless products.
    pub category: ProductCategory,
}

/// The `type` of a product list call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProductType {
    /// GPU products (what PPIO assumes when `type` is empty).
    #[default]
    Gpu,
    /// CPU-only products.
    Cpu,
}

impl ProductType {
    /// The wire value: `gpu` or `cpu`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProductType::Gpu => "gpu",
            ProductType::Cpu => "cpu",
        }
    }
}

/// The `category` of a product list call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProductCategory {
    /// Products for instances: what the operator prices.
    #[default]
    Instance,
    /// Products for serverless endpoints.
    Serverless,
}

impl ProductCategory {
    /// The wire value: `instance` or `serverless`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProductCategory::Instance => "instance",
            ProductCategory::Serverless => "serverless",
        }
    }
}

/// The ID PPIO gives a product, e.g. `prod-a100-80g`; what an instance record's `product_id` names.
/// Never blank.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProductId(String);

impl ProductId {
    /// Wraps an ID; `None` when it is empty or only whitespace.
    pub fn new(raw: impl Into<String>) -> Option<ProductId> {
        let raw = raw.into();
        (!raw.trim().is_empty()).then_some(ProductId(raw))
    }

    /// The ID as PPIO sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for ProductId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProductId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One product, as far as pricing an instance of it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// Product ID.
    pub id: ProductId,
    /// Display name, e.g. `A100-80G`.
    pub name: String,
    /// Product type as sent (wire name `type`), `gpu` or `cpu`.
    pub kind: String,
    /// The GPU each card of the product is, when it has GPUs.
    pub gpu: Option<GpuModel>,
    /// Its prices per billing mode.
    pub pricing: Pricing,
}

impl Product {
    /// Whether PPIO calls it a CPU product (`type` `cpu`): an instance of it holds no GPU card.
    pub fn is_cpu(&self) -> bool {
        self.kind.trim().eq_ignore_ascii_case("cpu")
    }
}

/// A product's GPU (`resource_spec.gpu`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuModel {
    /// Model name, e.g. `A100`.
    pub name: String,
    /// Memory of one card in GB (0 when not sent).
    pub memory_gb: i64,
}

/// A product's prices per billing mode. Prices are per GPU card, as the documented example shows
/// (its 1-month prepaid price is exactly 720 hours of its postpaid price).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pricing {
    /// Pay as you go, per card-hour.
    pub postpaid: ListedPrice,
    /// Spot capacity, per card-hour.
    pub spot: ListedPrice,
    /// Prepaid terms, per card and term, in the order sent; each length appears once.
    pub prepaid: Vec<TermPrice>,
}

impl Pricing {
    /// Every mode unknown for the same reason.
    fn unknown(reason: UnknownPrice) -> Pricing {
        Pricing {
            postpaid: ListedPrice::Unknown(reason.clone()),
            spot: ListedPrice::Unknown(reason),
            prepaid: Vec::new(),
        }
    }
}

/// The price of one billing mode (or of one prepaid term): known exactly, or unknown with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListedPrice {
    /// Known, exactly.
    Known {
        /// The list price (`base_price`), when sent.
        list: Option<Decimal>,
        /// What is charged (`final_price`, after discounts).
        charged: Decimal,
    },
    /// Not known: never to be read as zero.
    Unknown(UnknownPrice),
}

/// Why a price is not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnknownPrice {
    /// The product has no `pricing` at all.
    NoPricing,
    /// The product does not list this billing mode.
    NotListed,
    /// `pricing.precision` was not sent, so the integers cannot be read as prices.
    NoPrecision,
    /// No `final_price` was sent for this mode.
    NoFinalPrice,
    /// The price is per something other than an hour (as sent, redacted of the API key; the
    /// documented unit is `per_hour`).
    UnitNotPerHour {
        /// The unit sent, possibly empty.
        unit: String,
    },
}

impl fmt::Display for UnknownPrice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnknownPrice::NoPricing => f.write_str("the product list gives the product no pricing"),
            UnknownPrice::NotListed => {
                f.write_str("the product list gives no price for this billing mode")
            }
            UnknownPrice::NoPrecision => {
                f.write_str("the product's prices come without a precision")
            }
            UnknownPrice::NoFinalPrice => f.write_str("the product list gives no final price"),
            UnknownPrice::UnitNotPerHour { unit } => {
                // A unit is a word; a long one is cut (after redaction, which happened on decoding).
                let cut = crate::text::floor_char_boundary(unit, 32);
                let more = if cut < unit.len() { "…" } else { "" };
                write!(f, "the price is per {:?}{more}, not per hour", &unit[..cut])
            }
        }
    }
}

/// The price of one prepaid term, per card for the whole term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermPrice {
    /// Length of the term in months (1..=[`MAX_TERM_MONTHS`]).
    pub months: u32,
    /// Its price.
    pub price: ListedPrice,
}

/// A product list: every product by its ID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Products {
    by_id: BTreeMap<ProductId, Product>,
}

impl Products {
    /// Decodes a product list body: a strict envelope (`data` an array), exact prices within
    /// bounds ([`MAX_PRICE_PRECISION`], [`MAX_PRICE_UNITS`], [`MAX_TERM_MONTHS`]), prices that
    /// cannot be known kept as [`UnknownPrice`], memory bounded ([`MAX_PRODUCTS`],
    /// [`MAX_PREPAID_TERMS`]). A list that fails is never returned in part. The API key is not redacted here: see [`Products::redact`].
    pub fn from_json(body: &[u8]) -> Result<Products, DecodeError> {
        let whole = |message: String| DecodeError {
            path: ".".to_owned(),
            message,
        };
        if body.trim_ascii_start().first() != Some(&b'{') {
            return Err(whole("expected a JSON object".to_owned()));
        }
        if holds_more_items_than(body, MAX_PAGE_ITEMS) {
            return Err(whole(format!(
                "the product list holds more than {MAX_PAGE_ITEMS} array items; {REFUSED_UNREAD} \
                 to bound memory"
            )));
        }
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let wire: WireList =
            serde_path_to_error::deserialize(&mut deserializer).map_err(|e| DecodeError {
                path: Some(e.path().to_string())
                    .filter(|path| !path.is_empty())
                    .unwrap_or_else(|| ".".to_owned()),
                message: e.inner().to_string(),
            })?;
        deserializer.end().map_err(|e| whole(e.to_string()))?;
        let products = match wire.data {
            Some(Some(products)) => products.0,
            data => {
                let problem = if data.is_none() { "missing" } else { "null" };
                return Err(whole(format!(
                    "not a product list: `data` is {problem}; a product list must carry `data` \
                     (an array, `[]` when empty)"
                )));
            }
        };
        let mut list = Products::default();
        for (index, product) in products.into_iter().enumerate() {
            let product = product.into_product(index)?;
            list.insert(product).map_err(|message| DecodeError {
                path: format!("data[{index}].id"),
                message,
            })?;
        }
        Ok(list)
    }

    /// Adds the products of `other` (e.g. the CPU products to the GPU ones); fails, changing
    /// nothing, when a product ID is in both with different contents.
    pub fn merge(&mut self, other: Products) -> Result<(), DecodeError> {
        if let Some(conflict) = other.by_id.values().find(|product| {
            self.by_id
                .get(&product.id)
                .is_some_and(|have| have != *product)
        }) {
            return Err(DecodeError {
                path: ".".to_owned(),
                message: conflicting(&conflict.id),
            });
        }
        self.by_id.extend(other.by_id);
        Ok(())
    }

    /// Adds one product; an ID already held with other contents is an error.
    fn insert(&mut self, product: Product) -> Result<(), String> {
        match self.by_id.entry(product.id.clone()) {
            Entry::Vacant(entry) => {
                entry.insert(product);
                Ok(())
            }
            Entry::Occupied(entry) if *entry.get() == product => Ok(()),
            Entry::Occupied(entry) => Err(conflicting(entry.key())),
        }
    }

    /// The product with this ID.
    pub fn get(&self, id: &str) -> Option<&Product> {
        self.by_id.get(id)
    }

    /// How many products the list holds.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether the list holds no product.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Every product, by ID.
    pub fn iter(&self) -> impl Iterator<Item = &Product> {
        self.by_id.values()
    }

    /// Replaces every echo of the API key in every string kept (names, types, GPU models, units),
    /// and returns how many strings changed. IDs are left as they are, like instance IDs: see
    /// [`Products::id_holding`].
    pub fn redact(&mut self, key: &ApiKey) -> usize {
        let mut changed = 0;
        for product in self.by_id.values_mut() {
            // Destructured without `..`, so a field added to a product cannot be forgotten here.
            let Product {
                id: _,
                name,
                kind,
                gpu,
                pricing:
                    Pricing {
                        postpaid,
                        spot,
                        prepaid,
                    },
            } = product;
            let mut strings: Vec<&mut String> = vec![name, kind];
            if let Some(GpuModel { name, memory_gb: _ }) = gpu {
                strings.push(name);
            }
            let prices = [postpaid, spot]
                .into_iter()
                .chain(prepaid.iter_mut().map(|term| &mut term.price));
            for price in prices {
                if let ListedPrice::Unknown(UnknownPrice::UnitNotPerHour { unit }) = price {
                    strings.push(unit);
                }
            }
            changed += strings
                .into_iter()
                .map(|text| usize::from(redact(text, key)))
                .sum::<usize>();
        }
        changed
    }

    /// The first product whose ID holds an echo of the API key: such a list cannot be used safely
    /// (the ID would show the key, and a redacted one could collide with another).
    pub fn id_holding(&self, key: &ApiKey) -> Option<usize> {
        self.by_id.keys().position(|id| key.appears_in(id.as_str()))
    }
}

/// Words of the error of a list refused by the item bound, which the client looks for.
pub(crate) const REFUSED_UNREAD: &str = "refused unread";

fn conflicting(id: &ProductId) -> String {
    format!(
        "product {:?} is listed twice with different contents, so its price is ambiguous",
        crate::text::truncate(id.as_str(), 64)
    )
}

/// The body as sent; `data` is `Some(None)` when null and `None` when absent.
#[derive(Deserialize)]
struct WireList {
    #[serde(default, deserialize_with = "present")]
    data: Option<Option<Bounded<WireProduct, MAX_PRODUCTS>>>,
}

#[derive(Deserialize)]
struct WireProduct {
    #[serde(default, deserialize_with = "null_as_default")]
    id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    name: String,
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    kind: String,
    #[serde(default)]
    resource_spec: Option<WireSpec>,
    #[serde(default)]
    pricing: Option<WirePricing>,
}

#[derive(Deserialize)]
struct WireSpec {
    #[serde(default)]
    gpu: Option<WireGpu>,
}

#[derive(Deserialize)]
struct WireGpu {
    #[serde(default, deserialize_with = "null_as_default")]
    name: String,
    #[serde(default, deserialize_with = "lenient_int")]
    memory_gb: i64,
}

#[derive(Deserialize)]
struct WirePricing {
    #[serde(default)]
    precision: LenientInt,
    #[serde(default)]
    postpaid: Option<WireHourly>,
    #[serde(default)]
    spot: Option<WireHourly>,
    #[serde(default)]
    prepaid: Option<Bounded<WireTerm, MAX_PREPAID_TERMS>>,
}

#[derive(Deserialize)]
struct WireHourly {
    #[serde(default)]
    base_price: LenientInt,
    #[serde(default)]
    final_price: LenientInt,
    #[serde(default, deserialize_with = "null_as_default")]
    unit: String,
}

#[derive(Deserialize)]
struct WireTerm {
    #[serde(default)]
    duration_months: LenientInt,
    #[serde(default)]
    base_price: LenientInt,
    #[serde(default)]
    final_price: LenientInt,
}

/// Longest product or GPU model name kept, in bytes: a name is shown, never parsed.
pub const MAX_PRODUCT_NAME_BYTES: usize = 128;

/// `raw` as a name to show: control characters and bidirectional marks stripped, then cut to
/// [`MAX_PRODUCT_NAME_BYTES`]. Cleaned here, before [`Products::redact`] looks for the API key, so
/// that stripping cannot join pieces of the key after redaction.
fn display_name(raw: &str) -> String {
    crate::text::truncate(
        &crate::text::strip_control(raw, false),
        MAX_PRODUCT_NAME_BYTES,
    )
}

impl WireProduct {
    fn into_product(self, index: usize) -> Result<Product, DecodeError> {
        let at = |field: &str| format!("data[{index}].{field}");
        let WireProduct {
            id,
            name,
            kind,
            resource_spec,
            pricing,
        } = self;
        let id = ProductId::new(id).ok_or_else(|| DecodeError {
            path: at("id"),
            message: "the product ID is missing or empty, so no instance can be priced by it"
                .to_owned(),
        })?;
        let pricing = match pricing {
            Some(pricing) => pricing.into_pricing(&at)?,
            None => Pricing::unknown(UnknownPrice::NoPricing),
        };
        Ok(Product {
            id,
            name: display_name(&name),
            kind: display_name(&kind),
            gpu: resource_spec.and_then(|spec| spec.gpu).map(|gpu| GpuModel {
                name: display_name(&gpu.name),
                memory_gb: gpu.memory_gb,
            }),
            pricing,
        })
    }
}

impl WirePricing {
    fn into_pricing(self, at: &dyn Fn(&str) -> String) -> Result<Pricing, DecodeError> {
        let precision = match self.precision.0 {
            None => None,
            Some(precision) => Some(
                u8::try_from(precision)
                    .ok()
                    .filter(|&p| p <= MAX_PRICE_PRECISION)
                    .ok_or_else(|| DecodeError {
                        path: at("pricing.precision"),
                        message: format!(
                            "precision {precision} is out of range (0 to {MAX_PRICE_PRECISION} \
                             decimal places)"
                        ),
                    })?,
            ),
        };
        let postpaid = hourly(self.postpaid, precision, &at("pricing.postpaid"))?;
        let spot = hourly(self.spot, precision, &at("pricing.spot"))?;
        let terms = self.prepaid.map(|terms| terms.0).unwrap_or_default();
        let mut prepaid: Vec<TermPrice> = Vec::with_capacity(terms.len());
        for (index, term) in terms.into_iter().enumerate() {
            let path = at(&format!("pricing.prepaid[{index}]"));
            let months = term
                .duration_months
                .0
                .and_then(|months| u32::try_from(months).ok())
                .filter(|months| (1..=MAX_TERM_MONTHS).contains(months))
                .ok_or_else(|| DecodeError {
                    path: format!("{path}.duration_months"),
                    message: format!(
                        "a prepaid term must last 1 to {MAX_TERM_MONTHS} months, got {}",
                        term.duration_months
                            .0
                            .map_or_else(|| "none".to_owned(), |m| m.to_string())
                    ),
                })?;
            let list = price(term.base_price, precision, &format!("{path}.base_price"))?;
            let charged = price(term.final_price, precision, &format!("{path}.final_price"))?;
            let price = known_or(list, charged, precision);
            if let Some(same) = prepaid.iter().find(|other| other.months == months) {
                if same.price != price {
                    return Err(DecodeError {
                        path,
                        message: format!(
                            "two prepaid terms of {months} months with different prices, so \
                             the price is ambiguous"
                        ),
                    });
                }
                continue;
            }
            prepaid.push(TermPrice { months, price });
        }
        Ok(Pricing {
            postpaid,
            spot,
            prepaid,
        })
    }
}

/// An hourly mode's price: its numbers are checked whatever its unit, then it is known only per
/// hour, with a precision and a final price.
fn hourly(
    wire: Option<WireHourly>,
    precision: Option<u8>,
    path: &str,
) -> Result<ListedPrice, DecodeError> {
    let Some(wire) = wire else {
        return Ok(ListedPrice::Unknown(UnknownPrice::NotListed));
    };
    let list = price(wire.base_price, precision, &format!("{path}.base_price"))?;
    let charged = price(wire.final_price, precision, &format!("{path}.final_price"))?;
    if wire.unit != PER_HOUR {
        return Ok(ListedPrice::Unknown(UnknownPrice::UnitNotPerHour {
            unit: wire.unit,
        }));
    }
    Ok(known_or(list, charged, precision))
}

fn known_or(list: Option<Decimal>, charged: Option<Decimal>, precision: Option<u8>) -> ListedPrice {
    match (precision, charged) {
        (None, _) => ListedPrice::Unknown(UnknownPrice::NoPrecision),
        (Some(_), None) => ListedPrice::Unknown(UnknownPrice::NoFinalPrice),
        (Some(_), Some(charged)) => ListedPrice::Known { list, charged },
    }
}

/// A price's integer within bounds, as a decimal at `precision` places (`None` when absent, or
/// when there is no precision to read it with).
fn price(
    value: LenientInt,
    precision: Option<u8>,
    path: &str,
) -> Result<Option<Decimal>, DecodeError> {
    let Some(units) = value.0 else {
        return Ok(None);
    };
    let units = u128::try_from(units)
        .ok()
        .filter(|_| units <= MAX_PRICE_UNITS)
        .ok_or_else(|| DecodeError {
            path: path.to_owned(),
            message: format!("price {units} is out of range (0 to {MAX_PRICE_UNITS})"),
        })?;
    Ok(precision.and_then(|precision| Decimal::new(units, precision)))
}

/// A JSON array of at most `N` items, refused as soon as it holds more: memory stays bounded
/// whatever the array's length.
struct Bounded<T, const N: usize>(Vec<T>);

impl<'de, T: Deserialize<'de>, const N: usize> Deserialize<'de> for Bounded<T, N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(BoundedVisitor(PhantomData))
    }
}

struct BoundedVisitor<T, const N: usize>(PhantomData<T>);

impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for BoundedVisitor<T, N> {
    type Value = Bounded<T, N>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an array of at most {N} items")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            if items.len() == N {
                return Err(de::Error::custom(format!(
                    "more than {N} items; refused to bound memory"
                )));
            }
            items.push(item);
        }
        Ok(Bounded(items))
    }
}

#[cfg(test)]
mod tests;
