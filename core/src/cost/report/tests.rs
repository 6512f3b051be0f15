//! What the API shows of cost: each mirror's cost and condition, the view's spend and its
//! conditions, and when a budget crossing is worth an Event.

use super::*;
use crate::cost::UnknownCost;
use crate::cost::tests::{prepaid, record};
use serde_json::json;

fn catalogue() -> Products {
    let list = json!({"data": [
        {"id": "a100", "name": "A100-80G", "type": "gpu",
         "resource_spec": {"gpu": {"name": "A100", "memory_gb": 80}},
         "pricing": {"precision": 3,
            "postpaid": {"base_price": 18000, "final_price": 12600, "unit": "per_hour"},
            "prepaid": [{"duration_months": 1, "final_price": 9072000, "base_price": 12960000},
                        {"duration_months": 7, "final_price": 1}]}},
        {"id": "evil", "name": "Evil\u{202e}\u{7}name", "type": "gpu",
         "resource_spec": {"gpu": {"name": "x".repeat(1_000), "memory_gb": 1}},
         "pricing": {"precision": 0, "postpaid": {"final_price": 1, "unit": "per_hour"}}},
    ]});
    Products::from_json(list.to_string().as_bytes()).expect("a product list")
}

fn prices() -> PriceList {
    PriceList {
        products: Some(Arc::new(catalogue())),
        read_at: Some(Timestamp::from_second(1_000).unwrap()),
        failure: None,
    }
}

fn mirror_cost(record: &RecordSummary) -> MirrorCost {
    MirrorCost::of(
        &prices().cost_of(record, Timestamp::from_second(2_000).unwrap()),
        Some("CNY"),
    )
}

fn spend(records: &[RecordSummary]) -> Result<HourlySpend, SpendOverflow> {
    let prices = prices();
    HourlySpend::of(
        records
            .iter()
            .map(|r| prices.cost_of(r, Timestamp::from_second(2_000).unwrap()))
            .collect::<Vec<_>>()
            .iter(),
    )
}

fn budget(amount: &str) -> CostOptions {
    CostOptions {
        currency: Some("CNY".into()),
        hourly_budget: Some(amount.into()),
    }
}

#[test]
fn a_postpaid_mirror_shows_its_prices_per_card_hour_and_its_rate() {
    let cost = mirror_cost(&record("a100", "postpaid", "running", 2));
    assert_eq!(
        cost.status,
        InstanceCostStatus {
            currency: Some("CNY".into()),
            product_name: Some("A100-80G".into()),
            gpu_model: Some("A100".into()),
            cards: Some(2),
            list_price_per_card_hour: Some("18.000".into()),
            final_price_per_card_hour: Some("12.600".into()),
            prepaid_term: None,
            hourly: Some("25.200".into()),
            hourly_rounded_up: false,
            billed_now: true,
        }
    );
    assert_eq!(
        (cost.condition.type_.as_str(), cost.condition.status),
        (PRICE_KNOWN, ConditionStatus::True)
    );
    assert_eq!(
        cost.condition.message,
        "25.200 CNY an hour: 2 cards at 12.600 CNY per card and hour (postpaid, final price). \
         Billed now: PPIO bills from pulling until the instance is stopped."
    );
    let stopped = mirror_cost(&record("a100", "postpaid", "exited", 2));
    assert!(!stopped.status.billed_now);
    assert!(
        stopped
            .condition
            .message
            .ends_with("Not billed now: PPIO bills from pulling until the instance is stopped.")
    );
}

#[test]
fn a_prepaid_mirror_shows_its_term_and_hourly_equivalent_rounded_up_when_inexact() {
    let cost = mirror_cost(&prepaid("a100", 1, 4));
    assert_eq!(
        cost.status.prepaid_term,
        Some(PrepaidTermCost {
            months: 1,
            list_price_per_card: Some("12960.000".into()),
            final_price_per_card: "9072.000".into(),
            price: "36288.000".into(),
        })
    );
    assert_eq!(cost.status.hourly.as_deref(), Some("50.400"));
    assert_eq!(cost.status.final_price_per_card_hour, None);
    assert!(
        cost.status.billed_now,
        "prepaid is billed for its term, exited or not"
    );
    assert!(!cost.status.hourly_rounded_up);

    // 0.001 over 7 × 720 hours is no finite decimal: rounded up, and said so.
    let odd = mirror_cost(&prepaid("a100", 7, 1));
    assert!(odd.status.hourly_rounded_up);
    assert!(
        odd.condition.message.contains("(rounded up)"),
        "{}",
        odd.condition.message
    );
}

