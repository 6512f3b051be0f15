//! What an instance costs and what a view spends an hour, from PPIO's product list: a pure cost
//! model over a record's summary and the products, in exact decimals ([`Decimal`]), never floats.
//! It is not a bill: PPIO's answer names no currency, and the root disk's storage price has no
//! documented time unit, so neither is counted.
//!
//! The rules, from PPIO's documentation of the product list (`GET /gpus/v2/products`) and its sister
//! platform Novita's pricing guide:
//! - Prices are per GPU card: an instance's hourly rate is the mode's final price times its cards.
//!   A CPU product (`type` `cpu`) has no card to count; its price counts once per instance.
//! - `postpaid` and `spot` are billed while the instance is in a billed state: from `pulling` until
//!   it is stopped ([`is_billed_status`]). An unknown status counts as billed: a spend estimate
//!   must not under-report.
//! - `prepaid` is billed for its whole term, whatever the status, until the term's end time (when
//!   the record gives one) has passed, unless it renews itself: the term's price (the product's
//!   term of as many months as the record bought, times the cards) and its hourly equivalent at 720
//!   hours a month, exact when a decimal of at most [`HOURLY_EQUIVALENT_SCALE`] places is, else
//!   rounded up at that many places and marked so.
//! - A product missing from the list, a mode without a price, a unit other than per hour, a
//!   prepaid term the product does not list, a record without a GPU count: the price is unknown
//!   ([`UnknownCost`], with why), never zero.
//!
//! A view's hourly spend ([`HourlySpend`]) sums the rates of the instances billed now, by billing
//! mode, and counts those billed now whose price is unknown; sums are exact and do not depend on
//! the order of the instances. [`HourlyBudget`] is a user's budget, parsed strictly, and
//! [`HourlySpend::against`] compares the two.

use std::fmt;
use std::str::FromStr;

use ppio::{BillingMode, Decimal, ListedPrice, Product, Products, RecordSummary, UnknownPrice};

/// Hours a month counts: PPIO's documented 1-month prepaid price is exactly 720 hours of the
/// postpaid one.
pub const HOURS_PER_MONTH: u128 = 720;

/// Most decimal places of a prepaid term's hourly equivalent; beyond them it is rounded up.
pub const HOURLY_EQUIVALENT_SCALE: u8 = 12;

/// Most GPU cards an instance is priced for: more is not a real instance (PPIO's largest hold 8),
/// and the bound keeps every sum of a fleet exact (see [`ppio::MAX_PRICE_UNITS`]).
pub const MAX_CARDS: i64 = 1024;

/// Statuses in which PPIO bills a postpaid or spot instance: from `pulling` until it is stopped.
const BILLED: [&str; 10] = [
    "pulling",
    "running",
    "toStop",
    "stopping",
    "toRestart",
    "restarting",
    "toReset",
    "resetting",
    "migrating",
    "freezing",
];

/// Statuses in which PPIO does not bill a postpaid or spot instance: before it pulls its image, and
/// once stopped or removed.
const NOT_BILLED: [&str; 8] = [
    "toCreate", "creating", "toStart", "starting", "exited", "toRemove", "removing", "removed",
];

/// Whether a postpaid or spot instance in remote `status` is billed now. The documented billed
/// statuses are; the documented others are not; any other status (PPIO's status is a free string)
/// is counted as billed, so that a spend estimate never under-reports.
pub fn is_billed_status(status: &str) -> bool {
    BILLED.contains(&status) || !NOT_BILLED.contains(&status)
}

/// What one instance costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceCost {
    /// The product's display name, when the product is listed.
    pub product_name: Option<String>,
    /// The product's GPU model, when the product is listed and has one.
    pub gpu_model: Option<String>,
    /// Its price, or why it is unknown.
    pub price: Result<Price, UnknownCost>,
    /// Whether it is billed now: see the [module](self) for the rule.
    pub billed_now: bool,
}

/// The known price of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    /// Its billing mode.
    pub mode: BillingMode,
    /// How many units the price counts: GPU cards, or 1 for a CPU product.
    pub cards: u32,
    /// The list price per card (per hour, or per term for prepaid), when PPIO sent one.
    pub list_per_card: Option<Decimal>,
    /// The final price per card (per hour, or per term for prepaid).
    pub final_per_card: Decimal,
    /// The prepaid term, for prepaid instances.
    pub term: Option<Term>,
    /// What it costs an hour: the final price times the cards, or for prepaid the term's price over
    /// its hours.
    pub hourly: Decimal,
    /// Whether `hourly` is exact; `false` only for a prepaid hourly equivalent rounded up.
    pub hourly_exact: bool,
}

