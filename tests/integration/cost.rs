//! What the fleet costs, against the real API server and the PPIO simulator's product list: each
//! mirror's price in every billing mode and precision, an unknown price never read as zero, the
//! view's hourly spend and budget with one Event per crossing, a price change rewriting exactly the
//! mirrors whose rate changed, and a product list that cannot be read (failing, or hostile) leaving
//! the last prices in place and the view Ready.

use std::time::Duration;

use ppio_gpu_core::api::GpuInstance;
use ppio_gpu_core::api::condition::{self, Condition, ConditionStatus};
use ppio_gpu_core::api::cost::{PRICE_KNOWN, PRICES_CURRENT, WITHIN_BUDGET};
use ppio_simulator::{Fault, FaultKind};
use serde_json::{Value, json};

use ppio_test_support::fixture::Fixture;
use ppio_test_support::records::{generated, set_status};
use ppio_test_support::{table_header, wait_for};

/// A GPU product priced at `precision` places: postpaid and spot per card-hour, and a 1-month
/// prepaid term per card.
fn product(id: &str, name: &str, precision: u32, postpaid: i64, spot: i64, month: i64) -> Value {
    json!({
        "id": id, "name": name, "type": "gpu", "category": "instance",
        "region_ids": ["cn-east-1"],
        "resource_spec": {"gpu": {"name": name, "memory_gb": 80}},
        "pricing": {
            "precision": precision,
            "postpaid": {"base_price": postpaid * 2, "final_price": postpaid, "unit": "per_hour"},
            "spot": {"base_price": postpaid, "final_price": spot, "unit": "per_hour"},
            "prepaid": [{"duration_months": 1, "base_price": month * 2, "final_price": month}],
        },
        "billing_methods": ["postpaid", "prepaid", "spot"],
    })
}

/// A record of `product` with `gpus` cards, billed as `mode` (prepaid: for one month), in `status`.
fn record(id: &str, product: &str, gpus: i64, mode: &str, status: &str) -> Value {
    let mut record = generated(id, 7);
    set_status(&mut record, status);
    record["product_id"] = json!(product);
    record["resource_specs"]["gpu_num"] = json!(gpus);
    record["billing"] = if mode == "prepaid" {
        json!({"mode": "prepaid", "prepaid": {"months": 1, "end_time": "4070908800",
               "auto_renew": {"enabled": true, "months": 1, "status": "on"}}})
    } else {
        json!({"mode": mode})
    };
    record
}

/// The account: an A100 at precision 3 and an L40 at precision 2, one instance in each mode, one
/// that is not billed, one of a product the list does not hold.
fn account() -> Vec<Value> {
    vec![
        record("pp01", "p-a100", 2, "postpaid", "running"),
        record("sp01", "p-l40", 1, "spot", "running"),
        record("pr01", "p-a100", 4, "prepaid", "exited"),
        record("ex01", "p-a100", 8, "postpaid", "exited"),
        record("gone", "p-retired", 1, "postpaid", "running"),
    ]
}

/// A fixture whose simulator lists the account's products, with the product list kept `ttl`.
async fn fixture(prefix: &str, ttl: Duration) -> Fixture {
    let fx = Fixture::start_with(prefix, account(), |settings| {
        settings.product_list_ttl = ttl;
    })
    .await;
    let simulator = fx.simulator();
    // 12.600 a card-hour postpaid, 6.000 spot, 9,072.000 a card-month prepaid (the documented
    // example); 4.50 and 2.25 at precision 2.
    for product in [
        product("p-a100", "A100", 3, 12_600, 6_000, 9_072_000),
        product("p-l40", "L40", 2, 450, 225, 324_000),
    ] {
        simulator.try_upsert_product(product).expect("a product");
    }
    fx
}

fn cost_of(mirror: &GpuInstance) -> ppio_gpu_core::api::cost::InstanceCostStatus {
    mirror
        .status
        .as_ref()
        .and_then(|status| status.cost.clone())
        .unwrap_or_else(|| panic!("{:?} has no cost", mirror.metadata.name))
}

fn condition_of<'a>(conditions: &'a [Condition], type_: &str) -> &'a Condition {
    condition::find(conditions, type_).unwrap_or_else(|| panic!("no {type_} in {conditions:?}"))
}

