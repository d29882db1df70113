//! Just enough HTTP/1.1 for a loopback test server: request heads are parsed by hand so the
//! server keeps byte-level control over what it writes (truncated bodies, stalls, wrong headers),
//! which a full server framework would hide.

use std::io;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// Largest request head (request line + headers) accepted; larger heads get 431.
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header lines accepted; more gets 431.
pub(crate) const MAX_HEADERS: usize = 128;
/// Largest request body the server reads and discards (GET/HEAD clients send none).
pub(crate) const MAX_REQUEST_BODY: u64 = 1024 * 1024;

/// A parsed request head. The body, if any, is discarded by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub method: String,
    /// The raw request target, e.g. `/api/models/org/name?blobs=true`.
    pub target: String,
    /// The target before `?`, still percent-encoded (so `%2F` stays distinguishable from `/`).
    pub path: String,
    /// The target after `?`, or empty.
    pub query: String,
    pub keep_alive: bool,
    pub content_length: u64,
    headers: Vec<(String, String)>,
}

impl Request {
    /// First value of a header, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether `key=value` occurs in the query string (value compared case-insensitively).
    pub fn query_flag(&self, key: &str, value: &str) -> bool {
        self.query
            .split('&')
            .any(|pair| match pair.split_once('=') {
                Some((k, v)) => k == key && v.eq_ignore_ascii_case(value),
                None => false,
            })
    }
}

/// Why a request head could not be read; each maps to one answer (or none) by the server.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// The connection failed; there is nobody to answer.
    Io,
    /// The head exceeded [`MAX_HEAD_BYTES`] or [`MAX_HEADERS`]: answer 431.
    TooLarge,
    /// Syntax error: answer 400.
    Malformed(&'static str),
    /// A body the server will not read (too large, or chunked): answer 413.
    BodyTooLarge,
}

impl From<io::Error> for HeadError {
    fn from(_: io::Error) -> Self {
        HeadError::Io
    }
}

/// Reads one request head. `Ok(None)` means the peer closed the connection cleanly between
/// requests (the normal end of a keep-alive connection).
pub(crate) async fn read_request<R: AsyncBufRead + Unpin>(
    r: &mut R,
) -> Result<Option<Request>, HeadError> {
    let mut lines: Vec<String> = Vec::new();
    let mut total = 0usize;
    loop {
        let budget = MAX_HEAD_BYTES.saturating_sub(total);
        if budget == 0 {
            return Err(HeadError::TooLarge);
        }
        let mut line = Vec::new();
        // `take` bounds the buffering of a single endless line, not only the whole head.
        let n = (&mut *r)
            .take(budget as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return if total == 0 {
                Ok(None)
            } else {
                Err(HeadError::Malformed(
                    "connection closed inside the request head",
                ))
            };
        }
        total += n;
        if line.last() != Some(&b'\n') {
            return if total >= MAX_HEAD_BYTES {
                Err(HeadError::TooLarge)
            } else {
                Err(HeadError::Malformed(
                    "connection closed inside the request head",
                ))
            };
        }
        trim_eol(&mut line);
        if line.is_empty() {
            if lines.is_empty() {
                // RFC 9112 §2.2: ignore empty lines before the request line.
                continue;
            }
            break;
        }
        if lines.len() > MAX_HEADERS {
            return Err(HeadError::TooLarge);
        }
        let text = String::from_utf8(line).map_err(|_| HeadError::Malformed("non-UTF-8 head"))?;
        lines.push(text);
    }
    parse_head(&lines).map(Some)
}

fn trim_eol(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
}

/// Parses the request line and header lines (without line terminators).
pub(crate) fn parse_head(lines: &[String]) -> Result<Request, HeadError> {
    let (first, header_lines) = lines
        .split_first()
        .ok_or(HeadError::Malformed("empty request"))?;
    let (method, target, http10) = parse_request_line(first)?;
    let headers = header_lines
        .iter()
        .map(|l| parse_header_line(l))
        .collect::<Result<Vec<_>, _>>()?;
    let mut req = Request {
        method,
        path: target.split('?').next().unwrap_or_default().to_string(),
        query: target
            .split_once('?')
            .map(|(_, q)| q.to_string())
            .unwrap_or_default(),
        target,
        keep_alive: true,
        content_length: 0,
        headers,
    };
    let connection = req.header("connection").unwrap_or("").to_ascii_lowercase();
    req.keep_alive = if http10 {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    };
    req.content_length = content_length(&req)?;
    Ok(req)
}

