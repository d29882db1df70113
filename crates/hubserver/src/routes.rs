//! Routing: a request becomes a [`Plan`] for the hub or the CDN, with the Hub's status codes,
//! headers and error codes (see the module docs of `hubserver`).

use std::sync::Arc;

use super::http::{self, RangeRequest, Request};
use super::plan::{Body, FileBody, Plan, quoted};
use super::repo::{Commit, FileEntry, LfsInfo, Repo, info_json};
use super::state::{State, blob_key, file_label};

/// Key for the CDN URL "signatures": not security, only a check that clients keep the query.
const URL_KEY: &str = "testhub-cdn-url-key";

fn url_signature(key: &str) -> String {
    blake3::keyed_hash(blake3::hash(URL_KEY.as_bytes()).as_bytes(), key.as_bytes()).to_hex()[..32]
        .to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HubPathKind {
    Api,
    Resolve,
    Other,
}

pub(super) fn classify_hub_path(path: &str) -> HubPathKind {
    if path.starts_with("/api/models/") {
        HubPathKind::Api
    } else if path.starts_with("/api/resolve-cache/") || path.split('/').nth(3) == Some("resolve") {
        HubPathKind::Resolve
    } else {
        HubPathKind::Other
    }
}

fn method_not_allowed() -> Plan {
    Plan::text(405, "only GET and HEAD are served").header("Allow", "GET, HEAD")
}

pub(super) fn hub_plan(req: &Request, state: &State) -> Plan {
    if !matches!(req.method.as_str(), "GET" | "HEAD") {
        return method_not_allowed();
    }
    let segs: Vec<&str> = req.path.split('/').skip(1).collect();
    match segs.as_slice() {
        ["api", "models", org, name, rest @ ..] => api_plan(req, state, org, name, rest),
        ["api", "resolve-cache", "models", org, name, sha, path @ ..] if !path.is_empty() => {
            resolve_cache_plan(req, state, org, name, sha, path)
        }
        [org, name, "resolve", rev, path @ ..] if !path.is_empty() => {
            resolve_plan(req, state, org, name, rev, path)
        }
        _ => Plan::text(404, "Not Found"),
    }
}

fn bad_request() -> Plan {
    Plan::text(400, "malformed percent-encoding in the path")
}

/// Decodes the raw `org`, `name` segments into a repo id.
fn repo_id(org: &str, name: &str) -> Option<String> {
    Some(format!(
        "{}/{}",
        http::percent_decode(org)?,
        http::percent_decode(name)?
    ))
}

/// Decodes raw path segments into a repo file path.
fn decode_path(segs: &[&str]) -> Option<String> {
    let parts: Option<Vec<String>> = segs.iter().map(|s| http::percent_decode(s)).collect();
    parts.map(|p| p.join("/"))
}

fn repo_not_found() -> Plan {
    Plan::hub_error(404, "RepoNotFound", "Repository not found")
}

fn revision_not_found(rev: &str) -> Plan {
    Plan::hub_error(404, "RevisionNotFound", &format!("Invalid rev id: {rev}"))
}

fn api_plan(req: &Request, state: &State, org: &str, name: &str, rest: &[&str]) -> Plan {
    let rev = match rest {
        [] | [""] => Some("main".to_string()),
        ["revision", rev @ ..] if !rev.is_empty() => decode_path(rev),
        _ => return Plan::text(404, "Not Found"),
    };
    let (Some(id), Some(rev)) = (repo_id(org, name), rev) else {
        return bad_request();
    };
    let Some(repo) = state.repo(&id) else {
        return repo_not_found();
    };
    let Some(commit) = repo.resolve(&rev) else {
        return revision_not_found(&rev);
    };
    let info = info_json(&repo, commit, req.query_flag("blobs", "true"));
    Plan::json(200, &info).header("X-Repo-Commit", commit.sha.as_str())
}

fn resolve_plan(
    req: &Request,
    state: &State,
    org: &str,
    name: &str,
    rev: &str,
    path: &[&str],
) -> Plan {
    let (Some(id), Some(rev), Some(path)) = (
        repo_id(org, name),
        http::percent_decode(rev),
        decode_path(path),
    ) else {
        return bad_request();
    };
    let Some(repo) = state.repo(&id) else {
        return repo_not_found();
    };
    let Some(commit) = repo.resolve(&rev) else {
        return revision_not_found(&rev);
    };
    let plan = match gated_file(req, &repo, commit, &path) {
        Err(denied) => *denied,
        Ok(file) => match &file.lfs {
            Some(lfs) => lfs_redirect(state, &repo, commit, file, lfs),
            None if state.resolve_cache_redirect() => resolve_cache_redirect(&repo, commit, file),
            None => file_plan(
                file,
                file_label(&repo.id, file),
                req.header("range"),
                &file.blob_id,
            ),
        },
    };
    plan.header("X-Repo-Commit", commit.sha.as_str())
}

fn resolve_cache_plan(
    req: &Request,
    state: &State,
    org: &str,
    name: &str,
    sha: &str,
    path: &[&str],
) -> Plan {
    let (Some(id), Some(path)) = (repo_id(org, name), decode_path(path)) else {
        return bad_request();
    };
    let Some(repo) = state.repo(&id) else {
        return repo_not_found();
    };
    // The cache is addressed by commit sha only, never by branch name.
    let Some(commit) = repo.commits.get(sha) else {
        return revision_not_found(sha);
    };
    let plan = match gated_file(req, &repo, commit, &path) {
        Err(denied) => *denied,
        Ok(file) => file_plan(
            file,
            file_label(&repo.id, file),
            req.header("range"),
            &file.blob_id,
        ),
    };
    plan.header("X-Repo-Commit", commit.sha.as_str())
}

/// The gate, then the file lookup, with the Hub's error codes and messages.
fn gated_file<'c>(
    req: &Request,
    repo: &Repo,
    commit: &'c Commit,
    path: &str,
) -> Result<&'c Arc<FileEntry>, Box<Plan>> {
    if let Some(token) = &repo.gated_token {
        let presented = req
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match presented {
            None => {
                let msg = format!(
                    "Access to model {} is restricted. You must have access to it and be authenticated to access it. Please log in.",
                    repo.id
                );
                return Err(Box::new(Plan::hub_error(401, "GatedRepo", &msg)));
            }
            Some(t) if t != token => {
                let msg = format!(
                    "Access to model {} is restricted and you are not in the authorized list.",
                    repo.id
                );
                return Err(Box::new(Plan::hub_error(403, "GatedRepo", &msg)));
            }
            Some(_) => {}
        }
    }
    commit.files.get(path).ok_or_else(|| {
        let msg = format!("Entry not found: {path}");
        Box::new(Plan::hub_error(404, "EntryNotFound", &msg))
    })
}

