//! How the Hub is reached: endpoint, token, caches, and the limits on requests, retries and
//! answers. Read by [`super::hub`] (the client) and `hub_http` (one GET with retries).

use std::path::PathBuf;
use std::time::Duration;

use super::hf_cache;

/// How the Hub is reached. `from_env` follows the ecosystem's variables.
#[derive(Clone, Debug)]
pub struct HubOptions {
    /// Base URL of the Hub (`HF_ENDPOINT`, default `https://huggingface.co`).
    pub endpoint: String,
    /// Access token sent as a bearer token (`HF_TOKEN` or `$HF_HOME/token`), if any.
    pub token: Option<String>,
    /// Our range cache; `None` disables it.
    pub cache_dir: Option<PathBuf>,
    /// The Python client's Hub cache, read-only; `None` disables it.
    pub hub_cache: Option<PathBuf>,
    /// Read only from the caches; never touch the network.
    pub offline: bool,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Ranges of one file closer than this many bytes are fetched as one request.
    pub coalesce_gap: u64,
    /// A coalesced request never grows beyond this many bytes.
    pub max_span: u64,
    /// Attempts per request before giving up (default 5).
    pub max_attempts: u32,
    /// Wait before the first retry; doubled after each failure, with jitter.
    pub backoff_base: Duration,
    /// Longest wait between retries.
    pub backoff_max: Duration,
    /// Longest `Retry-After` we are willing to wait for.
    pub retry_after_max: Duration,
    /// Longest wait for a connection to be established.
    pub connect_timeout: Duration,
    /// Longest silence while reading a response before the attempt counts as failed.
    pub read_timeout: Duration,
    /// Largest API answer (the pin listing) accepted.
    pub max_api_bytes: u64,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            endpoint: "https://huggingface.co".into(),
            token: None,
            cache_dir: None,
            hub_cache: None,
            offline: false,
            concurrency: 8,
            coalesce_gap: 128 * 1024,
            max_span: 64 * 1024 * 1024,
            max_attempts: 5,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
            retry_after_max: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(60),
            max_api_bytes: 64 * 1024 * 1024,
        }
    }
}

impl HubOptions {
    /// `HF_ENDPOINT`, `HF_TOKEN` / `$HF_HOME/token`, `HF_HUB_CACHE` / `$HF_HOME/hub`,
    /// `HF_HUB_OFFLINE`, and our range cache under the user cache folder.
    pub fn from_env() -> HubOptions {
        HubOptions {
            endpoint: std::env::var("HF_ENDPOINT")
                .ok()
                .filter(|e| !e.trim().is_empty())
                .map(|e| e.trim().trim_end_matches('/').to_string())
                .unwrap_or_else(|| HubOptions::default().endpoint),
            token: hf_cache::token(),
            cache_dir: dirs::cache_dir().map(|c| c.join("weight-audit")),
            hub_cache: hf_cache::hub_cache_dir(),
            offline: hf_cache::offline_from_env(),
            ..HubOptions::default()
        }
    }
}
