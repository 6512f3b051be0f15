//! What the API shows of cost, decided from the cost model: each mirror's `status.cost` and its
//! `PriceKnown` condition ([`MirrorCost`]), a view's `status.cost` and its `PricesCurrent` and
//! `WithinBudget` conditions, and when a view's spend crossing above its budget is worth an Event.
//!
//! A mirror's cost holds no time: it changes only when the instance's price, cards, billing mode
//! or billed state does, so a sync in which nothing changed rewrites no mirror, and a price change
//! rewrites exactly the mirrors whose cost it changes.

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use jiff::Timestamp;
use ppio::{BillingMode, Decimal, Products, RecordSummary};

use super::{
    BudgetStanding, HourlyBudget, HourlySpend, InstanceCost, Price, SpendOverflow, instance_cost,
    instance_cost_unlisted,
};
use crate::api::condition::{Condition, ConditionStatus};
use crate::api::cost::{
    CostOptions, HourlySpendStatus, InstanceCostStatus, PRICE_KNOWN, PRICES_CURRENT,
    PrepaidTermCost, ViewCostStatus, WITHIN_BUDGET,
};

/// The reason of the Warning Event a view gets when its hourly spend crosses above its budget.
pub const OVER_BUDGET: &str = "OverBudget";

/// The prices a sync uses: PPIO's product list as last read for the view's key and endpoint, if it
/// ever was, and how the last attempt to read it went.
#[derive(Clone, Debug, Default)]
pub struct PriceList {
    /// The products, when a list was ever read.
    pub products: Option<Arc<Products>>,
    /// When they were read.
    pub read_at: Option<Timestamp>,
    /// The last read failed: when and why. The products, if any, are then an older read's.
    pub failure: Option<PriceListFailure>,
}

/// A failed read of the product list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriceListFailure {
    /// When it failed.
    pub at: Timestamp,
    /// What happened, safe to show (never holds the API key).
    pub message: String,
}

impl PriceListFailure {
    /// Why reading the product list with `key` failed, safe to show: the client already redacts
    /// the key from server text; the message is checked once more because it ends up in the
    /// cluster.
    pub fn message_of(error: &ppio::PpioError, key: &ppio::ApiKey) -> String {
        let message = match error {
            // Its message speaks of listing instances.
            ppio::PpioError::Forbidden => "PPIO refused access (HTTP 403): the API key is valid \
                                           but may not read the product list."
                .to_owned(),
            error => format!("{error}."),
        };
        if key.appears_in(&message) {
            "PPIO returned an error that echoed the API key; it is not shown.".to_owned()
        } else {
            message
        }
    }
}

impl PriceList {
    /// What `record` costs at `now` by these prices.
    pub fn cost_of(&self, record: &RecordSummary, now: Timestamp) -> InstanceCost {
        match &self.products {
            Some(products) => instance_cost(record, products, now),
            None => instance_cost_unlisted(record, now),
        }
    }
}

/// A mirror's cost as its status shows it: `status.cost`, and the `PriceKnown` condition with its
/// transition at the epoch (stamped when the mirror is written).
#[derive(Clone, Debug, PartialEq)]
pub struct MirrorCost {
    /// `status.cost`.
    pub status: InstanceCostStatus,
    /// `PriceKnown`.
    pub condition: Condition,
}

impl MirrorCost {
    /// The mirror's cost for `cost`, its amounts labelled `currency`.
    pub fn of(cost: &InstanceCost, currency: Option<&str>) -> MirrorCost {
        // Names come cleaned and bounded from the product list's decoding.
        let name = |text: &String| (!text.trim().is_empty()).then(|| text.clone());
        let mut status = InstanceCostStatus {
            currency: currency.map(str::to_owned),
            product_name: cost.product_name.as_ref().and_then(name),
            gpu_model: cost.gpu_model.as_ref().and_then(name),
            billed_now: cost.billed_now,
            ..InstanceCostStatus::default()
        };
        let condition = match &cost.price {
            Ok(price) => {
                status.cards = Some(i64::from(price.cards));
                status.hourly = Some(price.hourly.to_string());
                status.hourly_rounded_up = !price.hourly_exact;
                match price.term {
                    None => {
                        status.list_price_per_card_hour =
                            price.list_per_card.map(|list| list.to_string());
                        status.final_price_per_card_hour = Some(price.final_per_card.to_string());
                    }
                    Some(term) => {
                        status.prepaid_term = Some(PrepaidTermCost {
                            months: i64::from(term.months),
                            list_price_per_card: price.list_per_card.map(|list| list.to_string()),
                            final_price_per_card: price.final_per_card.to_string(),
                            price: term.price.to_string(),
                        });
                    }
                }
                condition(
                    PRICE_KNOWN,
                    ConditionStatus::True,
                    "Priced",
                    priced_message(price, cost.billed_now, currency),
                )
            }
            Err(unknown) => condition(
                PRICE_KNOWN,
                ConditionStatus::False,
                unknown.reason(),
                format!(
                    "The price is unknown: {unknown}. It is never counted as zero: the view counts \
                     the instance in status.cost.unknownPriceCount while it is billed."
                ),
            ),
        };
        MirrorCost { status, condition }
    }

