//! The product list's decoding rules, one test each.

use super::*;
use serde_json::{Value, json};

/// The documented example product.
fn example() -> Value {
    json!({
        "id": "prod-a100-80g", "name": "A100-80G", "type": "gpu", "category": "instance",
        "description": "NVIDIA A100 80GB", "region_ids": ["c-east-1"],
        "resource_spec": {
            "gpu": {"spec_id": "spec-a100-80g", "name": "A100", "memory_gb": 80, "min": 1, "max": 8,
                    "available": 6, "max_available": 6},
            "cpu": 16, "memory_gb": 128,
            "rootfs": {"min_gb": 50, "max_gb": 500, "free_gb": 50}
        },
        "pricing": {
            "precision": 3,
            "postpaid": {"base_price": 18000, "final_price": 12600, "unit": "per_hour"},
            "spot":     {"base_price": 12600, "final_price": 6000,  "unit": "per_hour"},
            "prepaid":  [{"spec_id": "spec_a100_1m", "duration_months": 1, "final_price": 9072000,
                          "base_price": 12960000}],
            "storage_price_per_gb": 50
        },
        "billing_methods": ["postpaid", "prepaid", "spot"],
        "inventory_state": "normal", "deployable": true,
        "activity": {"is_activity_product": false, "active": false, "purchasable": true}
    })
}

fn list_of(products: Vec<Value>) -> Vec<u8> {
    json!({ "data": products }).to_string().into_bytes()
}

fn decode(products: Vec<Value>) -> Result<Products, DecodeError> {
    Products::from_json(&list_of(products))
}

/// The example with `pointer` (a JSON pointer) set to `value`.
fn example_with(pointer: &str, value: Value) -> Value {
    let mut product = example();
    *product
        .pointer_mut(pointer)
        .expect("the example has the field") = value;
    product
}

fn d(units: u128, scale: u8) -> Decimal {
    Decimal::new(units, scale).expect("valid decimal")
}

fn known(list: Option<Decimal>, charged: Decimal) -> ListedPrice {
    ListedPrice::Known { list, charged }
}

#[test]
fn decodes_the_documented_example_exactly() {
    let products = decode(vec![example()]).expect("decodes");
    assert_eq!(products.len(), 1);
    let product = products.get("prod-a100-80g").expect("listed");
    assert_eq!(
        *product,
        Product {
            id: ProductId::new("prod-a100-80g").expect("id"),
            name: "A100-80G".into(),
            kind: "gpu".into(),
            gpu: Some(GpuModel {
                name: "A100".into(),
                memory_gb: 80
            }),
            pricing: Pricing {
                postpaid: known(Some(d(18_000, 3)), d(12_600, 3)),
                spot: known(Some(d(12_600, 3)), d(6_000, 3)),
                prepaid: vec![TermPrice {
                    months: 1,
                    price: known(Some(d(12_960_000, 3)), d(9_072_000, 3)),
                }],
            },
        }
    );
    let ListedPrice::Known { charged, .. } = product.pricing.postpaid else {
        panic!("known");
    };
    assert_eq!(charged.to_string(), "12.600");
}

#[test]
fn numbers_may_arrive_as_numeric_strings() {
    let mut product = example();
    product["pricing"]["precision"] = json!("3");
    product["pricing"]["postpaid"]["final_price"] = json!("12600");
    product["pricing"]["prepaid"][0]["duration_months"] = json!("1");
    product["resource_spec"]["gpu"]["memory_gb"] = json!("80");
    let products = decode(vec![product]).expect("decodes");
    assert_eq!(products, decode(vec![example()]).expect("decodes"));
}

#[test]
fn a_unit_other_than_per_hour_makes_that_modes_price_unknown_never_guessed() {
    for unit in [
        json!("per_minute"),
        json!(""),
        Value::Null,
        json!("PER_HOUR"),
    ] {
        let product = example_with("/pricing/spot/unit", unit.clone());
        let products = decode(vec![product]).expect("decodes");
        let pricing = &products.get("prod-a100-80g").expect("listed").pricing;
        let expected = unit.as_str().unwrap_or_default().to_owned();
        assert_eq!(
            pricing.spot,
            ListedPrice::Unknown(UnknownPrice::UnitNotPerHour { unit: expected }),
            "{unit}"
        );
        assert!(matches!(pricing.postpaid, ListedPrice::Known { .. }));
    }
    let mut product = example();
    product["pricing"]["spot"]
        .as_object_mut()
        .expect("object")
        .remove("unit");
    let products = decode(vec![product]).expect("decodes");
    assert!(matches!(
        products.get("prod-a100-80g").expect("listed").pricing.spot,
        ListedPrice::Unknown(UnknownPrice::UnitNotPerHour { .. })
    ));
}