#[test]
fn an_unknown_price_is_absent_never_zero_and_its_condition_says_why() {
    for (record, reason) in [
        (
            record("retired", "postpaid", "running", 1),
            "ProductNotListed",
        ),
        (record("", "postpaid", "running", 1), "NoProduct"),
        (record("a100", "spot", "running", 1), "PriceNotListed"),
        (
            record("a100", "monthly", "running", 1),
            "UnknownBillingMode",
        ),
        (record("a100", "postpaid", "running", 0), "UnknownCardCount"),
        (prepaid("a100", 3, 1), "NoSuchTerm"),
    ] {
        let cost = mirror_cost(&record);
        assert_eq!(cost.status.hourly, None, "{reason}");
        assert_eq!(cost.status.cards, None, "{reason}");
        assert_eq!(cost.condition.status, ConditionStatus::False, "{reason}");
        assert_eq!(cost.condition.reason, reason);
        assert!(cost.condition.message.starts_with("The price is unknown: "));
    }
    // Without any product list: unknown for that reason.
    let unread = MirrorCost::of(
        &PriceList::default().cost_of(
            &record("a100", "postpaid", "running", 1),
            Timestamp::from_second(2_000).unwrap(),
        ),
        None,
    );
    assert_eq!(unread.condition.reason, UnknownCost::NoProductList.reason());
}

#[test]
fn names_from_the_product_list_are_cleaned_and_bounded() {
    let cost = mirror_cost(&record("evil", "postpaid", "running", 1));
    assert_eq!(cost.status.product_name.as_deref(), Some("Evilname"));
    let model = cost.status.gpu_model.expect("a model");
    assert!(model.len() <= ppio::MAX_PRODUCT_NAME_BYTES && model.starts_with("xxx"));
}

#[test]
fn a_mirrors_cost_changes_with_its_price_and_with_nothing_else() {
    let running = record("a100", "postpaid", "running", 2);
    assert_eq!(mirror_cost(&running).hash(), mirror_cost(&running).hash());
    // Read again later: the same cost (no time in it).
    let later = PriceList {
        read_at: Some(Timestamp::from_second(9_000).unwrap()),
        ..prices()
    };
    assert_eq!(
        MirrorCost::of(
            &later.cost_of(&running, Timestamp::from_second(2_000).unwrap()),
            Some("CNY")
        ),
        mirror_cost(&running)
    );
    let repriced = PriceList {
        products: Some(Arc::new(
            Products::from_json(
                json!({"data": [{"id": "a100", "name": "A100-80G", "type": "gpu",
                  "resource_spec": {"gpu": {"name": "A100"}},
                  "pricing": {"precision": 3, "postpaid":
                    {"base_price": 18000, "final_price": 12000, "unit": "per_hour"}}}]})
                .to_string()
                .as_bytes(),
            )
            .unwrap(),
        )),
        ..prices()
    };
    let changed = MirrorCost::of(
        &repriced.cost_of(&running, Timestamp::from_second(2_000).unwrap()),
        Some("CNY"),
    );
    assert_eq!(changed.status.hourly.as_deref(), Some("24.000"));
    assert_ne!(changed.hash(), mirror_cost(&running).hash());
    // Another currency label is another cost too.
    assert_ne!(
        MirrorCost::of(
            &prices().cost_of(&running, Timestamp::from_second(2_000).unwrap()),
            Some("USD")
        )
        .hash(),
        mirror_cost(&running).hash()
    );
    // Stopping changes whether it is billed.
    assert_ne!(
        mirror_cost(&record("a100", "postpaid", "exited", 2)).hash(),
        mirror_cost(&running).hash()
    );
}