/// A prepaid term as priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Term {
    /// Its length in months.
    pub months: u32,
    /// What the whole term costs: the term's final price times the cards.
    pub price: Decimal,
}

/// Why an instance's price is unknown. Never read as zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnknownCost {
    /// No product list has been read yet (the view's `PricesCurrent` condition says why).
    NoProductList,
    /// The record names no product.
    NoProduct,
    /// The product list does not hold the record's product (sold out or retired, or the list
    /// could not be read).
    ProductNotListed,
    /// The record's billing mode is none PPIO documents (as sent; empty when none).
    UnknownBillingMode(String),
    /// The product's price for the mode is unknown.
    Price(UnknownPrice),
    /// The record bought a prepaid term the product does not list (0: the record says none).
    NoSuchTerm {
        /// Months the record bought.
        months: i64,
    },
    /// A GPU product, but the record gives no GPU count (or one out of 1..=[`MAX_CARDS`]).
    CardCount(i64),
    /// The rate does not fit a decimal (cannot happen within the bounds of prices and cards).
    TooLarge,
}

impl fmt::Display for UnknownCost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnknownCost::NoProductList => f.write_str(
                "no product list has been read from PPIO yet (the view's PricesCurrent condition \
                 says why)",
            ),
            UnknownCost::NoProduct => f.write_str("the instance names no product"),
            UnknownCost::ProductNotListed => f.write_str("its product is not in the product list"),
            UnknownCost::UnknownBillingMode(mode) => write!(
                f,
                "billing mode {:?} is not postpaid, prepaid or spot",
                ppio::text::truncate(mode, 32)
            ),
            UnknownCost::Price(reason) => reason.fmt(f),
            UnknownCost::NoSuchTerm { months: 0 } => {
                f.write_str("the instance is prepaid but does not say for how many months")
            }
            UnknownCost::NoSuchTerm { months } => {
                write!(f, "the product lists no prepaid term of {months} months")
            }
            UnknownCost::CardCount(cards) => write!(
                f,
                "the instance holds {cards} GPUs, not 1 to {MAX_CARDS}, so its price per card \
                 cannot be counted"
            ),
            UnknownCost::TooLarge => f.write_str("the price is too large to represent"),
        }
    }
}

impl UnknownCost {
    /// Why, as a condition's reason (CamelCase).
    pub fn reason(&self) -> &'static str {
        match self {
            UnknownCost::NoProductList => "NoProductList",
            UnknownCost::NoProduct => "NoProduct",
            UnknownCost::ProductNotListed => "ProductNotListed",
            UnknownCost::UnknownBillingMode(_) => "UnknownBillingMode",
            UnknownCost::Price(_) => "PriceNotListed",
            UnknownCost::NoSuchTerm { .. } => "NoSuchTerm",
            UnknownCost::CardCount(_) => "UnknownCardCount",
            UnknownCost::TooLarge => "PriceTooLarge",
        }
    }
}

/// What `record` costs at `now` when no product list is known: its price is unknown, whether it is
/// billed now is not.
pub fn instance_cost_unlisted(record: &RecordSummary, now: jiff::Timestamp) -> InstanceCost {
    InstanceCost {
        product_name: None,
        gpu_model: None,
        price: Err(UnknownCost::NoProductList),
        billed_now: billed_now(record, now),
    }
}

/// Whether `record` is billed at `now`: a prepaid instance until its term's end time (if the record
/// gives one) unless it renews itself, the others in a billed status.
pub fn billed_now(record: &RecordSummary, now: jiff::Timestamp) -> bool {
    match record.billing_mode.parse::<BillingMode>() {
        Ok(BillingMode::Prepaid) => record
            .prepaid
            .is_none_or(|term| term.auto_renew || term.end_time.is_none_or(|end| end > now)),
        _ => is_billed_status(&record.status),
    }
}

/// What `record` costs at `now`, by the products in `products`.
pub fn instance_cost(
    record: &RecordSummary,
    products: &Products,
    now: jiff::Timestamp,
) -> InstanceCost {
    let mode = record.billing_mode.parse::<BillingMode>().ok();
    let product = products.get(&record.product_id);
    InstanceCost {
        product_name: product.map(|p| p.name.clone()),
        gpu_model: product
            .and_then(|p| p.gpu.as_ref())
            .map(|gpu| gpu.name.clone()),
        price: match (product, mode) {
            (_, _) if record.product_id.trim().is_empty() => Err(UnknownCost::NoProduct),
            (None, _) => Err(UnknownCost::ProductNotListed),
            (Some(_), None) => Err(UnknownCost::UnknownBillingMode(record.billing_mode.clone())),
            (Some(product), Some(mode)) => price_of(record, product, mode),
        },
        billed_now: billed_now(record, now),
    }
}