#[test]
fn a_mode_not_listed_or_without_final_price_or_precision_is_unknown() {
    let mut product = example();
    product["pricing"]
        .as_object_mut()
        .expect("object")
        .remove("spot");
    product["pricing"]["postpaid"]["final_price"] = Value::Null;
    let products = decode(vec![product]).expect("decodes");
    let pricing = &products.get("prod-a100-80g").expect("listed").pricing;
    assert_eq!(pricing.spot, ListedPrice::Unknown(UnknownPrice::NotListed));
    assert_eq!(
        pricing.postpaid,
        ListedPrice::Unknown(UnknownPrice::NoFinalPrice)
    );

    let product = example_with("/pricing/precision", Value::Null);
    let products = decode(vec![product]).expect("decodes");
    let pricing = &products.get("prod-a100-80g").expect("listed").pricing;
    for price in [&pricing.postpaid, &pricing.spot, &pricing.prepaid[0].price] {
        assert_eq!(*price, ListedPrice::Unknown(UnknownPrice::NoPrecision));
    }

    let mut product = example();
    product.as_object_mut().expect("object").remove("pricing");
    let products = decode(vec![product]).expect("decodes");
    let pricing = &products.get("prod-a100-80g").expect("listed").pricing;
    assert_eq!(
        pricing.postpaid,
        ListedPrice::Unknown(UnknownPrice::NoPricing)
    );
    assert!(pricing.prepaid.is_empty());
}

#[test]
fn a_precision_out_of_range_fails_the_whole_read() {
    for precision in [json!(40), json!(-1), json!(10), json!("40"), json!(2.5)] {
        let products = vec![
            json!({"id": "fine", "pricing": {"precision": 2}}),
            example_with("/pricing/precision", precision.clone()),
        ];
        let error = decode(products).expect_err("out of range");
        assert_eq!(error.path, "data[1].pricing.precision", "{precision}");
    }
    let products = decode(vec![example_with("/pricing/precision", json!(9))]).expect("9 fits");
    let ListedPrice::Known { charged, .. } = &products
        .get("prod-a100-80g")
        .expect("listed")
        .pricing
        .postpaid
    else {
        panic!("known");
    };
    assert_eq!(charged.to_string(), "0.000012600");
}

#[test]
fn a_price_out_of_range_fails_the_whole_read() {
    let cases = [
        ("/pricing/postpaid/final_price", json!(-1)),
        ("/pricing/postpaid/base_price", json!(MAX_PRICE_UNITS + 1)),
        ("/pricing/spot/final_price", json!("1000000000000000000000")),
        ("/pricing/spot/final_price", json!(u64::MAX)),
        ("/pricing/prepaid/0/final_price", json!(12.5)),
        ("/pricing/prepaid/0/base_price", json!("lots")),
    ];
    for (pointer, value) in cases {
        let error = decode(vec![example_with(pointer, value.clone())]).expect_err(pointer);
        let expected = format!(
            "data[0].{}",
            pointer[1..].replace("/0/", "[0].").replace('/', ".")
        );
        assert_eq!(error.path, expected, "{value}");
    }
    // An out-of-range price fails the read even under a unit that makes the price unknown.
    let mut product = example_with("/pricing/spot/unit", json!("per_minute"));
    product["pricing"]["spot"]["final_price"] = json!(-5);
    assert!(decode(vec![product]).is_err());
    let top = decode(vec![example_with(
        "/pricing/postpaid/final_price",
        json!(MAX_PRICE_UNITS),
    )])
    .expect("the bound itself fits");
    assert_eq!(top.len(), 1);
}

#[test]
fn prepaid_terms_must_last_a_bounded_number_of_months() {
    for months in [json!(0), json!(-3), json!(121), Value::Null, json!("x")] {
        let error = decode(vec![example_with(
            "/pricing/prepaid/0/duration_months",
            months.clone(),
        )])
        .expect_err("out of range");
        assert_eq!(
            error.path, "data[0].pricing.prepaid[0].duration_months",
            "{months}"
        );
    }
}

#[test]
fn an_ambiguous_price_fails_the_whole_read() {
    let mut twice = example();
    twice["pricing"]["prepaid"] = json!([
        {"duration_months": 1, "final_price": 9072000},
        {"duration_months": 1, "final_price": 1},
    ]);
    let error = decode(vec![twice]).expect_err("two 1-month terms");
    assert_eq!(error.path, "data[0].pricing.prepaid[1]");

    let other = example_with("/pricing/postpaid/final_price", json!(1));
    let error = decode(vec![example(), other]).expect_err("one ID, two prices");
    assert_eq!(error.path, "data[1].id");
    assert!(error.message.contains("ambiguous"), "{error}");
    assert_eq!(
        decode(vec![example(), example()])
            .expect("the same twice")
            .len(),
        1
    );
}

