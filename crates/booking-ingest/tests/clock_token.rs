//! Clock PMS+ with an operator-chosen authentication (issue 21): Clock's notification signing
//! is not public, so a tenant's `clock` source may accept the secret itself, in
//! `X-Accesshub-Token` or `?token=`, once the operator chose `token`; elsewhere (and before
//! that choice) a token is no signature at all.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;

async fn post_token(
    env: &Env,
    source: &str,
    query: &str,
    header: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut headers = vec![("content-type", "application/json".to_owned())];
    if let Some(t) = header {
        headers.push(("x-accesshub-token", t.to_owned()));
    }
    let body = if source == "clock" {
        clock(4711, "2030-06-20T09:15:00Z")
    } else {
        bex("R-T", "2030-06-20T09:15:00Z", "reservation:created")
    };
    env.post_raw(
        &format!("/webhooks/{source}/{TENANT}{query}"),
        serde_json::to_vec(&body).unwrap(),
        &headers,
    )
    .await
}

#[tokio::test]
async fn clock_accepts_the_secret_as_a_token_once_the_operator_chose_it() {
    let env = Env::new().await;
    // Before the choice: a token is not a signature.
    let (st, a) = post_token(&env, "clock", "", Some(SECRET)).await;
    assert_eq!(
        (st, a["reason"].as_str()),
        (401, Some("missing_signature")),
        "{a}"
    );

    sqlx::query(
        "UPDATE tenant_sources SET auth = 'token' WHERE tenant_id = $1 AND source = 'clock'",
    )
    .bind(TENANT)
    .execute(&env.db.pool)
    .await
    .unwrap();
    env.handle.as_ref().unwrap().sources().invalidate();

    let (st, a) = post_token(&env, "clock", "", Some(SECRET)).await;
    assert_eq!((st, a["status"].as_str()), (202, Some("accepted")), "{a}");
    let (st, a) = post_token(&env, "clock", &format!("?token={SECRET}"), None).await;
    assert_eq!(st, 202, "{a}");
    let (st, a) = post_token(&env, "clock", "?token=wrong", None).await;
    assert_eq!(
        (st, a["reason"].as_str()),
        (401, Some("signature_mismatch")),
        "{a}"
    );
    // Only where chosen: BEX still needs a signature.
    let (st, a) = post_token(&env, "bex", "", Some(SECRET)).await;
    assert_eq!(
        (st, a["reason"].as_str()),
        (401, Some("missing_signature")),
        "{a}"
    );
    // A signed Clock delivery still works.
    let (st, a) = env
        .post("clock", &clock(4712, "2030-06-20T09:15:00Z"))
        .await;
    assert_eq!(st, 202, "{a}");
    env.finish().await;
}
