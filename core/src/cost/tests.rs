//! The cost model's rules, one test each, and properties of the spend's sums.

use super::*;
use ppio::{InstanceId, PrepaidTerm};
use proptest::prelude::*;
use serde_json::{Value, json};

fn products(list: Value) -> Products {
    Products::from_json(json!({ "data": list }).to_string().as_bytes()).expect("a product list")
}

/// The documented example (A100, postpaid 12.600, spot 6.000, 1 month prepaid 9072.000), a CPU
/// product, and a product whose spot price is per minute.
fn catalogue() -> Products {
    products(json!([
        {"id": "a100", "name": "A100-80G", "type": "gpu",
         "resource_spec": {"gpu": {"name": "A100", "memory_gb": 80}},
         "pricing": {"precision": 3,
            "postpaid": {"base_price": 18000, "final_price": 12600, "unit": "per_hour"},
            "spot": {"base_price": 12600, "final_price": 6000, "unit": "per_hour"},
            "prepaid": [{"duration_months": 1, "final_price": 9072000, "base_price": 12960000},
                        {"duration_months": 3, "final_price": 1000}]}},
        {"id": "cpu-4c8g", "name": "4C8G", "type": "cpu",
         "pricing": {"precision": 2, "postpaid": {"final_price": 15, "unit": "per_hour"}}},
        {"id": "odd", "name": "Odd", "type": "gpu",
         "pricing": {"precision": 3, "spot": {"final_price": 1, "unit": "per_minute"}}},
    ]))
}

pub(super) fn record(product: &str, mode: &str, status: &str, gpus: i64) -> RecordSummary {
    RecordSummary {
        id: InstanceId::new("i-1").expect("an ID"),
        name: String::new(),
        product_id: product.to_owned(),
        region: String::new(),
        status: status.to_owned(),
        has_error: false,
        billing_mode: mode.to_owned(),
        prepaid: None,
        gpus,
    }
}

pub(super) fn prepaid(product: &str, months: i64, gpus: i64) -> RecordSummary {
    RecordSummary {
        prepaid: Some(PrepaidTerm {
            months,
            end_time: None,
            auto_renew: false,
        }),
        ..record(product, "prepaid", "exited", gpus)
    }
}

/// The time the records are priced at: before any term's end.
fn at() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_000_000).unwrap()
}

fn d(text: &str) -> Decimal {
    text.parse::<HourlyBudget>().expect("a decimal").amount()
}

fn price(cost: &InstanceCost) -> &Price {
    cost.price.as_ref().expect("a known price")
}

#[test]
fn a_postpaid_rate_is_the_final_price_per_card_times_the_cards() {
    let cost = instance_cost(
        &record("a100", "postpaid", "running", 4),
        &catalogue(),
        at(),
    );
    assert_eq!(cost.product_name.as_deref(), Some("A100-80G"));
    assert_eq!(cost.gpu_model.as_deref(), Some("A100"));
    assert!(cost.billed_now);
    let price = price(&cost);
    assert_eq!(price.mode, BillingMode::Postpaid);
    assert_eq!(price.cards, 4);
    assert_eq!(price.list_per_card, Some(d("18")));
    assert_eq!(price.final_per_card.to_string(), "12.600");
    assert_eq!(price.hourly.to_string(), "50.400");
    assert!(price.hourly_exact);
    assert_eq!(price.term, None);
}

#[test]
fn a_spot_rate_uses_the_spot_price() {
    let cost = instance_cost(&record("a100", "spot", "running", 2), &catalogue(), at());
    assert_eq!(price(&cost).hourly.to_string(), "12.000");
}

#[test]
fn a_cpu_product_counts_once_per_instance() {
    let cost = instance_cost(
        &record("cpu-4c8g", "postpaid", "running", 0),
        &catalogue(),
        at(),
    );
    let price = price(&cost);
    assert_eq!(
        (price.cards, price.hourly.to_string()),
        (1, "0.15".to_owned())
    );
    assert_eq!(cost.gpu_model, None);
}

