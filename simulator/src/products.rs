//! The simulated product list (`GET /gpus/v2/products`): the products the generated instances are
//! of, with prices per billing mode as PPIO sends them, the checking of the call's parameters, and
//! the narrowing they ask for.
//!
//! Every product ID [`super::generate_instances`] gives an instance is listed, with the GPU model the
//! generated instance has. Prices follow the documented example: integers at `precision` 3, per
//! card-hour (per instance-hour for CPU products) for `postpaid` and `spot` (`unit: per_hour`),
//! per card and term for `prepaid`, whose 1-month price is exactly 720 hours of the postpaid one.
//! Products are kept as wire-format JSON, so a test can give one any shape (a unit other than
//! `per_hour`, a precision of 40) through the control endpoints.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::SimulatorError;
use super::generate::{CPU_PRODUCTS, GPU_PRODUCTS, Product, REGIONS};

/// The products of the generated instances, in wire format, by ID.
pub(crate) fn generated_products() -> BTreeMap<String, Value> {
    GPU_PRODUCTS
        .iter()
        .chain(CPU_PRODUCTS.iter())
        .map(|product| (product.id.to_owned(), product_json(product)))
        .collect()
}

/// One product in wire format, priced from its postpaid price.
fn product_json(product: &Product) -> Value {
    let postpaid = product.postpaid_price;
    // List prices are 10/7 of the charged ones (the example's 18.000 for 12.600), spot about half.
    let list = |price: i64| price * 10 / 7;
    let spot = postpaid / 2;
    let terms: Vec<Value> = [(1, 100), (3, 95), (6, 90), (12, 85)]
        .into_iter()
        .map(|(months, percent)| {
            let month = postpaid * 720;
            json!({
                "spec_id": format!("{}-{months}m", product.id),
                "duration_months": months,
                "final_price": month * months * percent / 100,
                "base_price": list(month) * months,
            })
        })
        .collect();
    let (kind, gpu) = match product.gpu {
        Some((name, memory_gb)) => (
            "gpu",
            json!({"spec_id": format!("spec-{}", product.id), "name": name, "memory_gb": memory_gb,
                   "min": 1, "max": 8, "available": 8, "max_available": 8}),
        ),
        None => ("cpu", Value::Null),
    };
    let mut resource_spec = json!({
        "cpu": product.cpu, "memory_gb": product.memory_gb,
        "rootfs": {"min_gb": 20, "max_gb": 500, "free_gb": 50},
    });
    if !gpu.is_null() {
        resource_spec["gpu"] = gpu;
    }
    json!({
        "id": product.id,
        "name": product.id.to_uppercase(),
        "type": kind,
        "category": "instance",
        "description": format!("{} instances", product.id),
        "region_ids": REGIONS,
        "resource_spec": resource_spec,
        "pricing": {
            "precision": 3,
            "postpaid": {"base_price": list(postpaid), "final_price": postpaid, "unit": "per_hour"},
            "spot": {"base_price": postpaid, "final_price": spot, "unit": "per_hour"},
            "prepaid": terms,
            "storage_price_per_gb": 50,
        },
        "billing_methods": ["postpaid", "prepaid", "spot"],
        "inventory_state": "normal",
        "deployable": true,
        "activity": {"is_activity_product": false, "active": false, "purchasable": true},
    })
}

/// Checks a product for storing: an object with a non-empty string `id`; returns the ID.
pub(crate) fn validate_product(product: &Value) -> Result<String, SimulatorError> {
    match product.get("id") {
        Some(Value::String(id)) if !id.trim().is_empty() => Ok(id.clone()),
        _ => Err(SimulatorError::InvalidRecord(
            "a product must be a JSON object with a non-empty string \"id\"".to_owned(),
        )),
    }
}

/// What a product list call asks for, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProductQuery {
    kind: String,
    category: String,
    cpu: Option<i64>,
    memory_gb: Option<i64>,
    rootfs_size: Option<i64>,
    billing_method: Option<String>,
    region_ids: BTreeSet<String>,
}

