//! Connection reuse: a worker makes hundreds of calls at once to one vendor host, and the
//! next round of calls must find those connections idle in the pool, not open new ones
//! (with a cap of 64 idle connections, every connection beyond it was closed after its call).

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use vendor_http::{HttpSettings, Method, VendorClient};

/// A keep-alive HTTP/1.1 server that answers every request `200 ok` after `delay` (so the
/// calls of a round overlap) and counts the TCP connections it accepted.
async fn counting_server(delay: Duration) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        tokio::time::sleep(delay).await;
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if sock.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (url, accepted)
}

#[tokio::test]
async fn a_second_round_of_concurrent_calls_reuses_every_connection() {
    const CALLS: usize = 150; // more than the old idle cap of 64
    let (url, accepted) = counting_server(Duration::from_millis(50)).await;
    let client = VendorClient::new("test", HttpSettings::default()).unwrap();
    let round = || {
        let calls = (0..CALLS).map(|_| {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let resp = client
                    .send("get", client.request(Method::GET, &url))
                    .await
                    .unwrap();
                // Read to the end: only then does the connection go back to the pool.
                resp.text().await.unwrap()
            })
        });
        futures::future::join_all(calls)
    };
    for r in round().await {
        assert_eq!(r.unwrap(), "ok");
    }
    let first = accepted.load(Ordering::SeqCst);
    assert!(first > 64, "the first round overlapped only {first} calls");
    for r in round().await {
        assert_eq!(r.unwrap(), "ok");
    }
    // Every connection of the first round is idle again: the second round opens new ones
    // only for calls beyond that count (with the old cap: ~86 new ones, over 200 in all).
    let total = accepted.load(Ordering::SeqCst);
    assert!(
        total <= CALLS,
        "the second round opened {} new connections after a first round of {first}",
        total - first
    );
}