    /// The cost as one number, for the record's source hash: a mirror whose cost changed is
    /// planned again. Kept in memory only.
    pub fn hash(&self) -> u64 {
        let mut hasher = rustc_hash::FxHasher::default();
        self.status.hash(&mut hasher);
        let condition = &self.condition;
        (condition.status as u8).hash(&mut hasher);
        condition.reason.hash(&mut hasher);
        condition.message.hash(&mut hasher);
        hasher.finish()
    }
}

/// `amount` with its currency, when the view names one.
pub fn amount(amount: Decimal, currency: Option<&str>) -> String {
    match currency {
        Some(currency) => format!("{amount} {currency}"),
        None => amount.to_string(),
    }
}

fn cards(count: u32) -> String {
    format!("{count} card{}", if count == 1 { "" } else { "s" })
}

fn mode_name(mode: BillingMode) -> &'static str {
    match mode {
        BillingMode::Postpaid => "postpaid",
        BillingMode::Prepaid => "prepaid",
        BillingMode::Spot => "spot",
    }
}

fn priced_message(price: &Price, billed_now: bool, currency: Option<&str>) -> String {
    let mut message = match price.term {
        None => format!(
            "{} an hour: {} at {} per card and hour ({}, final price).",
            amount(price.hourly, currency),
            cards(price.cards),
            amount(price.final_per_card, currency),
            mode_name(price.mode),
        ),
        Some(term) => format!(
            "{} an hour{}, the hourly equivalent of its {}-month prepaid term of {}: {} at {} per \
             term (720 hours a month).",
            amount(price.hourly, currency),
            if price.hourly_exact {
                ""
            } else {
                " (rounded up)"
            },
            term.months,
            amount(term.price, currency),
            cards(price.cards),
            amount(price.final_per_card, currency),
        ),
    };
    message.push_str(match (price.mode, billed_now) {
        (BillingMode::Prepaid, _) => " Billed for the whole term.",
        (_, true) => " Billed now: PPIO bills from pulling until the instance is stopped.",
        (_, false) => " Not billed now: PPIO bills from pulling until the instance is stopped.",
    });
    message
}

fn condition(
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: impl Into<String>,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message: message.into(),
        last_transition_time: Timestamp::UNIX_EPOCH,
        observed_generation: None,
    }
}

/// The hourly spend to show of `spend`: none when it overflowed, or when nothing billed now is
/// priced but something billed now is not (a total of zero would read as a known price).
pub fn shown_total(spend: &Result<HourlySpend, SpendOverflow>) -> Option<Decimal> {
    let spend = spend.as_ref().ok()?;
    if spend.priced == 0 && spend.unknown > 0 {
        return None;
    }
    spend.total().ok()
}

/// A view's `status.cost` after a complete listing whose instances billed now spend `spend`.
pub fn view_cost_status(
    spend: &Result<HourlySpend, SpendOverflow>,
    options: &CostOptions,
    prices: &PriceList,
) -> ViewCostStatus {
    let (hourly_spend, priced, unknown) = match spend {
        Ok(spend) => (
            shown_total(&Ok(*spend)).map(|total| HourlySpendStatus {
                total: total.to_string(),
                postpaid: spend.postpaid.to_string(),
                spot: spend.spot.to_string(),
                prepaid: spend.prepaid.to_string(),
            }),
            Some(spend.priced as i64),
            Some(spend.unknown as i64),
        ),
        Err(SpendOverflow) => (None, None, None),
    };
    ViewCostStatus {
        currency: options.currency.clone(),
        hourly_spend,
        priced_count: priced,
        unknown_price_count: unknown,
        prices_read_at: prices.read_at,
    }
}