/// Checks the parameters of `GET /gpus/v2/products`, as documented: `type` `gpu` or `cpu` (empty
/// means `gpu`), `category` `instance` or `serverless` (required), and the optional narrowing
/// `cpu`, `memory_gb`, `rootfs_size` (integers >= 0), `billing_method` (`postpaid`, `prepaid`,
/// `spot`) and `region_ids` (comma-separated). The message says what is wrong.
pub(crate) fn parse_product_query(
    query: &BTreeMap<String, String>,
) -> Result<ProductQuery, String> {
    let get = |name: &str| {
        query
            .get(name)
            .map(|value| value.trim())
            .filter(|v| !v.is_empty())
    };
    let kind = match get("type") {
        None | Some("gpu") => "gpu",
        Some("cpu") => "cpu",
        Some(other) => return Err(format!("type must be gpu or cpu, got {other:?}")),
    };
    let category = match get("category") {
        Some(category @ ("instance" | "serverless")) => category,
        Some(other) => {
            return Err(format!(
                "category must be instance or serverless, got {other:?}"
            ));
        }
        None => return Err("category is required: instance or serverless".to_owned()),
    };
    let count = |name: &str| -> Result<Option<i64>, String> {
        get(name)
            .map(|value| {
                value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| format!("{name} must be an integer >= 0, got {value:?}"))
            })
            .transpose()
    };
    let billing_method = match get("billing_method") {
        None => None,
        Some(method @ ("postpaid" | "prepaid" | "spot")) => Some(method.to_owned()),
        Some(other) => {
            return Err(format!(
                "billing_method must be postpaid, prepaid or spot, got {other:?}"
            ));
        }
    };
    Ok(ProductQuery {
        kind: kind.to_owned(),
        category: category.to_owned(),
        cpu: count("cpu")?,
        memory_gb: count("memory_gb")?,
        rootfs_size: count("rootfs_size")?,
        billing_method,
        region_ids: get("region_ids")
            .into_iter()
            .flat_map(|ids| ids.split(','))
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// The products `query` selects, by ID: of its type and category, with at least the CPU cores,
/// memory and root disk asked for, offering the billing method asked for, in any of the regions
/// asked for.
pub(crate) fn select_products(
    products: &BTreeMap<String, Value>,
    query: &ProductQuery,
) -> Vec<Value> {
    let at_least = |value: &Value, wanted: Option<i64>| {
        wanted.is_none_or(|wanted| value.as_i64().is_some_and(|have| have >= wanted))
    };
    products
        .values()
        .filter(|product| {
            let spec = &product["resource_spec"];
            product["type"].as_str().unwrap_or("gpu") == query.kind
                && product["category"].as_str().unwrap_or("instance") == query.category
                && at_least(&spec["cpu"], query.cpu)
                && at_least(&spec["memory_gb"], query.memory_gb)
                && at_least(&spec["rootfs"]["max_gb"], query.rootfs_size)
                && query.billing_method.as_ref().is_none_or(|method| {
                    product["billing_methods"]
                        .as_array()
                        .is_some_and(|methods| methods.iter().any(|m| m == method.as_str()))
                })
                && (query.region_ids.is_empty()
                    || product["region_ids"].as_array().is_some_and(|regions| {
                        regions
                            .iter()
                            .filter_map(Value::as_str)
                            .any(|region| query.region_ids.contains(region))
                    }))
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate_instances;

    fn query(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn every_generated_instance_is_of_a_listed_product_with_its_gpu() {
        let products = generated_products();
        for instance in generate_instances(500, 11) {
            let id = instance["product_id"].as_str().expect("a product ID");
            let product = products
                .get(id)
                .unwrap_or_else(|| panic!("{id} is not listed"));
            let gpus = instance["resource_specs"]["gpu_num"]
                .as_i64()
                .expect("gpu_num");
            assert_eq!(product["type"], instance["type"], "{id}");
            let gpu = &product["resource_spec"]["gpu"];
            if gpus > 0 {
                let name = gpu["name"].as_str().expect("a GPU model");
                let (model, memory) = GPU_PRODUCTS
                    .iter()
                    .find(|p| p.id == id)
                    .and_then(|p| p.gpu)
                    .expect("a GPU product");
                assert_eq!((name, gpu["memory_gb"].as_i64()), (model, Some(memory)));
            } else {
                assert!(gpu.is_null(), "{id}");
            }
        }
    }

    #[test]
    fn prices_follow_the_documented_example() {
        let a100 = &generated_products()["a100-sxm4-80g"]["pricing"];
        assert_eq!(a100["precision"], 3);
        assert_eq!(
            a100["postpaid"],
            json!({"base_price": 18000, "final_price": 12600, "unit": "per_hour"})
        );
        assert_eq!(a100["spot"]["unit"], "per_hour");
        assert_eq!(a100["prepaid"][0]["duration_months"], 1);
        assert_eq!(a100["prepaid"][0]["final_price"], 12_600 * 720);
        assert_eq!(a100["prepaid"][0]["base_price"], 18_000 * 720);
    }

    #[test]
    fn parameters_are_checked_as_documented() {
        let fine = parse_product_query(&query(&[("category", "instance")])).expect("fine");
        assert_eq!(fine.kind, "gpu", "an empty type means gpu");
        for bad in [
            query(&[("type", "tpu"), ("category", "instance")]),
            query(&[("type", "gpu")]),
            query(&[("category", "batch")]),
            query(&[("category", "instance"), ("cpu", "-1")]),
            query(&[("category", "instance"), ("memory_gb", "lots")]),
            query(&[("category", "instance"), ("rootfs_size", "1.5")]),
            query(&[("category", "instance"), ("billing_method", "monthly")]),
        ] {
            assert!(parse_product_query(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn narrowing_selects_by_type_category_resources_billing_and_region() {
        let products = generated_products();
        let ids = |pairs: &[(&str, &str)]| -> Vec<String> {
            let query = parse_product_query(&query(pairs)).expect("valid");
            select_products(&products, &query)
                .iter()
                .map(|p| p["id"].as_str().expect("id").to_owned())
                .collect()
        };
        assert_eq!(ids(&[("category", "instance")]).len(), GPU_PRODUCTS.len());
        assert_eq!(
            ids(&[("type", "cpu"), ("category", "instance"), ("cpu", "16")]),
            ["cpu-16c32g", "cpu-32c64g"]
        );
        assert!(ids(&[("category", "serverless")]).is_empty());
        assert!(ids(&[("category", "instance"), ("region_ids", "mars-1, ")]).is_empty());
        assert_eq!(
            ids(&[("category", "instance"), ("region_ids", "mars-1,us-west-1")]).len(),
            GPU_PRODUCTS.len()
        );
        assert_eq!(
            ids(&[("category", "instance"), ("billing_method", "spot")]).len(),
            GPU_PRODUCTS.len()
        );
    }
}