fn lfs_redirect(
    state: &State,
    repo: &Repo,
    commit: &Commit,
    file: &FileEntry,
    lfs: &LfsInfo,
) -> Plan {
    let key = blob_key(&repo.id, &commit.sha, &file.rfilename);
    let location = format!(
        "{}/blobs/{key}?X-Amz-Expires=3600&X-Amz-Signature={}",
        state.cdn_origin,
        url_signature(&key)
    );
    Plan::text(302, format!("Found. Redirecting to {location}"))
        .header("Location", location)
        .header("X-Linked-Etag", quoted(&lfs.sha256))
        .header("X-Linked-Size", file.size.to_string())
        .header("ETag", quoted(&file.blob_id))
        .with_label(file_label(&repo.id, file))
}

fn resolve_cache_redirect(repo: &Repo, commit: &Commit, file: &FileEntry) -> Plan {
    let location = format!(
        "/api/resolve-cache/models/{}/{}/{}",
        repo.id,
        commit.sha,
        http::percent_encode_path(&file.rfilename)
    );
    Plan::text(
        307,
        format!("Temporary Redirect. Redirecting to {location}"),
    )
    .header("Location", location)
    .header("ETag", quoted(&file.blob_id))
    .with_label(file_label(&repo.id, file))
}

/// A file answer honouring `Range` (see [`http::parse_range`]).
fn file_plan(file: &FileEntry, label: String, range: Option<&str>, etag: &str) -> Plan {
    let total = file.size;
    let body = |start, len| {
        Body::File(FileBody {
            path: file.abs.clone(),
            label: label.clone(),
            total,
            start,
            len,
            extra: 0,
        })
    };
    let plan = match http::parse_range(range, total) {
        RangeRequest::Whole => Plan {
            status: 200,
            headers: Vec::new(),
            body: body(0, total),
            label: None,
        },
        RangeRequest::Partial(a, b) => Plan {
            status: 206,
            headers: vec![("Content-Range".into(), format!("bytes {a}-{b}/{total}"))],
            body: body(a, b - a + 1),
            label: None,
        },
        RangeRequest::Unsatisfiable => Plan::text(416, "Requested Range Not Satisfiable")
            .header("Content-Range", format!("bytes */{total}")),
    };
    let plan = if plan.status == 416 {
        plan
    } else {
        plan.header("Content-Type", "application/octet-stream")
    };
    plan.header("Accept-Ranges", "bytes")
        .header("ETag", quoted(etag))
        .with_label(label)
}

pub(super) fn cdn_plan(req: &Request, state: &State) -> Plan {
    if !matches!(req.method.as_str(), "GET" | "HEAD") {
        return method_not_allowed();
    }
    let Some(key) = req.path.strip_prefix("/blobs/") else {
        return Plan::text(404, "Not Found");
    };
    let Some(blob) = state.blob(key) else {
        return Plan::text(404, "NoSuchKey");
    };
    if !req.query_flag("X-Amz-Signature", &url_signature(key)) {
        return Plan::text(403, "AccessDenied: missing or bad signature").with_label(blob.label);
    }
    file_plan(&blob.file, blob.label, req.header("range"), &blob.sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_hub_paths() {
        let kind = |p| classify_hub_path(p);
        assert_eq!(kind("/api/models/o/n"), HubPathKind::Api);
        assert_eq!(kind("/o/n/resolve/main/x"), HubPathKind::Resolve);
        assert_eq!(
            kind("/api/resolve-cache/models/o/n/s/x"),
            HubPathKind::Resolve
        );
        assert_eq!(kind("/o/n/blob/main/x"), HubPathKind::Other);
    }

    #[test]
    fn cdn_keys_and_signatures_are_distinct_per_file() {
        let a = blob_key("o/n", "s", "a.bin");
        assert_ne!(a, blob_key("o/n", "s", "b.bin"));
        assert_ne!(a, blob_key("o/n", "t", "a.bin"));
        assert_ne!(
            url_signature(&a),
            url_signature(&blob_key("o/n", "s", "b.bin"))
        );
    }
}
