//! A one-request-per-connection HTTP/1.1 server for vendor-client tests that must see what
//! the client sent on the wire (headers such as `traceparent`, the raw body), which the
//! vendor simulators do not expose.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
    sync::mpsc,
};

/// Answers its n-th request with `answers[n]` (a whole HTTP response, see [`xml_answer`]) and
/// sends each request's head (lower-cased) and body to the test.
pub async fn recording_server(
    answers: Vec<String>,
) -> (SocketAddr, mpsc::UnboundedReceiver<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for answer in answers {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head, body_start) = loop {
                let n = sock.read(&mut chunk).await.unwrap();
                assert!(n > 0, "client closed before the request ended");
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break (String::from_utf8_lossy(&buf[..end]).to_lowercase(), end + 4);
                }
            };
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            while buf.len() < body_start + len {
                let n = sock.read(&mut chunk).await.unwrap();
                assert!(n > 0, "client closed before the body ended");
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = String::from_utf8_lossy(&buf[body_start..body_start + len]).into_owned();
            tx.send((head, body)).unwrap();
            sock.write_all(answer.as_bytes()).await.unwrap();
            sock.shutdown().await.unwrap();
        }
    });
    (addr, rx)
}

/// A whole `text/xml` HTTP/1.1 response; `extra` holds further header lines, each ending in
/// `\r\n`.
pub fn xml_answer(status: &str, extra: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/xml; charset=utf-8\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}
