//! Listeners, connections and response writing over the shared [`State`].
//!
//! Each request is first turned into a [`Plan`] (status, headers, body source) by pure routing
//! code (`routes`); fault rules then inspect and rewrite the plan (`plan::apply_fault`); finally
//! [`send`] writes it, applying the send-time faults (truncation, stalls). Keeping routing free of
//! I/O keeps faults orthogonal to endpoints.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::FaultHost;
use super::http::{self, HeadError, Request};
use super::plan::{Body, EXTRA_FILL, FileBody, Plan, SendEffects, apply_fault, text_headers};
use super::routes::{self, HubPathKind};
use super::state::{State, lock};

/// Accepted sockets inherit this send buffer from the listener. Kept small so that
/// `body_bytes_sent` tracks what a client actually pulled (for `IgnoreRange` with an early
/// hang-up) rather than megabytes of kernel buffering.
const SEND_BUFFER_BYTES: u32 = 1024 * 1024;
/// File bodies are read and written in chunks of this size; memory use is bounded by it.
const CHUNK_BYTES: u64 = 1024 * 1024;
/// A kept-alive connection idle this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a closing connection keeps draining client input (see [`close_gracefully`]).
const LINGER: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Hub,
    Cdn,
}

impl Origin {
    fn fault_host(self) -> FaultHost {
        match self {
            Origin::Hub => FaultHost::Hub,
            Origin::Cdn => FaultHost::Cdn,
        }
    }
}

pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_send_buffer_size(SEND_BUFFER_BYTES)?;
    // Lets `serve_blocking` restart on a fixed port while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

pub(crate) async fn accept_loop(listener: TcpListener, origin: Origin, state: Arc<State>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                state.bump(|s| s.connections += 1);
                // Heads and bodies go out in separate writes; with Nagle's algorithm the second
                // write would wait for a delayed ACK (40 ms) on every kept-alive request.
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_connection(stream, origin, state.clone()));
            }
            // E.g. out of file descriptors: back off and keep serving rather than die silently.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn serve_connection(stream: TcpStream, origin: Origin, state: Arc<State>) {
    let mut conn = BufReader::new(stream);
    loop {
        let req = match tokio::time::timeout(IDLE_TIMEOUT, http::read_request(&mut conn)).await {
            Ok(Ok(Some(req))) => req,
            Ok(Err(HeadError::Io)) => return,
            Ok(Err(e)) => {
                if reject(conn.get_mut(), &e).await.is_ok() {
                    close_gracefully(conn).await;
                }
                return;
            }
            Ok(Ok(None)) | Err(_) => break,
        };
        if discard_body(&mut conn, req.content_length).await.is_err() {
            return;
        }
        match handle(&mut conn, &req, origin, &state).await {
            Ok(true) if req.keep_alive => continue,
            Ok(_) => break,
            Err(_) => return,
        }
    }
    close_gracefully(conn).await;
}

/// Sends FIN and drains input briefly before the socket is dropped: closing a socket with unread
/// input makes the kernel send RST, which can destroy an answer the client has not read yet.
async fn close_gracefully(mut conn: BufReader<TcpStream>) {
    let _ = conn.get_mut().shutdown().await;
    let mut input = (&mut conn).take(1 << 20);
    let mut sink = tokio::io::sink();
    let _ = tokio::time::timeout(LINGER, tokio::io::copy(&mut input, &mut sink)).await;
}

async fn reject(stream: &mut TcpStream, err: &HeadError) -> io::Result<()> {
    let (status, msg) = match err {
        HeadError::TooLarge => (431, "request head too large".to_string()),
        HeadError::BodyTooLarge => (413, "request body not accepted".to_string()),
        HeadError::Malformed(why) => (400, format!("malformed request: {why}")),
        HeadError::Io => return Ok(()),
    };
    let head = http::response_head(status, &text_headers(), msg.len() as u64, true);
    stream.write_all(&head).await?;
    stream.write_all(msg.as_bytes()).await
}

async fn discard_body(conn: &mut BufReader<TcpStream>, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let copied = tokio::io::copy(&mut (&mut *conn).take(len), &mut tokio::io::sink()).await?;
    if copied == len {
        Ok(())
    } else {
        Err(io::ErrorKind::UnexpectedEof.into())
    }
}

