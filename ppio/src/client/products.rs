//! The product list (`GET /gpus/v2/products`) read whole: one request per product type, retried
//! like a page of a listing when it fails transiently, counted against the key's request budget
//! and reported to the request observer like every request.
//!
//! A product list that is returned at all is whole and redacted of the API key (see
//! [`Products`]); a list that fails is an error, never part of a list.

use super::*;
use crate::products::{ProductCategory, ProductQuery, ProductType};

impl Client {
    /// Reads the products `query` asks for (`type`, `category`), with `key`: one request, asked
    /// again while it fails transiently, as a listing asks again for a page
    /// (up to [`ListingLimits::page_attempts`] attempts, after the server's `Retry-After` or an
    /// exponential backoff from [`ListingLimits::retry_base`]; a `Retry-After` longer than
    /// [`ListingLimits::max_retry_wait`] returns the [`PpioError::RateLimited`] at once). Only the
    /// retry fields of `limits` apply. Each attempt waits for the key's request budget first.
    pub async fn list_products(
        &self,
        key: &ApiKey,
        query: &ProductQuery,
        limits: &ListingLimits,
    ) -> Result<Products, PpioError> {
        let url = self.products_url(query);
        let attempts = limits.page_attempts.max(1);
        let attempt = AtomicU32::new(0);
        let fetch = || {
            let number = attempt.fetch_add(1, Ordering::Relaxed) + 1;
            self.request_products(key, url.clone())
                .instrument(tracing::debug_span!(
                    "ppio_list_products",
                    product_type = query.product_type.as_str(),
                    attempt = number
                ))
        };
        fetch
            .retry(page_backoff(limits))
            .sleep(tokio::time::sleep)
            .when(PpioError::is_transient)
            .adjust(|error, backoff| retry_wait(error, backoff, limits))
            .notify(|error, wait| {
                tracing::info!(
                    product_type = query.product_type.as_str(),
                    attempt = attempt.load(Ordering::Relaxed),
                    attempts,
                    reason = error.kind().as_str(),
                    status = error.status_code(),
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    %error,
                    "reading the PPIO product list failed; retrying it"
                );
            })
            .await
    }

    /// Every product an instance can be of: the GPU products and the CPU products of category
    /// `instance`, two calls of [`Client::list_products`] one after the other, merged. Fails when
    /// either fails, or when a product ID is in both with different contents.
    pub async fn list_instance_products(
        &self,
        key: &ApiKey,
        limits: &ListingLimits,
    ) -> Result<Products, PpioError> {
        let mut products = Products::default();
        for product_type in [ProductType::Gpu, ProductType::Cpu] {
            let query = ProductQuery {
                product_type,
                category: ProductCategory::Instance,
            };
            let listed = self.list_products(key, &query, limits).await?;
            products
                .merge(listed)
                .map_err(|error| PpioError::InvalidResponse {
                    detail: sanitize(&format!("the product lists disagree: {error}"), key),
                })?;
        }
        Ok(products)
    }

    /// One request for a product list: paced by the key's budget, reported to the observer, logged.
    async fn request_products(&self, key: &ApiKey, url: Url) -> Result<Products, PpioError> {
        self.pace(key).await;
        let (status_code, result, latency) = self.observed(self.fetch_products(key, url)).await;
        let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        match &result {
            Ok(products) => tracing::debug!(
                status = status_code,
                products = products.len(),
                latency_ms,
                "read the PPIO product list"
            ),
            Err(error) => tracing::debug!(
                status = status_code,
                reason = error.kind().as_str(),
                %error,
                latency_ms,
                "reading the PPIO product list failed"
            ),
        }
        result
    }

    /// The product list URL for `query`.
    fn products_url(&self, query: &ProductQuery) -> Url {
        let mut url = self.inner.products_url.clone();
        url.query_pairs_mut()
            .append_pair("type", query.product_type.as_str())
            .append_pair("category", query.category.as_str());
        url
    }
}