fn parse_request_line(line: &str) -> Result<(String, String, bool), HeadError> {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed(
            "request line is not `METHOD target HTTP/1.x`",
        ));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HeadError::Malformed("bad method token"));
    }
    if !target.starts_with('/') {
        return Err(HeadError::Malformed(
            "request target must be an absolute path",
        ));
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(HeadError::Malformed("unsupported HTTP version")),
    };
    Ok((method.to_string(), target.to_string(), http10))
}

fn parse_header_line(line: &str) -> Result<(String, String), HeadError> {
    let (name, value) = line
        .split_once(':')
        .ok_or(HeadError::Malformed("header line without `:`"))?;
    // A name with whitespace also rejects obsolete line folding (RFC 9112 §5.2).
    if name.is_empty()
        || name
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(HeadError::Malformed("bad header name"));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

fn content_length(req: &Request) -> Result<u64, HeadError> {
    if req.header("transfer-encoding").is_some() {
        // Chunked request bodies are never sent by Hub clients; refuse rather than mis-frame.
        return Err(HeadError::BodyTooLarge);
    }
    let mut found: Option<u64> = None;
    for (_, v) in req
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        let n: u64 = v
            .parse()
            .map_err(|_| HeadError::Malformed("bad Content-Length"))?;
        if found.is_some_and(|f| f != n) {
            return Err(HeadError::Malformed("conflicting Content-Length"));
        }
        found = Some(n);
    }
    let n = found.unwrap_or(0);
    if n > MAX_REQUEST_BODY {
        return Err(HeadError::BodyTooLarge);
    }
    Ok(n)
}

/// Decodes `%XX` escapes; `None` for a malformed escape or a result that is not UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes a repo file path for a URL, keeping `/` as the separator.
pub(crate) fn percent_encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What a `Range` header asks of a body of `total` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeRequest {
    /// No header, a syntactically invalid one, or a multi-range request: serve the whole body
    /// with 200 (RFC 9110 §14.2 lets a server ignore Range; S3 answers multi-range this way).
    Whole,
    /// Inclusive byte positions, already clamped to the body.
    Partial(u64, u64),
    /// Answer 416. Also used for `a-b` with `b < a`, which RFC 9110 calls invalid: a test server is
    /// more useful loud than lenient here.
    Unsatisfiable,
}

pub(crate) fn parse_range(header: Option<&str>, total: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let parse = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    match (a.is_empty(), b.is_empty()) {
        // `bytes=-n`: the last n bytes.
        (true, false) => match parse(b) {
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if total == 0 => RangeRequest::Unsatisfiable,
            Some(n) => RangeRequest::Partial(total.saturating_sub(n), total - 1),
            None => RangeRequest::Whole,
        },
        // `bytes=a-`: from a to the end.
        (false, true) => match parse(a) {
            Some(a) if a >= total => RangeRequest::Unsatisfiable,
            Some(a) => RangeRequest::Partial(a, total - 1),
            None => RangeRequest::Whole,
        },
        (false, false) => match (parse(a), parse(b)) {
            (Some(a), Some(b)) if b < a || a >= total => RangeRequest::Unsatisfiable,
            (Some(a), Some(b)) => RangeRequest::Partial(a, b.min(total - 1)),
            _ => RangeRequest::Whole,
        },
        (true, true) => RangeRequest::Whole,
    }
}