#[test]
fn prepaid_is_the_terms_price_and_its_exact_hourly_equivalent_at_720_hours_a_month() {
    let cost = instance_cost(&prepaid("a100", 1, 2), &catalogue(), at());
    assert!(
        cost.billed_now,
        "prepaid is billed for its term, whatever its status"
    );
    let price = price(&cost);
    assert_eq!(
        price.term,
        Some(Term {
            months: 1,
            price: d("18144")
        })
    );
    assert_eq!(
        price.term.map(|t| t.price.to_string()).as_deref(),
        Some("18144.000")
    );
    assert_eq!(price.hourly, d("25.2"));
    assert!(price.hourly_exact);
}

#[test]
fn a_prepaid_hourly_equivalent_that_no_decimal_holds_is_rounded_up_and_marked() {
    // 1.000 for 3 months of 720 hours: 0.000462962962…
    let cost = instance_cost(&prepaid("a100", 3, 1), &catalogue(), at());
    let price = price(&cost);
    assert!(!price.hourly_exact);
    assert_eq!(price.hourly.to_string(), "0.000462962963");
    assert!(price.hourly > Decimal::new(462_962_962, 12).expect("fits"));
    let spend = HourlySpend::of([&cost]).expect("fits");
    assert_eq!(spend.rounded, 1);
}

#[test]
fn an_unknown_price_is_never_zero_and_says_why() {
    let cases = [
        (
            record("gone", "postpaid", "running", 1),
            UnknownCost::ProductNotListed,
        ),
        (record("", "postpaid", "running", 1), UnknownCost::NoProduct),
        (
            record("a100", "reserved", "running", 1),
            UnknownCost::UnknownBillingMode("reserved".into()),
        ),
        (
            record("odd", "postpaid", "running", 1),
            UnknownCost::Price(UnknownPrice::NotListed),
        ),
        (
            record("odd", "spot", "running", 1),
            UnknownCost::Price(UnknownPrice::UnitNotPerHour {
                unit: "per_minute".into(),
            }),
        ),
        (prepaid("a100", 6, 1), UnknownCost::NoSuchTerm { months: 6 }),
        (prepaid("a100", 0, 1), UnknownCost::NoSuchTerm { months: 0 }),
        (
            record("a100", "postpaid", "running", 0),
            UnknownCost::CardCount(0),
        ),
        (
            record("a100", "postpaid", "running", -3),
            UnknownCost::CardCount(-3),
        ),
        (
            record("a100", "postpaid", "running", MAX_CARDS + 1),
            UnknownCost::CardCount(MAX_CARDS + 1),
        ),
    ];
    for (record, expected) in cases {
        let cost = instance_cost(&record, &catalogue(), at());
        assert_eq!(cost.price, Err(expected.clone()), "{record:?}");
        assert!(!expected.to_string().is_empty());
    }
    let gone = instance_cost(
        &record("gone", "postpaid", "running", 1),
        &catalogue(),
        at(),
    );
    assert_eq!((gone.product_name, gone.gpu_model), (None, None));
}

#[test]
fn billing_runs_from_pulling_until_stopped_and_an_unknown_status_counts_as_billed() {
    for status in [
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
        "hibernating",
        "",
    ] {
        assert!(is_billed_status(status), "{status}");
        let cost = instance_cost(&record("a100", "postpaid", status, 1), &catalogue(), at());
        assert!(cost.billed_now, "{status}");
    }
    for status in [
        "toCreate", "creating", "toStart", "starting", "exited", "toRemove", "removing", "removed",
    ] {
        assert!(!is_billed_status(status), "{status}");
        let cost = instance_cost(&record("a100", "spot", status, 1), &catalogue(), at());
        assert!(!cost.billed_now, "{status}");
    }
}

#[test]
fn the_spend_sums_what_is_billed_now_by_mode_and_counts_the_unknown() {
    let catalogue = catalogue();
    let costs: Vec<InstanceCost> = [
        record("a100", "postpaid", "running", 4),
        record("a100", "postpaid", "exited", 8),
        record("a100", "spot", "pulling", 2),
        prepaid("a100", 1, 2),
        record("gone", "postpaid", "running", 1),
        record("gone", "postpaid", "exited", 1),
        record("cpu-4c8g", "postpaid", "running", 0),
    ]
    .iter()
    .map(|record| instance_cost(record, &catalogue, at()))
    .collect();
    let spend = HourlySpend::of(&costs).expect("fits");
    assert_eq!(spend.postpaid, d("50.55"));
    assert_eq!(spend.spot, d("12"));
    assert_eq!(spend.prepaid, d("25.2"));
    assert_eq!((spend.priced, spend.unknown, spend.rounded), (4, 1, 0));
    assert_eq!(spend.total().expect("fits").to_string(), "87.750");
}

