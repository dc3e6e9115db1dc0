//! Keeps web pages out. Browsers let any page send a "simple" cross-origin POST (a form or
//! `text/plain` body) without asking first, and DNS rebinding points a page's own name at
//! 127.0.0.1 so that it can read the answers too. So: only JSON bodies, only the origin that
//! `--cors-origin` allows, and only the host names this server is reached by.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{CONTENT_TYPE, HOST, ORIGIN};
use axum::http::uri::Authority;
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The host names and origin requests may carry.
#[derive(Debug)]
pub struct RequestPolicy {
    /// Lower-case names; IPv6 addresses in brackets, as in a `Host` header.
    hosts: Vec<String>,
    /// Bound to 0.0.0.0 or [::]: clients may use any of the machine's addresses. An address
    /// typed as such cannot be rebound, so any IP literal is fine; names still need
    /// `--allow-host`.
    any_address: bool,
    /// `--cors-origin`; `*` allows every origin.
    cors_origin: Option<HeaderValue>,
}

impl RequestPolicy {
    pub fn new(bind_host: &str, allow_hosts: &[String], cors_origin: Option<&HeaderValue>) -> Self {
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
            .into_iter()
            .map(String::from)
            .collect();
        let bind: Option<IpAddr> = bind_host.parse().ok();
        let any_address = bind.is_some_and(|ip| ip.is_unspecified());
        let bind_name = (!any_address).then_some(bind_host);
        for name in bind_name
            .into_iter()
            .chain(allow_hosts.iter().map(String::as_str))
        {
            let name = host_form(name);
            if !hosts.contains(&name) {
                hosts.push(name);
            }
        }
        Self {
            hosts,
            any_address,
            cors_origin: cors_origin.cloned(),
        }
    }

    fn allows_host(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        self.hosts.contains(&name) || (self.any_address && is_ip_literal(&name))
    }

    fn allows_origin(&self, origin: &HeaderValue) -> bool {
        self.cors_origin.as_ref().is_some_and(|allowed| {
            allowed == "*" || allowed.as_bytes().eq_ignore_ascii_case(origin.as_bytes())
        })
    }

    /// The names this server answers to, for error messages.
    fn describe_hosts(&self) -> String {
        let mut text = self.hosts.join(", ");
        if self.any_address {
            text.push_str(" and any of this machine's IP addresses");
        }
        text
    }
}

/// A name as it appears in a `Host` header: lower case, IPv6 addresses in brackets.
fn host_form(name: &str) -> String {
    match name.parse::<Ipv6Addr>() {
        Ok(ip) => format!("[{ip}]"),
        Err(_) => name.to_ascii_lowercase(),
    }
}

fn is_ip_literal(name: &str) -> bool {
    let unbracketed = name
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(name);
    unbracketed.parse::<IpAddr>().is_ok()
}

/// Refuses (403) a request for a host name this server does not answer to, or from a web
/// page whose origin `--cors-origin` does not allow. Requests without an `Origin` (curl,
/// SDKs) pass the origin check; every HTTP/1.1 client sends a `Host`.
pub async fn check_host_and_origin(
    State(policy): State<Arc<RequestPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(host) = request_host(&request) {
        let name = Authority::try_from(host.as_str())
            .ok()
            .map(|authority| authority.host().to_owned());
        match name {
            Some(name) if policy.allows_host(&name) => {}
            Some(name) => {
                return ApiError::host_not_allowed(&host, &name, &policy.describe_hosts())
                    .into_response()
            }
            None => {
                return ApiError::invalid(format!("the Host header '{host}' is not a host name"))
                    .into_response()
            }
        }
    }
    if let Some(origin) = request.headers().get(ORIGIN) {
        if !policy.allows_origin(origin) {
            let shown = String::from_utf8_lossy(origin.as_bytes()).into_owned();
            return ApiError::origin_not_allowed(&shown).into_response();
        }
    }
    next.run(request).await
}

/// The `Host` header, or the authority of an absolute request target.
fn request_host(request: &Request) -> Option<String> {
    match request.headers().get(HOST) {
        Some(value) => Some(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        None => request.uri().authority().map(|a| a.as_str().to_owned()),
    }
}

/// Refuses (415) a POST whose body is not declared as JSON (`application/json`, with or
/// without parameters such as `charset=utf-8`).
pub async fn require_json(request: Request, next: Next) -> Response {
    if request.method() == Method::POST {
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        if !content_type.as_deref().is_some_and(is_json) {
            return ApiError::not_json(content_type.as_deref()).into_response();
        }
    }
    next.run(request).await
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_the_bind_host_are_allowed_any_port() {
        let policy = RequestPolicy::new("127.0.0.1", &[], None);
        for name in ["localhost", "LOCALHOST", "127.0.0.1", "[::1]"] {
            assert!(policy.allows_host(name), "{name}");
        }
        for name in [
            "evil.example",
            "localhost.evil.example",
            "192.168.1.5",
            "[::2]",
        ] {
            assert!(!policy.allows_host(name), "{name}");
        }
        let lan = RequestPolicy::new("192.168.1.5", &["Box.Local".into()], None);
        assert!(lan.allows_host("192.168.1.5") && lan.allows_host("box.local"));
        assert!(!lan.allows_host("10.0.0.1"));
        let v6 = RequestPolicy::new("fe80::1", &[], None);
        assert!(v6.allows_host("[fe80::1]"));
    }

    #[test]
    fn an_unspecified_bind_allows_ip_literals_but_not_names() {
        let policy = RequestPolicy::new("0.0.0.0", &[], None);
        assert!(policy.allows_host("192.168.1.5") && policy.allows_host("[fe80::1]"));
        assert!(!policy.allows_host("evil.example"));
        assert!(!policy.allows_host("0.0.0.0.evil.example"));
    }

    #[test]
    fn origins_need_cors_origin() {
        let page = HeaderValue::from_static("http://localhost:3000");
        assert!(!RequestPolicy::new("127.0.0.1", &[], None).allows_origin(&page));
        let allowed = HeaderValue::from_static("http://localhost:3000");
        let policy = RequestPolicy::new("127.0.0.1", &[], Some(&allowed));
        assert!(policy.allows_origin(&page));
        assert!(!policy.allows_origin(&HeaderValue::from_static("http://evil.example")));
        assert!(!policy.allows_origin(&HeaderValue::from_static("null")));
        let any = HeaderValue::from_static("*");
        let policy = RequestPolicy::new("127.0.0.1", &[], Some(&any));
        assert!(policy.allows_origin(&HeaderValue::from_static("http://evil.example")));
    }

    #[test]
    fn json_with_parameters_is_json_and_forms_are_not() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        for other in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "",
        ] {
            assert!(!is_json(other), "{other}");
        }
    }
}