pub(crate) fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Serialises a response head. `Content-Length` is always written so clients can frame bodies
/// on a kept-alive connection (and so a truncated body is detectable).
pub(crate) fn response_head(
    status: u16,
    headers: &[(String, String)],
    content_length: u64,
    close: bool,
) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    head.push_str("Server: weight-audit-testhub\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {content_length}\r\n"));
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &[&str]) -> Vec<String> {
        s.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn parses_request_line_headers_and_keep_alive() {
        let req = parse_head(&lines(&[
            "GET /api/models/a/b?blobs=true&x=1 HTTP/1.1",
            "Host: x",
            "RANGE:  bytes=0-9 ",
        ]))
        .unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(req.path, "/api/models/a/b");
        assert_eq!(req.query, "blobs=true&x=1");
        assert!(req.query_flag("blobs", "TRUE"));
        assert!(!req.query_flag("x", "true"));
        assert_eq!(req.header("range"), Some("bytes=0-9"));
        assert!(req.keep_alive);

        let close = parse_head(&lines(&["GET / HTTP/1.1", "Connection: close"])).unwrap();
        assert!(!close.keep_alive);
        let http10 = parse_head(&lines(&["GET / HTTP/1.0"])).unwrap();
        assert!(!http10.keep_alive);
        let http10_ka = parse_head(&lines(&["GET / HTTP/1.0", "Connection: Keep-Alive"])).unwrap();
        assert!(http10_ka.keep_alive);
    }

    #[test]
    fn rejects_malformed_heads() {
        for bad in [
            vec!["GARBAGE"],
            vec!["GET /"],
            vec!["get / HTTP/1.1"],
            vec!["GET relative HTTP/1.1"],
            vec!["GET / HTTP/2.0"],
            vec!["GET / HTTP/1.1 extra"],
            vec!["GET / HTTP/1.1", "no colon"],
            vec!["GET / HTTP/1.1", " folded: x"],
            vec!["GET / HTTP/1.1", "Content-Length: abc"],
            vec!["GET / HTTP/1.1", "Content-Length: 1", "Content-Length: 2"],
        ] {
            assert!(
                matches!(parse_head(&lines(&bad)), Err(HeadError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_head(&lines(&["POST / HTTP/1.1", "Transfer-Encoding: chunked"])),
            Err(HeadError::BodyTooLarge)
        ));
        assert!(matches!(
            parse_head(&lines(&["POST / HTTP/1.1", "Content-Length: 99999999"])),
            Err(HeadError::BodyTooLarge)
        ));
    }

    #[tokio::test]
    async fn reads_heads_with_limits() {
        let mut ok: &[u8] = b"\r\nGET /a HTTP/1.1\nHost: x\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
        let first = read_request(&mut ok).await.unwrap().unwrap();
        assert_eq!(first.path, "/a");
        let second = read_request(&mut ok).await.unwrap().unwrap();
        assert_eq!(second.path, "/b");
        assert!(read_request(&mut ok).await.unwrap().is_none());

        let mut cut: &[u8] = b"GET /a HTTP/1.1\r\nHost";
        assert!(matches!(
            read_request(&mut cut).await,
            Err(HeadError::Malformed(_))
        ));

        let huge = format!(
            "GET / HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES)
        );
        let mut huge = huge.as_bytes();
        assert!(matches!(
            read_request(&mut huge).await,
            Err(HeadError::TooLarge)
        ));

        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_HEADERS + 2)
        );
        let mut many = many.as_bytes();
        assert!(matches!(
            read_request(&mut many).await,
            Err(HeadError::TooLarge)
        ));
    }

    #[test]
    fn ranges() {
        use RangeRequest::*;
        let r = |h: &str, total| parse_range(Some(h), total);
        assert_eq!(parse_range(None, 10), Whole);
        assert_eq!(r("bytes=0-0", 10), Partial(0, 0));
        assert_eq!(r("bytes=2-5", 10), Partial(2, 5));
        assert_eq!(r("bytes=2-500", 10), Partial(2, 9));
        assert_eq!(r("bytes=7-", 10), Partial(7, 9));
        assert_eq!(r("bytes=-3", 10), Partial(7, 9));
        assert_eq!(r("bytes=-30", 10), Partial(0, 9));
        assert_eq!(r("bytes=10-", 10), Unsatisfiable);
        assert_eq!(r("bytes=10-20", 10), Unsatisfiable);
        assert_eq!(r("bytes=5-2", 10), Unsatisfiable);
        assert_eq!(r("bytes=-0", 10), Unsatisfiable);
        assert_eq!(r("bytes=0-", 0), Unsatisfiable);
        assert_eq!(r("bytes=-1", 0), Unsatisfiable);
        assert_eq!(r("bytes=0-1,4-5", 10), Whole);
        assert_eq!(r("bytes=a-b", 10), Whole);
        assert_eq!(r("bytes=+1-2", 10), Whole);
        assert_eq!(r("items=0-1", 10), Whole);
        assert_eq!(r("bytes=-", 10), Whole);
    }

    #[test]
    fn percent_coding() {
        assert_eq!(
            percent_decode("refs%2Fpr%2F1").as_deref(),
            Some("refs/pr/1")
        );
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%2"), None);
        assert_eq!(percent_decode("%ff"), None);
        assert_eq!(percent_encode_path("dir/a b+c.json"), "dir/a%20b%2Bc.json");
    }
}
