//! Requests counted by the servers themselves: the API server's `apiserver_request_total` (read from its
//! `/metrics` with the admin identity) by verb and resource, and the list requests the PPIO simulator
//! recorded (`GET /_simulator/requests`).

use std::collections::BTreeMap;

use serde_json::Value;

/// One kind of API server request: verb (`GET`, `LIST`, `WATCH`, `POST`, `PUT`, `PATCH`, `APPLY`,
/// `DELETE`, ...), API group, resource and subresource.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestKind {
    /// The verb as the API server labels it.
    pub verb: String,
    /// The API group, empty for the core group.
    pub group: String,
    /// The resource, e.g. `gpuinstances`.
    pub resource: String,
    /// The subresource, e.g. `status`, or empty.
    pub subresource: String,
}

impl RequestKind {
    /// A request kind from its parts.
    pub fn new(verb: &str, group: &str, resource: &str, subresource: &str) -> RequestKind {
        RequestKind {
            verb: verb.to_owned(),
            group: group.to_owned(),
            resource: resource.to_owned(),
            subresource: subresource.to_owned(),
        }
    }

    /// Whether the request changes what it names.
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "POST" | "PUT" | "PATCH" | "APPLY" | "DELETE" | "DELETECOLLECTION"
        )
    }

    /// `VERB resource[/subresource]`, as the report prints it.
    pub fn label(&self) -> String {
        if self.subresource.is_empty() {
            format!("{} {}", self.verb, self.resource)
        } else {
            format!("{} {}/{}", self.verb, self.resource, self.subresource)
        }
    }
}

/// Request counts by kind (summed over response codes, versions and scopes).
#[derive(Clone, Debug, Default)]
pub struct RequestCounts(pub BTreeMap<RequestKind, f64>);

impl RequestCounts {
    /// The counts now, from the API server's own metrics. Requests to non-resource URLs (such as
    /// `/metrics` itself) are left out.
    pub async fn read(client: &kube::Client) -> Result<RequestCounts, String> {
        let request = http::Request::get("/metrics")
            .body(Vec::new())
            .map_err(|e| format!("cannot build the /metrics request: {e}"))?;
        let text = client
            .request_text(request)
            .await
            .map_err(|e| format!("cannot read the API server's /metrics: {e}"))?;
        Ok(RequestCounts::parse(&text))
    }

    /// The `apiserver_request_total` samples of a Prometheus text exposition.
    fn parse(text: &str) -> RequestCounts {
        let mut counts = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once('}') else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let labels = parse_labels(labels);
            let label = |name: &str| labels.get(name).map_or("", String::as_str);
            if label("resource").is_empty() {
                continue;
            }
            let kind = RequestKind::new(
                label("verb"),
                label("group"),
                label("resource"),
                label("subresource"),
            );
            *counts.entry(kind).or_insert(0.0) += value;
        }
        RequestCounts(counts)
    }

    /// The requests counted since `earlier`, without kinds that saw none.
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        RequestCounts(
            self.0
                .iter()
                .map(|(kind, &now)| {
                    (
                        kind.clone(),
                        now - earlier.0.get(kind).copied().unwrap_or(0.0),
                    )
                })
                .filter(|&(_, delta)| delta > 0.0)
                .collect(),
        )
    }

    /// Takes away `count` requests of `kind` (the benchmark's own), never below zero.
    pub fn discount(&mut self, kind: &RequestKind, count: f64) {
        if let Some(value) = self.0.get_mut(kind) {
            *value = (*value - count).max(0.0);
            if *value == 0.0 {
                self.0.remove(kind);
            }
        }
    }

    /// Every count divided by `by`.
    pub fn per(&self, by: f64) -> RequestCounts {
        RequestCounts(
            self.0
                .iter()
                .map(|(kind, &count)| (kind.clone(), count / by))
                .collect(),
        )
    }

    /// The sum of the counts of kinds that `include` accepts.
    pub fn total(&self, include: impl Fn(&RequestKind) -> bool) -> f64 {
        self.0
            .iter()
            .filter(|(kind, _)| include(kind))
            .map(|(_, &count)| count)
            .sum()
    }
}

/// `name="value",...` with the exposition format's escapes (`\\`, `\"`, `\n`).
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        let name: String = chars.by_ref().take_while(|&c| c != '=').collect();
        let name = name.trim().trim_start_matches(',').trim().to_owned();
        if name.is_empty() || chars.next() != Some('"') {
            return labels;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                '"' => break,
                other => value.push(other),
            }
        }
        labels.insert(name, value);
    }
}

/// What the PPIO simulator recorded: list requests, and how many of them began a listing.
#[derive(Clone, Copy, Debug, Default)]
pub struct PpioRequests {
    /// List requests (pages asked for).
    pub pages: usize,
    /// Of those, first pages (no cursor): one per listing, so one per sync.
    pub listings: usize,
    /// Product list requests (the prices: one for GPU and one for CPU products per read).
    pub products: usize,
}

impl PpioRequests {
    /// The simulator's count now.
    pub async fn read(http: &reqwest::Client, simulator: &str) -> Result<PpioRequests, String> {
        let recorded = get_json_array(http, &format!("{simulator}/_simulator/requests")).await?;
        let listings = recorded
            .iter()
            .filter(|request| {
                request["query"]
                    .get("cursor")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
            })
            .count();
        let products =
            get_json_array(http, &format!("{simulator}/_simulator/product-requests")).await?;
        Ok(PpioRequests {
            pages: recorded.len(),
            listings,
            products: products.len(),
        })
    }

    /// The requests recorded since `earlier`.
    pub fn since(&self, earlier: &PpioRequests) -> PpioRequests {
        PpioRequests {
            pages: self.pages.saturating_sub(earlier.pages),
            listings: self.listings.saturating_sub(earlier.listings),
            products: self.products.saturating_sub(earlier.products),
        }
    }
}

/// GETs `url` and reads its answer as a JSON array.
pub async fn get_json_array(http: &reqwest::Client, url: &str) -> Result<Vec<Value>, String> {
    http.get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("cannot read {url}: {e}"))?
        .bytes()
        .await
        .map_err(|e| format!("cannot read {url}: {e}"))
        .and_then(|body| {
            serde_json::from_slice(&body)
                .map_err(|e| format!("{url} did not answer a JSON array: {e}"))
        })
}
