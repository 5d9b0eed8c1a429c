//! A lean HTTP/1.1 keep-alive client for load generation. The load generator shares the
//! machine's cores with the service it measures; a general-purpose client (reqwest: pool,
//! header maps, body streams, per-request futures) spent about a third of the CPU the ingest
//! benchmark attributed to "the bench process". This one writes pre-built request bytes and
//! reads the status line, `content-length` and body: what `wrk`-style generators do.

use std::{
    io,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// One keep-alive connection.
#[derive(Debug)]
pub struct RawHttpConn {
    stream: TcpStream,
    buf: Vec<u8>,
    filled: usize,
}

/// A `POST` request as bytes, ready to write.
pub fn post_request(host: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut req = Vec::with_capacity(256 + body.len());
    req.extend_from_slice(format!("POST {path} HTTP/1.1\r\nhost: {host}\r\n").as_bytes());
    for (k, v) in headers {
        req.extend_from_slice(k.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(v.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    req.extend_from_slice(body);
    req
}

/// A webhook of `source` for `tenant` as request bytes, signed with `secret` now (within
/// booking-ingest's 5-minute tolerance): what an upstream posts.
pub fn signed_webhook(
    host: &str,
    source: &str,
    tenant: &str,
    secret: &str,
    body: &[u8],
) -> Vec<u8> {
    let ts = chrono::Utc::now().timestamp();
    let sig = booking_ingest::sign(secret, ts, body);
    post_request(
        host,
        &format!("/webhooks/{source}/{tenant}"),
        &[
            ("content-type", "application/json"),
            ("x-accesshub-timestamp", &ts.to_string()),
            ("x-accesshub-signature", &sig),
        ],
        body,
    )
}

/// Sends `req` on `conn`, connecting first when there is none; a failed connection is
/// dropped, so the next request connects again.
async fn send_on(conn: &mut Option<RawHttpConn>, addr: SocketAddr, req: &[u8]) -> io::Result<u16> {
    let status = match conn.as_mut() {
        Some(c) => c.send(req).await,
        None => match RawHttpConn::connect(addr).await {
            Ok(c) => conn.insert(c).send(req).await,
            Err(e) => Err(e),
        },
    };
    if status.is_err() {
        *conn = None;
    }
    status
}

/// One request of an [`open_loop`] run.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// Its index (0-based, in due order).
    pub index: u64,
    /// When it was due.
    pub due: Instant,
    /// Its answer's status; `None` when the connection failed.
    pub status: Option<u16>,
    /// From due to answered (a late send counts: no coordinated omission).
    pub latency: Duration,
}

/// An open-loop run at a fixed rate: request `i` is due at start + i/rate and goes on
/// connection `i % conns`, so a slow answer delays the requests behind it on its connection
/// and that wait is measured. `request(i)` builds request `i` when it is due (signatures
/// carry a timestamp). Returns every request's outcome and the start.
pub async fn open_loop<F>(
    addr: SocketAddr,
    rate: u64,
    total: u64,
    conns: u64,
    request: F,
) -> (Vec<Sent>, Instant)
where
    F: Fn(u64) -> Vec<u8> + Send + Sync + 'static,
{
    let request = Arc::new(request);
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let start = Instant::now() + Duration::from_millis(50);
    let mut lanes = Vec::new();
    for lane in 0..conns.max(1) {
        let request = request.clone();
        lanes.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut conn: Option<RawHttpConn> = None;
            let mut i = lane;
            while i < total {
                let due = start + interval.mul_f64(i as f64);
                tokio::time::sleep_until(due.into()).await;
                let status = send_on(&mut conn, addr, &request(i)).await;
                out.push(Sent {
                    index: i,
                    due,
                    status: status.ok(),
                    latency: due.elapsed(),
                });
                i += conns.max(1);
            }
            out
        }));
    }
    let mut sent = Vec::with_capacity(total as usize);
    for l in lanes {
        if let Ok(s) = l.await {
            sent.extend(s);
        }
    }
    sent.sort_by_key(|s| s.index);
    (sent, start)
}

/// Sends every one of `requests` over `conns` keep-alive connections, each connection taking
/// the next unsent request as soon as its previous answer arrived (closed loop: as fast as
/// the service answers). Returns each request's status (`None`: its connection failed).
pub async fn send_all(
    addr: SocketAddr,
    conns: usize,
    requests: Arc<Vec<Vec<u8>>>,
) -> Vec<Option<u16>> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conns.max(1) {
        let (next, requests) = (next.clone(), requests.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut conn: Option<RawHttpConn> = None;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(req) = requests.get(i) else { break };
                let status = send_on(&mut conn, addr, req).await;
                out.push((i, status.ok()));
            }
            out
        }));
    }
    let mut statuses = vec![None; requests.len()];
    for t in tasks {
        if let Ok(done) = t.await {
            for (i, s) in done {
                statuses[i] = s;
            }
        }
    }
    statuses
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

