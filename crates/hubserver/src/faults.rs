//! Fault rules: which injected misbehaviour, if any, a request gets.
//!
//! Rules are tried in order. A rule *matches* when its host and `path_contains` match and it has
//! remaining uses; it is *applicable* when its kind can change this particular response (a
//! `WrongContentRange` cannot change a JSON answer, so it does not fire there and keeps its
//! count). `Latency` rules never stop the search: every matching latency rule adds its delay, and
//! then the first matching, applicable non-latency rule fires. Every firing decrements that rule's
//! count and increments `ServerStats::faults_fired`.

use super::{Fault, FaultHost, FaultKind};

/// Upper bound for `Latency` and `Stall` delays, so a typo cannot hang a test run forever.
pub(crate) const MAX_DELAY_MS: u64 = 60_000;

/// What the fault engine needs to know about a request and its planned answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestView<'a> {
    /// `Hub` or `Cdn` (never `Any`).
    pub host: FaultHost,
    /// Raw request target (path and query).
    pub target: &'a str,
    /// `org/name/path` of the repo file the answer concerns, if any (CDN paths are opaque, so
    /// `path_contains` also matches this).
    pub file_label: Option<&'a str>,
    /// A GET whose planned answer has this many body bytes (0 for HEAD).
    pub body_len: u64,
    /// The planned answer is a 206 with a file body.
    pub partial_file: bool,
    /// The planned answer carries `X-Repo-Commit`.
    pub has_commit: bool,
}

/// The faults chosen for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Selection {
    pub latency_ms: u64,
    pub kind: Option<FaultKind>,
    pub fired: u64,
}

#[derive(Debug, Default)]
pub(crate) struct FaultRules {
    rules: Vec<(Fault, Option<u32>)>,
}

impl FaultRules {
    pub fn replace(&mut self, faults: Vec<Fault>) {
        self.rules = faults
            .into_iter()
            .map(|f| {
                let left = f.times;
                (f, left)
            })
            .collect();
    }

    pub fn select(&mut self, view: &RequestView<'_>) -> Selection {
        let mut sel = Selection::default();
        for (fault, left) in &mut self.rules {
            if left == &Some(0) || !matches(fault, view) {
                continue;
            }
            let is_latency = matches!(fault.kind, FaultKind::Latency { .. });
            if !is_latency && (sel.kind.is_some() || !applicable(&fault.kind, view)) {
                continue;
            }
            if let Some(n) = left.as_mut() {
                *n -= 1;
            }
            sel.fired += 1;
            match &fault.kind {
                FaultKind::Latency { ms } => {
                    sel.latency_ms = sel.latency_ms.saturating_add(*ms).min(MAX_DELAY_MS);
                }
                kind => sel.kind = Some(kind.clone()),
            }
        }
        sel
    }
}

fn matches(fault: &Fault, view: &RequestView<'_>) -> bool {
    let host_ok = fault.host == FaultHost::Any || fault.host == view.host;
    let path_ok = match &fault.path_contains {
        None => true,
        Some(p) => {
            view.target.contains(p.as_str())
                || view.file_label.is_some_and(|l| l.contains(p.as_str()))
        }
    };
    host_ok && path_ok
}

fn applicable(kind: &FaultKind, view: &RequestView<'_>) -> bool {
    match kind {
        FaultKind::Status { .. } | FaultKind::CloseConnection | FaultKind::Latency { .. } => true,
        FaultKind::TruncateBody { after } => view.body_len > *after,
        FaultKind::Stall { .. } => view.body_len > 0,
        FaultKind::IgnoreRange | FaultKind::WrongContentRange | FaultKind::ExtraBytes => {
            view.partial_file
        }
        FaultKind::WrongCommit => view.has_commit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(host: FaultHost, target: &str) -> RequestView<'_> {
        RequestView {
            host,
            target,
            file_label: None,
            body_len: 100,
            partial_file: false,
            has_commit: true,
        }
    }

    fn rule(kind: FaultKind, host: FaultHost, path: Option<&str>, times: Option<u32>) -> Fault {
        Fault {
            path_contains: path.map(str::to_string),
            host,
            kind,
            times,
        }
    }

    #[test]
    fn first_matching_rule_fires_and_counts_down() {
        let mut rules = FaultRules::default();
        let s503 = FaultKind::Status {
            code: 503,
            retry_after: None,
        };
        let s429 = FaultKind::Status {
            code: 429,
            retry_after: Some("1".into()),
        };
        rules.replace(vec![
            rule(s503.clone(), FaultHost::Cdn, None, None),
            rule(s429.clone(), FaultHost::Any, Some("config"), Some(2)),
        ]);
        let hub = view(FaultHost::Hub, "/org/m/resolve/main/config.json");
        assert_eq!(rules.select(&hub).kind, Some(s429.clone()));
        assert_eq!(rules.select(&hub).kind, Some(s429));
        assert_eq!(rules.select(&hub), Selection::default());
        let cdn = view(FaultHost::Cdn, "/blobs/abc");
        assert_eq!(rules.select(&cdn).kind, Some(s503));
    }

    #[test]
    fn path_matches_the_file_label_for_opaque_cdn_urls() {
        let mut rules = FaultRules::default();
        rules.replace(vec![rule(
            FaultKind::CloseConnection,
            FaultHost::Any,
            Some("w.safetensors"),
            None,
        )]);
        let mut v = view(FaultHost::Cdn, "/blobs/abc");
        assert_eq!(rules.select(&v).kind, None);
        v.file_label = Some("org/m/w.safetensors");
        assert_eq!(rules.select(&v).kind, Some(FaultKind::CloseConnection));
    }

    #[test]
    fn inapplicable_rules_keep_their_count() {
        let mut rules = FaultRules::default();
        rules.replace(vec![
            rule(FaultKind::WrongContentRange, FaultHost::Any, None, Some(1)),
            rule(FaultKind::WrongCommit, FaultHost::Any, None, Some(1)),
        ]);
        let json = view(FaultHost::Hub, "/api/models/org/m");
        assert_eq!(rules.select(&json).kind, Some(FaultKind::WrongCommit));
        assert_eq!(rules.select(&json).kind, None);
        let mut ranged = view(FaultHost::Cdn, "/blobs/x");
        ranged.partial_file = true;
        assert_eq!(
            rules.select(&ranged).kind,
            Some(FaultKind::WrongContentRange)
        );
        let mut small = view(FaultHost::Hub, "/x");
        small.body_len = 10;
        rules.replace(vec![rule(
            FaultKind::TruncateBody { after: 10 },
            FaultHost::Any,
            None,
            None,
        )]);
        assert_eq!(rules.select(&small).kind, None);
    }

    #[test]
    fn latency_accumulates_and_does_not_block_other_rules() {
        let mut rules = FaultRules::default();
        rules.replace(vec![
            rule(FaultKind::Latency { ms: 5 }, FaultHost::Any, None, None),
            rule(
                FaultKind::Latency { ms: MAX_DELAY_MS },
                FaultHost::Hub,
                None,
                Some(1),
            ),
            rule(FaultKind::WrongCommit, FaultHost::Any, None, None),
        ]);
        let sel = rules.select(&view(FaultHost::Hub, "/"));
        assert_eq!(sel.latency_ms, MAX_DELAY_MS);
        assert_eq!(sel.kind, Some(FaultKind::WrongCommit));
        assert_eq!(sel.fired, 3);
        let sel = rules.select(&view(FaultHost::Hub, "/"));
        assert_eq!((sel.latency_ms, sel.fired), (5, 2));
    }
}