fn price_of(
    record: &RecordSummary,
    product: &Product,
    mode: BillingMode,
) -> Result<Price, UnknownCost> {
    let cards = if product.is_cpu() {
        1
    } else {
        u32::try_from(record.gpus)
            .ok()
            .filter(|&cards| cards >= 1 && i64::from(cards) <= MAX_CARDS)
            .ok_or(UnknownCost::CardCount(record.gpus))?
    };
    let known = |price: &ListedPrice| match price {
        ListedPrice::Known { list, charged } => Ok((*list, *charged)),
        ListedPrice::Unknown(reason) => Err(UnknownCost::Price(reason.clone())),
    };
    let pricing = &product.pricing;
    let (list, charged, term_months) = match mode {
        BillingMode::Postpaid => {
            let (list, charged) = known(&pricing.postpaid)?;
            (list, charged, None)
        }
        BillingMode::Spot => {
            let (list, charged) = known(&pricing.spot)?;
            (list, charged, None)
        }
        BillingMode::Prepaid => {
            let months = record.prepaid.map_or(0, |term| term.months);
            let term = pricing
                .prepaid
                .iter()
                .find(|term| i64::from(term.months) == months)
                .ok_or(UnknownCost::NoSuchTerm { months })?;
            let (list, charged) = known(&term.price)?;
            (list, charged, Some(term.months))
        }
    };
    let total = charged
        .checked_mul(u128::from(cards))
        .ok_or(UnknownCost::TooLarge)?;
    let (hourly, hourly_exact, term) = match term_months {
        None => (total, true, None),
        Some(months) => {
            let hours = HOURS_PER_MONTH * u128::from(months);
            let scale = HOURLY_EQUIVALENT_SCALE.max(total.scale());
            let (hourly, exact) = total
                .checked_div_ceil(hours, scale)
                .ok_or(UnknownCost::TooLarge)?;
            let term = Term {
                months,
                price: total,
            };
            (hourly, exact, Some(term))
        }
    };
    Ok(Price {
        mode,
        cards,
        list_per_card: list,
        final_per_card: charged,
        term,
        hourly,
        hourly_exact,
    })
}

/// A view's hourly spend: the sum of the hourly rates of the instances billed now, by billing mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourlySpend {
    /// Postpaid instances billed now.
    pub postpaid: Decimal,
    /// Spot instances billed now.
    pub spot: Decimal,
    /// Prepaid instances, at their terms' hourly equivalents.
    pub prepaid: Decimal,
    /// Instances billed now whose price is known (counted in the sums).
    pub priced: usize,
    /// Instances billed now whose price is unknown: the sums leave them out, so the spend is at
    /// least what they say.
    pub unknown: usize,
    /// Prepaid instances whose hourly equivalent was rounded up.
    pub rounded: usize,
}

impl Default for HourlySpend {
    fn default() -> Self {
        HourlySpend {
            postpaid: Decimal::ZERO,
            spot: Decimal::ZERO,
            prepaid: Decimal::ZERO,
            priced: 0,
            unknown: 0,
            rounded: 0,
        }
    }
}

/// A sum that does not fit a [`Decimal`]: impossible within the bounds of prices, cards and a
/// listing, but checked rather than wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the hourly spend is too large to represent exactly")]
pub struct SpendOverflow;