async fn mirror(fx: &Fixture, id: &str) -> GpuInstance {
    fx.instances()
        .get(&format!("v-{id}"))
        .await
        .unwrap_or_else(|e| panic!("mirror of {id}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mirror_shows_its_price_and_the_view_its_hourly_spend() {
    let fx = fixture("cost", Duration::from_secs(3_600)).await;
    fx.create_view("v", |spec| {
        spec.cost.currency = Some("USD".into());
        spec.cost.hourly_budget = Some("100".into());
    })
    .await;
    let view = fx.wait_ready("v", true, "Synced").await;

    // Postpaid, 2 cards at 12.600: 25.200 an hour, billed while running.
    let postpaid = cost_of(&mirror(&fx, "pp01").await);
    assert_eq!(postpaid.currency.as_deref(), Some("USD"));
    assert_eq!(postpaid.product_name.as_deref(), Some("A100"));
    assert_eq!(postpaid.gpu_model.as_deref(), Some("A100"));
    assert_eq!(postpaid.cards, Some(2));
    assert_eq!(postpaid.list_price_per_card_hour.as_deref(), Some("25.200"));
    assert_eq!(
        postpaid.final_price_per_card_hour.as_deref(),
        Some("12.600")
    );
    assert_eq!(postpaid.hourly.as_deref(), Some("25.200"));
    assert!(postpaid.billed_now && postpaid.prepaid_term.is_none());

    // Spot at precision 2: 1 card at 2.25.
    let spot = cost_of(&mirror(&fx, "sp01").await);
    assert_eq!(spot.final_price_per_card_hour.as_deref(), Some("2.25"));
    assert_eq!(spot.hourly.as_deref(), Some("2.25"));

    // Prepaid: billed for its term whatever its status; 4 cards at 9,072.000 a month is 36,288.000
    // for the term and 50.4 an hour at 720 hours.
    let prepaid = cost_of(&mirror(&fx, "pr01").await);
    let term = prepaid.prepaid_term.as_ref().expect("a prepaid term");
    assert_eq!((term.months, term.price.as_str()), (1, "36288.000"));
    assert_eq!(term.final_price_per_card, "9072.000");
    assert_eq!(prepaid.hourly.as_deref(), Some("50.400"));
    assert!(prepaid.billed_now && !prepaid.hourly_rounded_up);

    // Exited postpaid: priced, not billed.
    let exited = cost_of(&mirror(&fx, "ex01").await);
    assert_eq!(exited.hourly.as_deref(), Some("100.800"));
    assert!(!exited.billed_now);

    // A product the list does not hold: no price at all (never zero), and a condition says why.
    let gone = mirror(&fx, "gone").await;
    let unknown = cost_of(&gone);
    assert_eq!((unknown.hourly, unknown.cards), (None, None));
    let known = condition_of(&gone.status.as_ref().unwrap().conditions, PRICE_KNOWN);
    assert_eq!(
        (known.status, known.reason.as_str()),
        (ConditionStatus::False, "ProductNotListed")
    );
    let priced = mirror(&fx, "pp01").await;
    let known = condition_of(&priced.status.as_ref().unwrap().conditions, PRICE_KNOWN);
    assert_eq!(known.status, ConditionStatus::True);
    assert!(
        known.message.contains("25.200 USD an hour"),
        "{}",
        known.message
    );

    // The view: the spend of those billed now, by mode, and the one it cannot price.
    let status = view.status.expect("status");
    let cost = status.cost.expect("the view's cost");
    assert_eq!(cost.currency.as_deref(), Some("USD"));
    let spend = cost.hourly_spend.expect("a spend");
    assert_eq!(spend.postpaid, "25.200");
    assert_eq!(spend.spot, "2.25");
    assert_eq!(spend.prepaid, "50.400");
    assert_eq!(spend.total, "77.850");
    assert_eq!(
        (cost.priced_count, cost.unknown_price_count),
        (Some(3), Some(1))
    );
    assert!(cost.prices_read_at.is_some());
    let current = condition_of(&status.conditions, PRICES_CURRENT);
    assert_eq!(current.status, ConditionStatus::True);
    // Within the budget as far as it is known, but one price is unknown: not a certain answer.
    let budget = condition_of(&status.conditions, WITHIN_BUDGET);
    assert_eq!(
        (budget.status, budget.reason.as_str()),
        (ConditionStatus::Unknown, "PricesUnknown")
    );
    assert!(budget.message.contains("77.850 USD"), "{}", budget.message);

    // What a user sees: the hourly rate in the wide listing.
    let table = fx.ns.kubectl(&["get", "gpui", "-o", "wide"]);
    let header = table_header(&table);
    let column = header
        .iter()
        .position(|c| *c == "HOURLY")
        .unwrap_or_else(|| panic!("no HOURLY column in {table}"));
    let row = table
        .lines()
        .find(|l| l.starts_with("v-pp01"))
        .unwrap_or_else(|| panic!("no v-pp01 row in {table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert!(
        cells.contains(&"25.200") && column > 0,
        "the wide listing shows the hourly rate: {table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_change_rewrites_exactly_the_mirrors_whose_rate_changed() {
    let fx = fixture("reprice", Duration::from_secs(1)).await;
    fx.create_view("v", |_| {}).await;
    fx.wait_ready("v", true, "Synced").await;
    let versions = |mirrors: &[GpuInstance]| -> Vec<(String, Option<String>)> {
        mirrors
            .iter()
            .map(|m| {
                (
                    m.metadata.name.clone().unwrap(),
                    m.metadata.resource_version.clone(),
                )
            })
            .collect()
    };
    let before = versions(&fx.mirrors_of("v").await);
    let reads = fx.simulator().product_requests().len();

    // The list is read again (its time to live is 1 s) and nothing changed: nothing is written.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let view = fx.refresh("v").await;
    assert!(
        fx.simulator().product_requests().len() > reads,
        "the list was read again"
    );
    let ready = condition_of(&view.status.as_ref().unwrap().conditions, condition::READY);
    assert!(
        ready.message.contains("(0 created, 0 updated, 0 removed)"),
        "{}",
        ready.message
    );
    assert_eq!(versions(&fx.mirrors_of("v").await), before);

    // The spot price of the L40 changes: only its spot instance is rewritten.
    fx.simulator()
        .try_set_product_pricing(
            "p-l40",
            json!({"precision": 2,
                   "postpaid": {"base_price": 900, "final_price": 450, "unit": "per_hour"},
                   "spot": {"base_price": 450, "final_price": 300, "unit": "per_hour"}}),
        )
        .expect("new pricing")
        .expect("the product");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let view = fx.refresh("v").await;
    let ready = condition_of(&view.status.as_ref().unwrap().conditions, condition::READY);
    assert!(
        ready.message.contains("(0 created, 1 updated, 0 removed)"),
        "{}",
        ready.message
    );
    let after = versions(&fx.mirrors_of("v").await);
    let changed: Vec<&str> = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| b != a)
        .map(|(b, _)| b.0.as_str())
        .collect();
    assert_eq!(changed, ["v-sp01"]);
    assert_eq!(
        cost_of(&mirror(&fx, "sp01").await).hourly.as_deref(),
        Some("3.00")
    );
    let spend = view.status.unwrap().cost.unwrap().hourly_spend.unwrap();
    assert_eq!(spend.spot, "3.00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spend_crossing_above_the_budget_publishes_one_event_per_crossing() {
    let fx = fixture("budget", Duration::from_secs(3_600)).await;
    // The view lists the running instances: 2 A100 cards postpaid, 1 L40 spot, one unknown.
    fx.create_view("v", |spec| {
        spec.filter.status = Some("running".into());
        spec.cost.hourly_budget = Some("10".into());
    })
    .await;
    let view = fx.wait_ready("v", true, "Synced").await;
    // Spend: 25.200 + 2.25 (+ one unknown): above 10 for certain.
    let budget = condition_of(&view.status.as_ref().unwrap().conditions, WITHIN_BUDGET);
    assert_eq!(
        (budget.status, budget.reason.as_str()),
        (ConditionStatus::False, "OverBudget")
    );
    assert!(budget.message.contains("27.450"), "{}", budget.message);
    let ready = condition_of(&view.status.as_ref().unwrap().conditions, condition::READY);
    assert_eq!(
        ready.status,
        ConditionStatus::True,
        "Ready does not depend on the budget"
    );
    wait_for("one OverBudget Event", Duration::from_secs(30), || async {
        (fx.events_published("v", "OverBudget").await == 1).then_some(())
    })
    .await;

    // Still above at the next syncs: no second Event.
    fx.refresh("v").await;
    fx.refresh("v").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fx.events_published("v", "OverBudget").await, 1);

    // Within a larger budget (the unknown price keeps it Unknown), then above a smaller one again:
    // a second crossing, a second Event.
    fx.change_spec("v", |spec| spec.cost.hourly_budget = Some("1000".into()))
        .await;
    let view = fx.wait_ready("v", true, "Synced").await;
    let budget = condition_of(&view.status.as_ref().unwrap().conditions, WITHIN_BUDGET);
    assert_ne!(budget.status, ConditionStatus::False, "{budget:?}");
    fx.change_spec("v", |spec| spec.cost.hourly_budget = Some("5.5".into()))
        .await;
    fx.wait_ready("v", true, "Synced").await;
    wait_for(
        "a second OverBudget Event",
        Duration::from_secs(30),
        || async { (fx.events_published("v", "OverBudget").await == 2).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_list_that_cannot_be_read_keeps_the_last_prices_and_the_view_ready() {
    let fx = fixture("stale", Duration::from_secs(1)).await;
    fx.create_view("v", |_| {}).await;
    fx.wait_ready("v", true, "Synced").await;
    let before = fx.mirrors_of("v").await;
    let priced = cost_of(&mirror(&fx, "pp01").await);

    // PPIO refuses the next request, the product list's (read first at a refresh).
    fx.simulator()
        .inject_fault(Fault::once(FaultKind::Forbidden));
    let view = fx.refresh("v").await;
    let status = view.status.expect("status");
    let ready = condition_of(&status.conditions, condition::READY);
    assert_eq!(
        (ready.status, ready.reason.as_str()),
        (ConditionStatus::True, "Synced"),
        "the listing goes on: {ready:?}"
    );
    let current = condition_of(&status.conditions, PRICES_CURRENT);
    assert_eq!(
        (current.status, current.reason.as_str()),
        (ConditionStatus::False, "ProductListFailed")
    );
    assert!(current.message.contains("403"), "{}", current.message);
    assert!(current.message.contains("are used"), "{}", current.message);
    assert_eq!(
        cost_of(&mirror(&fx, "pp01").await),
        priced,
        "the last prices stay"
    );
    assert!(
        !current
            .message
            .contains(ppio_test_support::fixture::API_KEY)
    );

    // A hostile list: a precision of 40 fails the read, not the sync; nothing is rewritten.
    tokio::time::sleep(Duration::from_secs(2)).await;
    fx.simulator()
        .try_set_product_pricing(
            "p-l40",
            json!({"precision": 40,
                   "postpaid": {"base_price": 1, "final_price": 1, "unit": "per_hour"}}),
        )
        .expect("pricing")
        .expect("the product");
    let view = fx.refresh("v").await;
    let status = view.status.expect("status");
    assert_eq!(
        condition_of(&status.conditions, condition::READY).status,
        ConditionStatus::True
    );
    let current = condition_of(&status.conditions, PRICES_CURRENT);
    assert_eq!(current.status, ConditionStatus::False, "{current:?}");
    let after = fx.mirrors_of("v").await;
    assert_eq!(
        after
            .iter()
            .map(|m| m.metadata.resource_version.clone())
            .collect::<Vec<_>>(),
        before
            .iter()
            .map(|m| m.metadata.resource_version.clone())
            .collect::<Vec<_>>(),
        "no mirror was rewritten while the prices are stale"
    );

    // Readable again: current again, at the next read.
    fx.simulator()
        .try_upsert_product(product("p-l40", "L40", 2, 450, 225, 324_000))
        .expect("a product");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let view = fx.refresh("v").await;
    let current = condition_of(&view.status.unwrap().conditions, PRICES_CURRENT).clone();
    assert_eq!(current.status, ConditionStatus::True, "{current:?}");
}