/// Answers one request. `Ok(true)` if the connection may carry another request.
async fn handle(
    conn: &mut BufReader<TcpStream>,
    req: &Request,
    origin: Origin,
    state: &State,
) -> io::Result<bool> {
    record_request(state, req, origin);
    let mut plan = match origin {
        Origin::Hub => routes::hub_plan(req, state),
        Origin::Cdn => routes::cdn_plan(req, state),
    };
    let head_only = req.method == "HEAD";
    let selection = lock(&state.faults).select(&plan.view(origin.fault_host(), req, head_only));
    if selection.fired > 0 {
        state.bump(|s| s.faults_fired += selection.fired);
    }
    if selection.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(selection.latency_ms)).await;
    }
    let effects = match selection.kind {
        Some(kind) => match apply_fault(kind, &mut plan, &req.target) {
            Some(effects) => effects,
            None => return Ok(false),
        },
        None => SendEffects::default(),
    };
    send(
        conn.get_mut(),
        plan,
        head_only,
        effects,
        !req.keep_alive,
        state,
    )
    .await
}

fn record_request(state: &State, req: &Request, origin: Origin) {
    let auth = req.header("authorization").is_some();
    let kind = routes::classify_hub_path(&req.path);
    state.bump(|s| {
        s.requests += 1;
        match origin {
            Origin::Cdn => {
                s.cdn_requests += 1;
                s.cdn_saw_authorization |= auth;
            }
            Origin::Hub => {
                s.auth_headers_seen_at_hub += u64::from(auth);
                match kind {
                    HubPathKind::Api => s.api_requests += 1,
                    HubPathKind::Resolve => s.resolve_requests += 1,
                    HubPathKind::Other => {}
                }
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Writes the answer; `Ok(true)` if the connection is still usable.
async fn send(
    stream: &mut TcpStream,
    plan: Plan,
    head_only: bool,
    effects: SendEffects,
    close: bool,
    state: &State,
) -> io::Result<bool> {
    let head = http::response_head(plan.status, &plan.headers, plan.body.len(), close);
    stream.write_all(&head).await?;
    if head_only {
        return Ok(true);
    }
    if effects.stall_ms > 0 {
        stream.flush().await?;
        tokio::time::sleep(Duration::from_millis(effects.stall_ms)).await;
    }
    let mut budget = effects.truncate_after.unwrap_or(u64::MAX);
    match plan.body {
        Body::Bytes(bytes) => write_counted(stream, &bytes, &mut budget, state).await?,
        Body::File(file) => {
            if plan.status == 206 {
                let last = file.start + file.len - 1;
                state.bump(|s| s.ranges.push((file.label.clone(), file.start, last)));
            }
            stream_file(stream, &file, &mut budget, state).await?;
            let extra = vec![EXTRA_FILL; file.extra as usize];
            write_counted(stream, &extra, &mut budget, state).await?;
        }
    }
    Ok(effects.truncate_after.is_none())
}

/// Writes at most `budget` bytes of `bytes`, counting them in the stats.
async fn write_counted(
    stream: &mut TcpStream,
    bytes: &[u8],
    budget: &mut u64,
    state: &State,
) -> io::Result<()> {
    let n = (bytes.len() as u64).min(*budget) as usize;
    if n == 0 {
        return Ok(());
    }
    stream.write_all(&bytes[..n]).await?;
    *budget -= n as u64;
    state.bump(|s| s.body_bytes_sent += n as u64);
    Ok(())
}

/// Streams the file region chunk by chunk so memory stays bounded for any file size, and a
/// client hanging up ends the transfer at the next write.
async fn stream_file(
    stream: &mut TcpStream,
    body: &FileBody,
    budget: &mut u64,
    state: &State,
) -> io::Result<()> {
    let mut remaining = body.len.min(*budget);
    if remaining == 0 {
        return Ok(());
    }
    let path = body.path.clone();
    let mut file = blocking(move || File::open(path)).await?;
    let mut buf = Vec::new();
    let mut offset = body.start;
    while remaining > 0 {
        let n = remaining.min(CHUNK_BYTES) as usize;
        (file, buf) = blocking(move || read_at(file, offset, buf, n)).await?;
        write_counted(stream, &buf, budget, state).await?;
        remaining -= n as u64;
        offset += n as u64;
    }
    Ok(())
}

fn read_at(mut file: File, offset: u64, mut buf: Vec<u8>, n: usize) -> io::Result<(File, Vec<u8>)> {
    file.seek(SeekFrom::Start(offset))?;
    buf.resize(n, 0);
    file.read_exact(&mut buf)?;
    Ok((file, buf))
}

/// Runs blocking file I/O off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}