impl HourlySpend {
    /// The spend of `costs`: the rates of those billed now, summed exactly by mode.
    pub fn of<'c>(
        costs: impl IntoIterator<Item = &'c InstanceCost>,
    ) -> Result<HourlySpend, SpendOverflow> {
        let mut spend = HourlySpend::default();
        for cost in costs {
            spend.add(cost)?;
        }
        Ok(spend)
    }

    /// Adds one instance's cost; an instance not billed now adds nothing.
    pub fn add(&mut self, cost: &InstanceCost) -> Result<(), SpendOverflow> {
        if !cost.billed_now {
            return Ok(());
        }
        let price = match &cost.price {
            Ok(price) => price,
            Err(_) => {
                self.unknown += 1;
                return Ok(());
            }
        };
        let sum = match price.mode {
            BillingMode::Postpaid => &mut self.postpaid,
            BillingMode::Spot => &mut self.spot,
            BillingMode::Prepaid => &mut self.prepaid,
        };
        *sum = sum.checked_add(price.hourly).ok_or(SpendOverflow)?;
        self.priced += 1;
        self.rounded += usize::from(!price.hourly_exact);
        Ok(())
    }

    /// Every mode together.
    pub fn total(&self) -> Result<Decimal, SpendOverflow> {
        self.postpaid
            .checked_add(self.spot)
            .and_then(|sum| sum.checked_add(self.prepaid))
            .ok_or(SpendOverflow)
    }

    /// How the spend stands against `budget`; `None` without a budget.
    pub fn against(
        &self,
        budget: Option<&HourlyBudget>,
    ) -> Result<Option<BudgetStanding>, SpendOverflow> {
        let Some(budget) = budget else {
            return Ok(None);
        };
        let total = self.total()?;
        let complete = self.unknown == 0;
        Ok(Some(if total > budget.0 {
            BudgetStanding::Over { total, complete }
        } else {
            BudgetStanding::Within { total, complete }
        }))
    }
}

/// The hourly spend against a budget. When some prices are unknown (`complete` false), the total is
/// a floor: `Over` is certain, `Within` is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetStanding {
    /// The total is at most the budget.
    Within {
        /// The hourly spend.
        total: Decimal,
        /// Whether every instance billed now was priced.
        complete: bool,
    },
    /// The total exceeds the budget.
    Over {
        /// The hourly spend.
        total: Decimal,
        /// Whether every instance billed now was priced.
        complete: bool,
    },
}

/// Longest budget text accepted.
pub const MAX_BUDGET_CHARS: usize = 32;

/// Most decimal places a budget may have.
pub const MAX_BUDGET_SCALE: u8 = 9;

/// An hourly budget a user set, e.g. `125.50`: a non-negative decimal, parsed strictly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourlyBudget(Decimal);

impl HourlyBudget {
    /// The budget's amount.
    pub fn amount(self) -> Decimal {
        self.0
    }
}

/// Why a budget text is refused; each says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidBudget {
    /// Nothing given.
    #[error("the hourly budget is empty: give an amount such as 125.50")]
    Empty,
    /// Longer than [`MAX_BUDGET_CHARS`].
    #[error("the hourly budget is longer than {MAX_BUDGET_CHARS} characters")]
    TooLong,
    /// Not digits with at most one decimal point.
    #[error(
        "the hourly budget {0:?} is not a plain decimal: write digits with an optional decimal \
         point, such as 125.50 (no sign, spaces, exponent or thousands separators)"
    )]
    NotADecimal(String),
    /// More decimal places than [`MAX_BUDGET_SCALE`].
    #[error("the hourly budget has more than {MAX_BUDGET_SCALE} decimal places")]
    TooPrecise,
    /// Too large to compare exactly.
    #[error("the hourly budget is too large")]
    TooLarge,
}

impl FromStr for HourlyBudget {
    type Err = InvalidBudget;

    /// Digits, optionally a point and 1 to [`MAX_BUDGET_SCALE`] more digits: `125`, `125.50`,
    /// `0.5`. Nothing else: no sign, whitespace, exponent, separators, `.5` or `5.`.
    fn from_str(text: &str) -> Result<HourlyBudget, InvalidBudget> {
        if text.is_empty() {
            return Err(InvalidBudget::Empty);
        }
        if text.len() > MAX_BUDGET_CHARS {
            return Err(InvalidBudget::TooLong);
        }
        let not_decimal = || InvalidBudget::NotADecimal(text.to_owned());
        let (whole, fraction) = match text.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (text, None),
        };
        let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || fraction.is_some_and(|fraction| !digits(fraction)) {
            return Err(not_decimal());
        }
        let fraction = fraction.unwrap_or("");
        let scale = u8::try_from(fraction.len())
            .ok()
            .filter(|&scale| scale <= MAX_BUDGET_SCALE)
            .ok_or(InvalidBudget::TooPrecise)?;
        // At most 32 ASCII digits: they fit a u128 (up to 38 digits).
        let units = format!("{whole}{fraction}")
            .parse::<u128>()
            .map_err(|_| InvalidBudget::TooLarge)?;
        Decimal::new(units, scale)
            .map(HourlyBudget)
            .ok_or(InvalidBudget::TooLarge)
    }
}

pub mod report;

#[cfg(test)]
mod tests;
