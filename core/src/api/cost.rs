//! What the API shows of cost: a view's `spec.cost` (its currency label and hourly budget), a view's
//! `status.cost` (what its instances billed now spend an hour) and a mirror's `status.cost` (what
//! its instance costs). Every amount is an exact decimal string as PPIO's integers and `precision`
//! give it (`12.600`), never a float; every amount is in the view's `spec.cost.currency`, which
//! PPIO's answer does not name and the operator never guesses.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A mirror's condition: True while its instance's price is known, False with why not.
pub const PRICE_KNOWN: &str = "PriceKnown";
/// A view's condition: True while the prices it uses were read within the product list's time to
/// live (or on request), False while the last read failed and older prices (or none) are used.
pub const PRICES_CURRENT: &str = "PricesCurrent";
/// A view's condition, with `spec.cost.hourlyBudget` set: True while the hourly spend is within it,
/// False above it, Unknown while prices unknown could change the answer.
pub const WITHIN_BUDGET: &str = "WithinBudget";

/// Longest currency label, in characters.
pub const MAX_CURRENCY_CHARS: usize = 16;

/// How the view's costs are labelled and held to a budget.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostOptions {
    /// The currency PPIO bills this account in, e.g. `CNY` or `USD`: a label shown with every
    /// amount of this view and its mirrors. PPIO's answers do not name it, so the operator never
    /// guesses one; without it, amounts are shown without a currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 16),
        regex(pattern = r"^[A-Za-z][A-Za-z0-9._-]*$")
    )]
    pub currency: Option<String>,
    /// The most this view's instances billed now should spend an hour, in `currency`: a plain
    /// decimal such as `125.50`. Adds the condition `WithinBudget` and a Warning Event
    /// `OverBudget` each time the spend crosses above it. `Ready` does not depend on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^[0-9]+(\.[0-9]{1,9})?$"))]
    pub hourly_budget: Option<String>,
}

/// What a view's instances billed now spend an hour, as its last complete sync priced them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ViewCostStatus {
    /// `spec.cost.currency`, the unit of every amount here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// The hourly spend by billing mode: postpaid and spot instances in a billed state (from
    /// `pulling` until stopped), prepaid instances for their whole term at the term's hourly
    /// equivalent. Instances whose price is unknown are not in it: with `unknownPriceCount` above
    /// zero, the spend is at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly_spend: Option<HourlySpendStatus>,
    /// Instances billed now whose price is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priced_count: Option<i64>,
    /// Instances billed now whose price is unknown (each mirror's `PriceKnown` condition says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_price_count: Option<i64>,
    /// When the prices used were read from PPIO's product list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub prices_read_at: Option<Timestamp>,
}

/// An hourly spend by billing mode, and in all.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HourlySpendStatus {
    /// Every billing mode together.
    pub total: String,
    /// Postpaid instances billed now.
    pub postpaid: String,
    /// Spot instances billed now.
    pub spot: String,
    /// Prepaid instances, at their terms' hourly equivalents.
    pub prepaid: String,
}

/// What one instance costs, from PPIO's product list. Amounts are in the view's
/// `spec.cost.currency`. Only what is known is set: an unknown price is absent, never zero, and
/// the condition `PriceKnown` says why.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceCostStatus {
    /// The view's `spec.cost.currency`, the unit of every amount here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// The product's display name, e.g. `A100-80G`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub product_name: Option<String>,
    /// The GPU model of each card, e.g. `A100`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub gpu_model: Option<String>,
    /// How many units the price counts: the instance's GPU cards (1 for a CPU product).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cards: Option<i64>,
    /// Postpaid or spot: the list price per card and hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_price_per_card_hour: Option<String>,
    /// Postpaid or spot: the price charged per card and hour (the list price after discounts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_price_per_card_hour: Option<String>,
    /// Prepaid: the term bought and its price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepaid_term: Option<PrepaidTermCost>,
    /// What the instance costs an hour: the final price per card and hour times the cards, or for
    /// prepaid the term's price over its hours (720 a month).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly: Option<String>,
    /// True when `hourly` is a prepaid term's hourly equivalent rounded up at 12 decimal places.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hourly_rounded_up: bool,
    /// Whether PPIO bills the instance now: postpaid and spot from `pulling` until stopped,
    /// prepaid for its whole term.
    pub billed_now: bool,
}

/// A prepaid term as priced.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrepaidTermCost {
    /// The term's length in months.
    pub months: i64,
    /// The term's list price per card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_price_per_card: Option<String>,
    /// The term's price charged per card.
    pub final_price_per_card: String,
    /// The whole term's price: the price per card times the cards.
    pub price: String,
}