/// The view's `PricesCurrent` condition (generation and transition left to the caller).
pub fn prices_current(prices: &PriceList) -> Condition {
    let products = |products: &Products| {
        format!(
            "{} product{}",
            products.len(),
            if products.len() == 1 { "" } else { "s" }
        )
    };
    match (&prices.failure, &prices.products, prices.read_at) {
        (None, Some(listed), Some(read_at)) => condition(
            PRICES_CURRENT,
            ConditionStatus::True,
            "ProductListRead",
            format!(
                "Prices from PPIO's product list as read at {read_at} ({}).",
                products(listed)
            ),
        ),
        (Some(failure), listed, read_at) => {
            let mut message = format!(
                "Reading PPIO's product list failed at {}: {}",
                failure.at, failure.message
            );
            match (listed, read_at) {
                (Some(listed), Some(read_at)) => {
                    let _ = write!(
                        message,
                        " The prices read at {read_at} ({}) are used until a read succeeds.",
                        products(listed)
                    );
                }
                _ => message.push_str(
                    " No prices are known yet: every instance's price is unknown (never counted \
                     as zero) until a read succeeds.",
                ),
            }
            condition(
                PRICES_CURRENT,
                ConditionStatus::False,
                "ProductListFailed",
                message,
            )
        }
        _ => condition(
            PRICES_CURRENT,
            ConditionStatus::Unknown,
            "ProductListNotRead",
            "PPIO's product list has not been read yet.",
        ),
    }
}

/// The view's `WithinBudget` condition, when `spec.cost.hourlyBudget` is set.
pub fn within_budget(
    options: &CostOptions,
    spend: &Result<HourlySpend, SpendOverflow>,
) -> Option<Condition> {
    let budget_text = options.hourly_budget.as_deref()?;
    let currency = options.currency.as_deref();
    let budget = match budget_text.parse::<HourlyBudget>() {
        Ok(budget) => budget,
        Err(problem) => {
            return Some(condition(
                WITHIN_BUDGET,
                ConditionStatus::Unknown,
                "InvalidBudget",
                format!("spec.cost.hourlyBudget cannot be used: {problem}."),
            ));
        }
    };
    let standing = spend
        .as_ref()
        .map_err(|_| SpendOverflow)
        .and_then(|spend| Ok((spend.against(Some(&budget))?, spend)));
    let (standing, spend) = match standing {
        Ok((Some(standing), spend)) => (standing, spend),
        Ok((None, _)) | Err(SpendOverflow) => {
            return Some(condition(
                WITHIN_BUDGET,
                ConditionStatus::Unknown,
                "SpendTooLarge",
                "The hourly spend is too large to represent exactly.",
            ));
        }
    };
    let budget = amount(budget.amount(), currency);
    let modes = format!(
        "postpaid {}, spot {}, prepaid {}",
        spend.postpaid, spend.spot, spend.prepaid
    );
    let unknown = if spend.unknown == 0 {
        String::new()
    } else {
        format!(
            " {} instance{} billed now {} no known price, so the spend is at least that.",
            spend.unknown,
            if spend.unknown == 1 { "" } else { "s" },
            if spend.unknown == 1 { "has" } else { "have" },
        )
    };
    Some(match standing {
        BudgetStanding::Over { total, .. } => condition(
            WITHIN_BUDGET,
            ConditionStatus::False,
            OVER_BUDGET,
            format!(
                "The hourly spend, {}, is above the budget of {budget} ({modes}).{unknown}",
                amount(total, currency)
            ),
        ),
        BudgetStanding::Within {
            total,
            complete: true,
        } => condition(
            WITHIN_BUDGET,
            ConditionStatus::True,
            "WithinBudget",
            format!(
                "The hourly spend, {}, is within the budget of {budget} ({modes}).",
                amount(total, currency)
            ),
        ),
        BudgetStanding::Within {
            total,
            complete: false,
        } => condition(
            WITHIN_BUDGET,
            ConditionStatus::Unknown,
            "PricesUnknown",
            format!(
                "The known hourly spend, {}, is within the budget of {budget} ({modes}), but it \
                 may not be the whole spend.{unknown}",
                amount(total, currency)
            ),
        ),
    })
}

/// The note of the Warning Event due when a view's status goes from `previous` conditions to
/// `next`: its spend crossed above its budget (`WithinBudget` turned False from anything else, or
/// appeared False). One per crossing: a spend that stays above the budget publishes nothing more.
pub fn budget_crossing(previous: &[Condition], next: &[Condition]) -> Option<String> {
    fn find(conditions: &[Condition]) -> Option<(ConditionStatus, &String)> {
        crate::api::condition::find(conditions, WITHIN_BUDGET).map(|c| (c.status, &c.message))
    }
    match (find(previous), find(next)) {
        (Some((ConditionStatus::False, _)), _) => None,
        (_, Some((ConditionStatus::False, message))) => Some(message.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
