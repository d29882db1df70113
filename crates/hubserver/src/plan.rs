//! A response before it is written: routing builds a [`Plan`], fault rules rewrite it, and the
//! server writes it. Plans hold no I/O handles, so building and rewriting them is pure.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::faults::{MAX_DELAY_MS, RequestView};
use super::http::Request;
use super::{FaultHost, FaultKind};

/// Bytes `ExtraBytes` appends to a 206 body, and their value.
pub(super) const EXTRA_BYTES: usize = 16;
pub(super) const EXTRA_FILL: u8 = 0xEE;

/// A response not yet written.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Body,
    /// `org/name/path` of the repo file concerned, for fault matching.
    pub(super) label: Option<String>,
}

#[derive(Debug)]
pub(super) enum Body {
    Bytes(Vec<u8>),
    File(FileBody),
}

#[derive(Debug)]
pub(super) struct FileBody {
    pub(super) path: PathBuf,
    pub(super) label: String,
    pub(super) total: u64,
    pub(super) start: u64,
    pub(super) len: u64,
    /// Bytes of [`EXTRA_FILL`] sent after the file bytes (the `ExtraBytes` fault).
    pub(super) extra: u64,
}

impl Body {
    pub(super) fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::File(f) => f.len + f.extra,
        }
    }
}

pub(super) fn text_headers() -> Vec<(String, String)> {
    vec![("Content-Type".into(), "text/plain; charset=utf-8".into())]
}

impl Plan {
    pub(super) fn text(status: u16, body: impl Into<String>) -> Plan {
        Plan {
            status,
            headers: text_headers(),
            body: Body::Bytes(body.into().into_bytes()),
            label: None,
        }
    }

    pub(super) fn json(status: u16, value: &Value) -> Plan {
        Plan {
            status,
            headers: vec![(
                "Content-Type".into(),
                "application/json; charset=utf-8".into(),
            )],
            // Serialising a `Value` cannot fail.
            body: Body::Bytes(serde_json::to_vec(value).unwrap_or_default()),
            label: None,
        }
    }

    /// A Hub error as `huggingface_hub` parses it: `X-Error-Code`, `X-Error-Message`, JSON body.
    pub(super) fn hub_error(status: u16, code: &str, message: &str) -> Plan {
        Plan::json(status, &json!({ "error": message }))
            .header("X-Error-Code", code)
            .header("X-Error-Message", message)
    }

    pub(super) fn header(mut self, name: &str, value: impl Into<String>) -> Plan {
        self.set_header(name, value);
        self
    }

    pub(super) fn set_header(&mut self, name: &str, value: impl Into<String>) {
        self.remove_header(name);
        self.headers.push((name.to_string(), value.into()));
    }

    pub(super) fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    pub(super) fn get_header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn with_label(mut self, label: String) -> Plan {
        self.label = Some(label);
        self
    }

    pub(super) fn view<'a>(
        &'a self,
        host: FaultHost,
        req: &'a Request,
        head_only: bool,
    ) -> RequestView<'a> {
        RequestView {
            host,
            target: &req.target,
            file_label: self.label.as_deref(),
            body_len: if head_only { 0 } else { self.body.len() },
            partial_file: self.status == 206 && matches!(self.body, Body::File(_)),
            has_commit: self.get_header("X-Repo-Commit").is_some(),
        }
    }
}

pub(super) fn quoted(s: &str) -> String {
    format!("\"{s}\"")
}

/// Send-time effects of a fault.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct SendEffects {
    pub(super) truncate_after: Option<u64>,
    pub(super) stall_ms: u64,
}