#[test]
fn a_fleet_of_100000_instances_of_8_cards_at_the_largest_price_sums_exactly() {
    let list = products(
        json!([{"id": "max", "type": "gpu", "pricing": {"precision": 0,
        "postpaid": {"final_price": ppio::MAX_PRICE_UNITS, "unit": "per_hour"},
        "prepaid": [{"duration_months": 7, "final_price": ppio::MAX_PRICE_UNITS}]}}]),
    );
    let mut spend = HourlySpend::default();
    for _ in 0..100_000 {
        spend
            .add(&instance_cost(
                &record("max", "postpaid", "running", 8),
                &list,
                at(),
            ))
            .expect("fits");
        spend
            .add(&instance_cost(&prepaid("max", 7, 8), &list, at()))
            .expect("fits");
    }
    let expected = u128::try_from(ppio::MAX_PRICE_UNITS).expect("positive") * 8 * 100_000;
    assert_eq!(spend.postpaid, Decimal::new(expected, 0).expect("fits"));
    assert!(spend.total().is_ok());
}

#[test]
fn the_budget_is_parsed_strictly_and_says_why_not() {
    assert_eq!(d("125.50").to_string(), "125.50");
    assert_eq!(d("0").to_string(), "0");
    assert_eq!(d("0.000000001").to_string(), "0.000000001");
    for (text, expected) in [
        ("", InvalidBudget::Empty),
        ("1".repeat(33).as_str(), InvalidBudget::TooLong),
        ("0.0000000001", InvalidBudget::TooPrecise),
    ] {
        assert_eq!(text.parse::<HourlyBudget>(), Err(expected), "{text}");
    }
    for text in [
        "-1", "+1", " 1", "1 ", "1e3", "1,000", ".5", "5.", "1.2.3", "١٢", "NaN", "0x10", "1_000",
    ] {
        let error = text.parse::<HourlyBudget>().expect_err(text);
        assert_eq!(error, InvalidBudget::NotADecimal(text.to_owned()), "{text}");
        assert!(error.to_string().contains("125.50"), "{error}");
    }
    assert_eq!(
        "9".repeat(32)
            .parse::<HourlyBudget>()
            .map(HourlyBudget::amount),
        Ok(Decimal::new("9".repeat(32).parse().expect("fits"), 0).expect("fits"))
    );
}

#[test]
fn the_spend_against_a_budget_is_within_over_or_a_floor_when_prices_are_unknown() {
    let catalogue = catalogue();
    let running = instance_cost(&record("a100", "postpaid", "running", 10), &catalogue, at());
    let spend = HourlySpend::of([&running]).expect("fits");
    let budget = |text: &str| text.parse::<HourlyBudget>().expect("a budget");
    assert_eq!(spend.against(None), Ok(None));
    assert_eq!(
        spend.against(Some(&budget("126"))),
        Ok(Some(BudgetStanding::Within {
            total: d("126"),
            complete: true
        }))
    );
    assert_eq!(
        spend.against(Some(&budget("125.999"))),
        Ok(Some(BudgetStanding::Over {
            total: d("126"),
            complete: true
        }))
    );
    let unknown = instance_cost(&record("gone", "spot", "running", 1), &catalogue, at());
    let spend = HourlySpend::of([&running, &unknown]).expect("fits");
    assert!(matches!(
        spend.against(Some(&budget("500"))),
        Ok(Some(BudgetStanding::Within {
            complete: false,
            ..
        }))
    ));
}