impl RawHttpConn {
    /// Opens a connection (TCP_NODELAY: requests are single writes).
    pub async fn connect(addr: SocketAddr) -> io::Result<RawHttpConn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RawHttpConn {
            stream,
            buf: vec![0; 16 * 1024],
            filled: 0,
        })
    }

    /// Sends one request and reads its response; returns the status code. The response must
    /// carry `content-length` (axum's JSON and error responses do); anything else is an error
    /// and the connection should be dropped.
    pub async fn send(&mut self, request: &[u8]) -> io::Result<u16> {
        self.stream.write_all(request).await?;
        loop {
            if let Some(head_end) = find(&self.buf[..self.filled], b"\r\n\r\n") {
                let head = &self.buf[..head_end];
                let status = head
                    .get(9..12)
                    .and_then(|s| std::str::from_utf8(s).ok())
                    .and_then(|s| s.parse::<u16>().ok())
                    .ok_or_else(|| bad("no status line"))?;
                let len = content_length(head).ok_or_else(|| bad("no content-length"))?;
                let total = head_end + 4 + len;
                if total > self.buf.len() {
                    self.buf.resize(total, 0);
                }
                while self.filled < total {
                    self.read_more().await?;
                }
                self.buf.copy_within(total..self.filled, 0);
                self.filled -= total;
                return Ok(status);
            }
            if self.filled == self.buf.len() {
                return Err(bad("response head too large"));
            }
            self.read_more().await?;
        }
    }

    async fn read_more(&mut self) -> io::Result<()> {
        let n = self.stream.read(&mut self.buf[self.filled..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.filled += n;
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(head).ok()?;
    text.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_content_length_case_insensitively() {
        let head = b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 57";
        assert_eq!(content_length(head), Some(57));
        assert_eq!(content_length(b"HTTP/1.1 204 No Content\r\nx: y"), None);
    }

    #[tokio::test]
    async fn round_trips_keep_alive_requests_against_a_real_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut r = tokio::io::BufReader::new(s);
            for status in [202, 400] {
                let body = read_request(&mut r).await.unwrap();
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n{}",
                    body.len(),
                    String::from_utf8(body).unwrap()
                );
                r.get_mut().write_all(reply.as_bytes()).await.unwrap();
            }
        });
        let mut c = RawHttpConn::connect(addr).await.unwrap();
        let req = post_request(
            "h",
            "/p",
            &[("content-type", "application/json")],
            b"{\"a\":1}",
        );
        assert_eq!(c.send(&req).await.unwrap(), 202);
        assert_eq!(c.send(&req).await.unwrap(), 400);
        server.await.unwrap();
    }

    /// Reads one request (head and `content-length` body); `None` at the end of the stream.
    async fn read_request(r: &mut tokio::io::BufReader<tokio::net::TcpStream>) -> Option<Vec<u8>> {
        use tokio::io::AsyncBufReadExt as _;
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await.ok()? == 0 {
                return None;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().ok()?;
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).await.ok()?;
        Some(body)
    }

    /// Answers every request on every connection with 202 and an empty JSON body.
    async fn accept_all(listener: tokio::net::TcpListener) {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut r = tokio::io::BufReader::new(s);
                while read_request(&mut r).await.is_some() {
                    let reply = b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}";
                    if r.get_mut().write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    }

    #[tokio::test]
    async fn send_all_sends_each_request_once_and_open_loop_keeps_the_rate() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(accept_all(listener));
        let reqs: Vec<Vec<u8>> = (0..50)
            .map(|i| post_request("h", &format!("/p/{i}"), &[], b"{}"))
            .collect();
        let statuses = send_all(addr, 4, Arc::new(reqs)).await;
        assert_eq!(statuses, vec![Some(202); 50]);

        let (sent, start) = open_loop(addr, 200, 40, 4, |i| {
            post_request("h", &format!("/q/{i}"), &[], b"")
        })
        .await;
        assert_eq!(sent.len(), 40);
        for (i, s) in sent.iter().enumerate() {
            assert_eq!(s.index, i as u64);
            assert_eq!(s.status, Some(202));
            // Request i is due i/200 s after the start (5 ms apart).
            let off = (s.due - start).as_secs_f64() * 1e3;
            assert!((off - 5.0 * i as f64).abs() < 0.001, "{i}: due at {off} ms");
        }
        assert!(
            start.elapsed() >= Duration::from_millis(195),
            "paced, not a burst"
        );
    }
}