/// Rewrites `plan` for `kind`; `None` means close the connection without answering.
/// `target` (the request target) picks the rate-limit quota a 429 names.
pub(super) fn apply_fault(kind: FaultKind, plan: &mut Plan, target: &str) -> Option<SendEffects> {
    let mut effects = SendEffects::default();
    match kind {
        FaultKind::CloseConnection => return None,
        FaultKind::Status { code, retry_after } => {
            *plan = injected_status(code, retry_after.as_deref(), target);
        }
        FaultKind::TruncateBody { after } => effects.truncate_after = Some(after),
        FaultKind::Stall { ms } => effects.stall_ms = ms.min(MAX_DELAY_MS),
        // `select` never returns latency as the kind; its delay is waited for in `handle`.
        FaultKind::Latency { .. } => {}
        FaultKind::WrongCommit => {
            let real = plan.get_header("X-Repo-Commit").unwrap_or_default();
            let wrong =
                blake3::hash(format!("wrong-commit:{real}").as_bytes()).to_hex()[..40].to_string();
            plan.set_header("X-Repo-Commit", wrong);
        }
        FaultKind::IgnoreRange => {
            if let Body::File(f) = &mut plan.body {
                f.start = 0;
                f.len = f.total;
                plan.status = 200;
                plan.remove_header("Content-Range");
            }
        }
        FaultKind::WrongContentRange => {
            if let Body::File(f) = &plan.body {
                // Shift the announced window by one byte: a plausible off-by-one server bug.
                let (a, b) = if f.start > 0 {
                    (f.start - 1, f.start + f.len - 2)
                } else {
                    (1, f.len)
                };
                let total = f.total;
                plan.set_header("Content-Range", format!("bytes {a}-{b}/{total}"));
            }
        }
        FaultKind::ExtraBytes => {
            if let Body::File(f) = &mut plan.body {
                f.extra = EXTRA_BYTES as u64;
            }
        }
    }
    Some(effects)
}

/// An injected error status. A 429 also carries the Hub's `RateLimit` headers (hub-docs
/// rate-limits.md), whose `t=` (seconds to reset) clients should prefer over `Retry-After`.
fn injected_status(code: u16, retry_after: Option<&str>, target: &str) -> Plan {
    let mut plan = Plan::json(
        code,
        &json!({ "error": format!("injected fault: status {code}") }),
    );
    if let Some(after) = retry_after {
        plan.set_header("Retry-After", after);
    }
    // These statuses must not have a body; a client would read one as the next response.
    if code < 200 || code == 204 || code == 304 {
        plan.body = Body::Bytes(Vec::new());
    }
    if code == 429 {
        let quota = if target.starts_with("/api/models") {
            "api"
        } else {
            "resolvers"
        };
        let reset = retry_after.and_then(|r| r.parse::<u64>().ok()).unwrap_or(1);
        plan.set_header("RateLimit", format!("\"{quota}\";r=0;t={reset}"));
        plan.set_header(
            "RateLimit-Policy",
            format!("\"fixed window\";\"{quota}\";q=1000;w=300"),
        );
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_body(start: u64, len: u64, total: u64) -> Plan {
        Plan {
            status: 206,
            headers: vec![(
                "Content-Range".into(),
                format!("bytes {start}-{}/{total}", start + len - 1),
            )],
            body: Body::File(FileBody {
                path: PathBuf::new(),
                label: "o/n/f".into(),
                total,
                start,
                len,
                extra: 0,
            }),
            label: None,
        }
    }

    #[test]
    fn wrong_content_range_never_matches_the_request() {
        for (start, len) in [(0, 10), (5, 1), (90, 10)] {
            let mut plan = file_body(start, len, 100);
            let right = plan.get_header("Content-Range").map(str::to_string);
            apply_fault(FaultKind::WrongContentRange, &mut plan, "/");
            assert_ne!(plan.get_header("Content-Range").map(str::to_string), right);
        }
    }

    #[test]
    fn ignore_range_and_extra_bytes_rewrite_the_body() {
        let mut plan = file_body(10, 5, 100);
        apply_fault(FaultKind::IgnoreRange, &mut plan, "/");
        assert_eq!((plan.status, plan.body.len()), (200, 100));
        assert!(plan.get_header("Content-Range").is_none());
        let mut plan = file_body(10, 5, 100);
        apply_fault(FaultKind::ExtraBytes, &mut plan, "/");
        assert_eq!(plan.body.len(), 5 + EXTRA_BYTES as u64);
        assert!(apply_fault(FaultKind::CloseConnection, &mut plan, "/").is_none());
    }

    #[test]
    fn injected_429_names_the_quota_and_reset() {
        let plan = injected_status(429, Some("3"), "/o/n/resolve/main/x");
        assert_eq!(plan.get_header("Retry-After"), Some("3"));
        assert_eq!(plan.get_header("RateLimit"), Some("\"resolvers\";r=0;t=3"));
        let api = injected_status(429, None, "/api/models/o/n");
        assert_eq!(api.get_header("RateLimit"), Some("\"api\";r=0;t=1"));
        assert!(
            injected_status(503, None, "/")
                .get_header("RateLimit")
                .is_none()
        );
    }
}