/// Costs of instances of random products, prices, precisions, cards, modes and statuses.
fn costs() -> impl Strategy<Value = Vec<InstanceCost>> {
    let product = (0i64..=ppio::MAX_PRICE_UNITS, 0u8..=9, 1i64..=12);
    let instance = (
        0usize..4,
        prop_oneof![
            Just("postpaid"),
            Just("spot"),
            Just("prepaid"),
            Just("other")
        ],
        prop_oneof![Just("running"), Just("exited"), Just("weird")],
        -1i64..=MAX_CARDS + 1,
        0i64..=13,
    );
    (
        proptest::collection::vec(product, 3),
        proptest::collection::vec(instance, 0..60),
    )
        .prop_map(|(prices, instances)| {
            let list: Vec<Value> = prices
                .iter()
                .enumerate()
                .map(|(index, (units, precision, months))| {
                    json!({"id": format!("p{index}"), "type": "gpu", "pricing": {
                        "precision": precision,
                        "postpaid": {"final_price": units, "unit": "per_hour"},
                        "spot": {"final_price": units / 2, "unit": "per_hour"},
                        "prepaid": [{"duration_months": months, "final_price": units}]}})
                })
                .collect();
            let list = products(Value::Array(list));
            instances
                .into_iter()
                .map(|(product, mode, status, gpus, months)| {
                    let mut summary = record(&format!("p{product}"), mode, status, gpus);
                    summary.prepaid = Some(PrepaidTerm {
                        months,
                        end_time: None,
                        auto_renew: false,
                    });
                    instance_cost(&summary, &list, at())
                })
                .collect()
        })
}

proptest! {
    #[test]
    fn the_spend_is_exact_and_does_not_depend_on_the_order(
        costs in costs(),
        seed in any::<u64>(),
    ) {
        let spend = HourlySpend::of(&costs).expect("fits");
        // Exact: the sum by mode is the sum of the rates, in units of the largest scale.
        for mode in [BillingMode::Postpaid, BillingMode::Spot, BillingMode::Prepaid] {
            let rates: Vec<Decimal> = costs
                .iter()
                .filter(|cost| cost.billed_now)
                .filter_map(|cost| cost.price.as_ref().ok())
                .filter(|price| price.mode == mode)
                .map(|price| price.hourly)
                .collect();
            let scale = rates.iter().map(|rate| rate.scale()).max().unwrap_or(0);
            let units: u128 = rates
                .iter()
                .map(|rate| rate.rescaled(scale).expect("fits").units())
                .sum();
            let sum = match mode {
                BillingMode::Postpaid => spend.postpaid,
                BillingMode::Spot => spend.spot,
                BillingMode::Prepaid => spend.prepaid,
            };
            prop_assert_eq!(sum, Decimal::new(units, scale).expect("fits"));
        }
        let billed = costs.iter().filter(|cost| cost.billed_now).count();
        prop_assert_eq!(spend.priced + spend.unknown, billed);
        // Order-independent: any rotation and the reverse give the same spend.
        let mut shuffled: Vec<&InstanceCost> = costs.iter().collect();
        let len = shuffled.len().max(1);
        shuffled.rotate_left(usize::try_from(seed % len as u64).expect("small"));
        shuffled.reverse();
        prop_assert_eq!(HourlySpend::of(shuffled).expect("fits"), spend);
    }
}

#[test]
fn a_prepaid_instance_is_billed_until_its_term_ends_whatever_its_status() {
    let ending = |end: i64, auto_renew: bool| RecordSummary {
        prepaid: Some(PrepaidTerm {
            months: 1,
            end_time: jiff::Timestamp::from_second(end).ok(),
            auto_renew,
        }),
        ..record("a100", "prepaid", "running", 1)
    };
    assert!(instance_cost(&ending(1_000_001, false), &catalogue(), at()).billed_now);
    // Its term ended and renews itself: a new term is billed.
    assert!(instance_cost(&ending(1_000_000, true), &catalogue(), at()).billed_now);
    // Its term ended without renewal and PPIO still lists it: no longer counted.
    let ended = instance_cost(&ending(1_000_000, false), &catalogue(), at());
    assert!(!ended.billed_now);
    assert_eq!(HourlySpend::of([&ended]).unwrap(), HourlySpend::default());
    // Without an end time, billed for its term as bought.
    assert!(instance_cost(&prepaid("a100", 1, 1), &catalogue(), at()).billed_now);
}
