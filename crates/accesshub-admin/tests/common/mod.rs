//! Helpers shared by the admin API tests.
#![allow(dead_code, clippy::unwrap_used)]

use serde_json::Value;

/// The admin API of `state` served on a free port, called with `token`.
pub struct Served {
    /// `http://<addr>/admin/v1`.
    pub base: String,
    http: reqwest::Client,
    token: String,
}

/// Serves `state`'s mounted router on 127.0.0.1.
pub async fn serve(state: accesshub_admin::AdminState, token: &str) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/admin/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, accesshub_admin::mounted(state))
            .await
            .unwrap()
    });
    Served {
        base,
        http: reqwest::Client::new(),
        token: token.to_owned(),
    }
}

impl Served {
    /// `method path` with an optional JSON body: status and JSON answer (`Null` if none).
    pub async fn call(&self, m: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self
            .http
            .request(m, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let st = resp.status().as_u16();
        (st, resp.json::<Value>().await.unwrap_or(Value::Null))
    }

    /// `GET path`: status and JSON answer.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
}