#[test]
fn the_views_cost_sums_those_billed_now_by_mode() {
    let spend = spend(&[
        record("a100", "postpaid", "running", 2),
        record("a100", "postpaid", "exited", 8),
        prepaid("a100", 1, 4),
        record("retired", "postpaid", "running", 1),
    ]);
    let status = view_cost_status(&spend, &budget("100"), &prices());
    assert_eq!(
        status,
        ViewCostStatus {
            currency: Some("CNY".into()),
            hourly_spend: Some(HourlySpendStatus {
                total: "75.600".into(),
                postpaid: "25.200".into(),
                spot: "0".into(),
                prepaid: "50.400".into(),
            }),
            priced_count: Some(2),
            unknown_price_count: Some(1),
            prices_read_at: Some(Timestamp::from_second(1_000).unwrap()),
        }
    );
}

#[test]
fn prices_are_current_until_a_read_fails_and_then_say_which_are_used() {
    let current = prices_current(&prices());
    assert_eq!(
        (current.status, current.reason.as_str()),
        (ConditionStatus::True, "ProductListRead")
    );
    assert!(
        current.message.contains("(2 products)"),
        "{}",
        current.message
    );

    let failure = PriceListFailure {
        at: Timestamp::from_second(5_000).unwrap(),
        message: "PPIO answered HTTP 503.".into(),
    };
    let stale = prices_current(&PriceList {
        failure: Some(failure.clone()),
        ..prices()
    });
    assert_eq!(
        (stale.status, stale.reason.as_str()),
        (ConditionStatus::False, "ProductListFailed")
    );
    assert!(stale.message.contains("HTTP 503"));
    assert!(
        stale
            .message
            .contains("The prices read at 1970-01-01T00:16:40Z")
    );

    let none = prices_current(&PriceList {
        failure: Some(failure),
        ..PriceList::default()
    });
    assert_eq!(none.status, ConditionStatus::False);
    assert!(
        none.message.contains("No prices are known yet"),
        "{}",
        none.message
    );
}

#[test]
fn the_budget_condition_is_true_false_or_unknown_as_the_spend_allows() {
    let priced = spend(&[record("a100", "postpaid", "running", 2)]);
    assert_eq!(within_budget(&CostOptions::default(), &priced), None);

    let within = within_budget(&budget("25.2"), &priced).unwrap();
    assert_eq!(
        (within.type_.as_str(), within.status, within.reason.as_str()),
        (WITHIN_BUDGET, ConditionStatus::True, "WithinBudget")
    );
    assert!(within.message.contains("25.200 CNY") && within.message.contains("25.2 CNY"));

    let over = within_budget(&budget("25.19"), &priced).unwrap();
    assert_eq!(
        (over.status, over.reason.as_str()),
        (ConditionStatus::False, OVER_BUDGET)
    );

    // A price unknown: within is not certain; above is.
    let partly = spend(&[
        record("a100", "postpaid", "running", 2),
        record("retired", "postpaid", "running", 1),
    ]);
    let unsure = within_budget(&budget("100"), &partly).unwrap();
    assert_eq!(
        (unsure.status, unsure.reason.as_str()),
        (ConditionStatus::Unknown, "PricesUnknown")
    );
    let over = within_budget(&budget("1"), &partly).unwrap();
    assert_eq!(over.status, ConditionStatus::False);
    assert!(over.message.contains("at least"), "{}", over.message);

    let invalid = within_budget(&budget("1e3"), &priced).unwrap();
    assert_eq!(
        (invalid.status, invalid.reason.as_str()),
        (ConditionStatus::Unknown, "InvalidBudget")
    );
}

#[test]
fn a_budget_crossing_is_an_event_once_per_crossing() {
    let with = |status: Option<ConditionStatus>| -> Vec<Condition> {
        status
            .map(|status| condition(WITHIN_BUDGET, status, "r", "above"))
            .into_iter()
            .collect()
    };
    use ConditionStatus::{False, True, Unknown};
    for (before, after, event) in [
        (None, Some(False), true),
        (Some(True), Some(False), true),
        (Some(Unknown), Some(False), true),
        (Some(False), Some(False), false),
        (Some(False), Some(True), false),
        (Some(True), Some(True), false),
        (Some(False), None, false),
        (None, None, false),
    ] {
        assert_eq!(
            budget_crossing(&with(before), &with(after)).is_some(),
            event,
            "{before:?} -> {after:?}"
        );
    }
}
