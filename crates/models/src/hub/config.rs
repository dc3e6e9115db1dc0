use std::time::Duration;

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// How to talk to the hub. `Default` suits huggingface.co; tests point `endpoint` at a
/// local server and shorten the timings.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Base URL without a trailing slash, e.g. `https://huggingface.co` or a mirror.
    pub endpoint: String,
    /// Access token for gated or private repos (sent only to `endpoint`, never to the CDN).
    pub token: Option<String>,
    /// Files downloaded at the same time.
    pub parallel_files: usize,
    /// Retries per file after a connection error, timeout, 408, 429 or 5xx.
    pub max_retries: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub connect_timeout: Duration,
    /// A read that waits longer than this counts as a dropped connection (then retried).
    pub read_timeout: Duration,
    pub user_agent: String,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            endpoint: DEFAULT_ENDPOINT.to_string(),
            token: None,
            parallel_files: 4,
            max_retries: 6,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(30),
            user_agent: format!("impchat/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

impl HubConfig {
    /// Defaults, with `HF_ENDPOINT` and `HF_TOKEN` honoured like the official tools do.
    pub fn from_env() -> Self {
        let mut config = Self::default();
        if let Ok(endpoint) = std::env::var("HF_ENDPOINT") {
            if !endpoint.trim().is_empty() {
                config.endpoint = endpoint.trim().trim_end_matches('/').to_string();
            }
        }
        if let Ok(token) = std::env::var("HF_TOKEN") {
            if !token.trim().is_empty() {
                config.token = Some(token.trim().to_string());
            }
        }
        config
    }

    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(16));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    pub(crate) fn agent(&self) -> ureq::Agent {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(self.connect_timeout))
            .timeout_per_read(Some(self.read_timeout))
            .user_agent(self.user_agent.as_str())
            .build();
        ureq::Agent::new_with_config(config)
    }
}