#[test]
fn the_envelope_is_strict() {
    for body in [
        "{}",
        r#"{"data": null}"#,
        r#"{"code": 500, "reason": "INTERNAL_SERVER_ERROR"}"#,
        r#"{"data": {}}"#,
        "[]",
        r#"{"data": []} {"data": []}"#,
        "<html>Bad gateway</html>",
        r#"{"data": [{"id": "a"}]"#,
    ] {
        assert!(Products::from_json(body.as_bytes()).is_err(), "{body}");
    }
    let empty = Products::from_json(br#"{"data": [], "total": 0}"#).expect("an empty list");
    assert!(empty.is_empty());
}

#[test]
fn a_product_without_an_id_fails_the_whole_read() {
    for id in [Value::Null, json!(""), json!("  ")] {
        let error = decode(vec![example(), example_with("/id", id.clone())]).expect_err("no id");
        assert_eq!(error.path, "data[1].id", "{id}");
    }
    let mut product = example();
    product.as_object_mut().expect("object").remove("id");
    assert!(decode(vec![product]).is_err());
}

#[test]
fn memory_is_bounded_by_the_item_count_and_the_product_and_term_bounds() {
    let many = vec![json!({"id": "p"}); MAX_PRODUCTS + 1];
    let error = decode(many).expect_err("too many products");
    assert!(error.message.contains("more than 10000 items"), "{error}");

    let mut terms = example();
    terms["pricing"]["prepaid"] = Value::Array(
        (1..=MAX_PREPAID_TERMS + 1)
            .map(|months| json!({"duration_months": months.min(120), "final_price": 1}))
            .collect(),
    );
    let error = decode(vec![terms]).expect_err("too many terms");
    assert_eq!(error.path, "data[0].pricing.prepaid");

    let wide = format!(
        r#"{{"data": [{{"id": "a", "region_ids": [{}]}}]}}"#,
        vec!["0"; MAX_PAGE_ITEMS + 1].join(",")
    );
    let error = Products::from_json(wide.as_bytes()).expect_err("too many items");
    assert_eq!(error.path, ".");
    assert!(error.message.contains(REFUSED_UNREAD), "{error}");

    let deep = format!(r#"{{"data": {}}}"#, "[".repeat(100_000));
    assert!(Products::from_json(deep.as_bytes()).is_err());
}

#[test]
fn redact_replaces_the_key_in_every_string_kept_and_the_id_is_checked_apart() {
    const SECRET: &str = "sk_live_products_0123";
    let key = ApiKey::new(SECRET).expect("key");
    let mut product = example();
    product["name"] = json!(format!("name {SECRET}"));
    product["type"] = json!(format!("gpu {SECRET}"));
    product["resource_spec"]["gpu"]["name"] = json!(format!("A100 {SECRET}"));
    product["pricing"]["spot"]["unit"] = json!(format!("per_{SECRET}"));
    let mut products = decode(vec![product]).expect("decodes");
    assert_eq!(products.id_holding(&key), None);
    assert_eq!(products.redact(&key), 4);
    let shown = format!("{products:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert_eq!(shown.matches(crate::REDACTED).count(), 4, "{shown}");

    let products = decode(vec![
        example(),
        example_with("/id", json!(format!("p-{SECRET}"))),
    ])
    .expect("ok");
    assert!(products.id_holding(&key).is_some());
}

#[test]
fn merging_lists_keeps_both_and_refuses_a_conflict_whole() {
    let mut gpus = decode(vec![example()]).expect("decodes");
    let cpus = decode(vec![json!({"id": "cpu-4c8g", "type": "cpu"}), example()]).expect("ok");
    gpus.merge(cpus).expect("no conflict");
    assert_eq!(gpus.len(), 2);
    let conflict = decode(vec![
        json!({"id": "new"}),
        example_with("/name", json!("renamed")),
    ])
    .expect("ok");
    assert!(gpus.merge(conflict).is_err());
    assert_eq!(gpus.len(), 2, "nothing merged");
    assert!(gpus.get("cpu-4c8g").expect("listed").is_cpu());
}

#[test]
fn unknown_reasons_say_why_and_cut_a_long_unit() {
    let reason = UnknownPrice::UnitNotPerHour {
        unit: "x".repeat(1000),
    };
    let text = reason.to_string();
    assert!(text.len() < 100, "{text}");
    assert!(text.ends_with("…, not per hour"), "{text}");
    assert_eq!(
        UnknownPrice::NotListed.to_string(),
        "the product list gives no price for this billing mode"
    );
}
