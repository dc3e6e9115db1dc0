//! The few URL operations the hub protocol needs.

/// Percent-encodes everything outside RFC 3986's unreserved set.
pub(crate) fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `{endpoint}/{repo}/resolve/{revision}/{file}`; the revision is one path segment (so
/// `refs/pr/1` becomes `refs%2Fpr%2F1`), file path segments are encoded one by one.
pub(crate) fn resolve_url(endpoint: &str, repo: &str, revision: &str, file: &str) -> String {
    let file: Vec<String> = file.split('/').map(encode_component).collect();
    format!(
        "{}/{}/resolve/{}/{}",
        endpoint.trim_end_matches('/'),
        repo,
        encode_component(revision),
        file.join("/")
    )
}

/// `scheme://host[:port]` of an absolute URL.
pub(crate) fn origin(url: &str) -> &str {
    let Some(scheme_end) = url.find("://") else {
        return url;
    };
    let rest = &url[scheme_end + 3..];
    match rest.find('/') {
        Some(slash) => &url[..scheme_end + 3 + slash],
        None => url,
    }
}

/// Resolves a `Location` header against the URL that sent it.
pub(crate) fn join_location(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else if let Some(rest) = location.strip_prefix("//") {
        let scheme = base.split("://").next().unwrap_or("https");
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{}{location}", origin(base))
    } else {
        let path_end = base.split(['?', '#']).next().unwrap_or(base);
        match path_end.rfind('/') {
            Some(slash) if slash >= origin(base).len() => {
                format!("{}{location}", &path_end[..=slash])
            }
            _ => format!("{}/{location}", origin(base)),
        }
    }
}

/// `owner/name` with the characters the hub allows.
pub(crate) fn is_valid_repo(repo: &str) -> bool {
    let valid_part = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    match repo.split_once('/') {
        Some((owner, name)) => valid_part(owner) && valid_part(name),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_hub_resolve_urls() {
        assert_eq!(
            resolve_url(
                "https://huggingface.co/",
                "MILVLG/imp-v1-3b",
                "refs/pr/1",
                "sub dir/a+b.json"
            ),
            "https://huggingface.co/MILVLG/imp-v1-3b/resolve/refs%2Fpr%2F1/sub%20dir/a%2Bb.json"
        );
    }

    #[test]
    fn joins_locations() {
        let base = "http://127.0.0.1:9/MILVLG/x/resolve/main/config.json";
        assert_eq!(
            join_location(base, "https://cdn.example/a"),
            "https://cdn.example/a"
        );
        assert_eq!(
            join_location(base, "/cdn/abc"),
            "http://127.0.0.1:9/cdn/abc"
        );
        assert_eq!(
            join_location(base, "other.json"),
            "http://127.0.0.1:9/MILVLG/x/resolve/main/other.json"
        );
        assert_eq!(
            join_location(base, "//cdn.example/b"),
            "http://cdn.example/b"
        );
        assert_eq!(origin(base), "http://127.0.0.1:9");
    }

    #[test]
    fn validates_repo_names() {
        assert!(is_valid_repo("MILVLG/Imp-v1.5-2B-Qwen1.5"));
        for bad in ["MILVLG", "a/b/c", "../x", "a/..", "a b/c", "/x"] {
            assert!(!is_valid_repo(bad), "{bad}");
        }
    }
}
