use std::time::Duration;

use serde_json::{Value, json};
use vendor_sim::tapkey::{
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_LOCK_FRONT, DEMO_LOCK_MEETING, DEMO_OWNER_ID,
};
use vendor_sim::{SimConfig, SimHandle};

use crate::{http, token};

pub(crate) const SCOPES: &str =
    "read:owneraccounts read:core:entities write:core:entities read:grants write:grants";

async fn tk(ttl: Duration) -> SimHandle {
    let sim = vendor_sim::start(SimConfig {
        tapkey_token_ttl: ttl,
        ..SimConfig::ephemeral()
    })
    .await
    .unwrap();
    sim.state().seed_demo();
    sim
}

pub(crate) async fn tk_token(c: &reqwest::Client, sim: &SimHandle, scope: &str) -> String {
    token(
        c,
        &format!("{}/connect/token", sim.tapkey_url()),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DEMO_CLIENT_ID),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("scope", scope),
        ],
    )
    .await
}

pub(crate) fn grant(lock: &str, email: &str) -> Value {
    json!({
        "boundLockId": lock, "contact": {"identifier": email},
        "validFrom": "2030-02-01T10:00:00.000Z", "validBefore": "2030-02-02T10:00:00.000Z",
    })
}

#[tokio::test]
async fn tokens_expire_and_scopes_are_enforced() {
    let sim = tk(Duration::from_secs(60)).await;
    let c = http();
    let api = format!("{}/api/v1", sim.tapkey_url());
    let tok = tk_token(&c, &sim, SCOPES).await;
    let owners: Value = c
        .get(format!("{api}/Owners"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(owners[0]["id"], DEMO_OWNER_ID);

    sim.state().advance_clock(Duration::from_secs(61));
    let r = c
        .get(format!("{api}/Owners"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(format!("{api}/Owners"))
        .bearer_auth("unknown")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A token without write:grants cannot create grants.
    let ro = tk_token(&c, &sim, "read:grants").await;
    let r = c
        .put(format!("{api}/Owners/{DEMO_OWNER_ID}/Grants"))
        .bearer_auth(&ro)
        .json(&grant(DEMO_LOCK_FRONT, "a@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Unknown scope at the token endpoint.
    let r = c
        .post(format!("{}/connect/token", sim.tapkey_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", DEMO_CLIENT_ID),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("scope", "admin:everything"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn owners_locks_and_contacts() {
    let sim = tk(Duration::from_secs(3600)).await;
    let c = http();
    let api = format!("{}/api/v1", sim.tapkey_url());
    let tok = tk_token(&c, &sim, SCOPES).await;
    let locks: Value = c
        .get(format!("{api}/Owners/{DEMO_OWNER_ID}/BoundLocks"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(locks.as_array().unwrap().len(), 2);
    let r = c
        .get(format!(
            "{api}/Owners/{DEMO_OWNER_ID}/BoundLocks/{DEMO_LOCK_FRONT}"
        ))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["title"], "Front door");
    assert_eq!(
        c.get(format!("{api}/Owners/nope/BoundLocks"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    sim.state().tapkey_add_owner("other-owner", "Not yours");
    assert_eq!(
        c.get(format!("{api}/Owners/other-owner/BoundLocks"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );

    let body = json!({"ipId": "tapkey", "identifier": "guest@example.com", "title": "Guest"});
    let a: Value = c
        .put(format!("{api}/Owners/{DEMO_OWNER_ID}/Contacts"))
        .bearer_auth(&tok)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b: Value = c
        .put(format!("{api}/Owners/{DEMO_OWNER_ID}/Contacts"))
        .bearer_auth(&tok)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a["id"], b["id"], "PUT is create-or-return");
    assert_eq!(sim.state().tapkey_contacts().len(), 1);
    let found: Value = c
        .get(format!("{api}/Owners/{DEMO_OWNER_ID}/Contacts"))
        .query(&[("$filter", "identifier eq 'guest@example.com'")])
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1);
    let r = c
        .put(format!("{api}/Owners/{DEMO_OWNER_ID}/Contacts"))
        .bearer_auth(&tok)
        .json(&json!({"ipId": "tapkey", "identifier": "not-an-email"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn grants_rules_filters_and_revoke() {
    let sim = tk(Duration::from_secs(3600)).await;
    let c = http();
    let grants = format!("{}/api/v1/Owners/{DEMO_OWNER_ID}/Grants", sim.tapkey_url());
    let tok = tk_token(&c, &sim, SCOPES).await;

    let r = c
        .put(&grants)
        .bearer_auth(&tok)
        .json(&grant(DEMO_LOCK_FRONT, "a@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let g1: Value = r.json().await.unwrap();
    assert_eq!(g1["validFrom"], "2030-02-01T10:00:00.000Z");
    assert_eq!(g1["validBefore"], "2030-02-02T10:00:00.000Z");
    assert_eq!(g1["state"], "Ok");
    assert_eq!(g1["active"], true);
    assert_eq!(g1["contact"]["identifier"], "a@example.com");

    // Identical active grant → 409.
    let r = c
        .put(&grants)
        .bearer_auth(&tok)
        .json(&grant(DEMO_LOCK_FRONT, "a@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    // validBefore <= validFrom → 400; unknown lock → 400.
    let mut bad = grant(DEMO_LOCK_FRONT, "a@example.com");
    bad["validBefore"] = json!("2030-02-01T10:00:00.000Z");
    assert_eq!(
        c.put(&grants)
            .bearer_auth(&tok)
            .json(&bad)
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        c.put(&grants)
            .bearer_auth(&tok)
            .json(&grant("no-such-lock", "a@example.com"))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );

    // Second grant by contactId on another lock.
    let contact_id = g1["contactId"].as_str().unwrap().to_owned();
    let mut by_id = grant(DEMO_LOCK_MEETING, "ignored@example.com");
    by_id.as_object_mut().unwrap().remove("contact");
    by_id["contactId"] = json!(contact_id);
    let r = c
        .put(&grants)
        .bearer_auth(&tok)
        .json(&by_id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .put(&grants)
        .bearer_auth(&tok)
        .json(&grant(DEMO_LOCK_FRONT, "b@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let get = |filter: String| {
        let c = c.clone();
        let grants = grants.clone();
        let tok = tok.clone();
        async move {
            let r = c
                .get(&grants)
                .query(&[("$filter", filter)])
                .bearer_auth(&tok)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap().as_array().unwrap().len()
        }
    };
    assert_eq!(get("active eq true".into()).await, 3);
    assert_eq!(get(format!("contactId eq '{contact_id}'")).await, 2);
    assert_eq!(get(format!("boundLockId eq '{DEMO_LOCK_FRONT}'")).await, 2);
    assert_eq!(get(format!("active eq true and contactId eq '{contact_id}' and boundLockId eq '{DEMO_LOCK_MEETING}'")).await, 1);
    let r = c
        .get(&grants)
        .query(&[("$filter", "validFrom gt 2020")])
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Revoke → Revoked / inactive; again → 409.
    let id = g1["id"].as_str().unwrap();
    let r = c
        .post(format!("{grants}/{id}/Revoke"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let g: Value = r.json().await.unwrap();
    assert_eq!(g["state"], "Revoked");
    assert_eq!(g["active"], false);
    assert_eq!(
        c.post(format!("{grants}/{id}/Revoke"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap()
            .status(),
        409
    );
    assert_eq!(get("active eq true".into()).await, 2);

    // Revoke all grants of the contact.
    let r = c
        .post(format!(
            "{}/api/v1/Owners/{DEMO_OWNER_ID}/Contacts/{contact_id}/RevokeGrants",
            sim.tapkey_url()
        ))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(get("active eq true".into()).await, 1);
    assert!(
        sim.state()
            .tapkey_grants()
            .iter()
            .filter(|g| g.contact_id == contact_id)
            .all(|g| g.state == "Revoked")
    );
}

/// VENDORS.md: times are ISO-8601 UTC with milliseconds; contacts can be patched in their
/// title and comment only.
#[tokio::test]
async fn grant_times_are_utc_with_milliseconds_and_contacts_patch_title_and_comment() {
    let sim = tk(Duration::from_secs(600)).await;
    let c = http();
    let tok = tk_token(&c, &sim, SCOPES).await;
    let api = format!("{}/api/v1/Owners/{DEMO_OWNER_ID}", sim.tapkey_url());
    for (from, before) in [
        ("2030-02-01T10:00:00Z", "2030-02-02T10:00:00.000Z"),
        ("2030-02-01T10:00:00.000Z", "2030-02-02T11:00:00.000+01:00"),
        ("2030-02-01T10:00:00.0Z", "2030-02-02T10:00:00.000Z"),
        ("2030-02-01 10:00:00.000Z", "2030-02-02T10:00:00.000Z"),
    ] {
        let mut g = grant(DEMO_LOCK_FRONT, "t@example.com");
        g["validFrom"] = json!(from);
        g["validBefore"] = json!(before);
        let r = c
            .put(format!("{api}/Grants"))
            .bearer_auth(&tok)
            .json(&g)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{from} / {before}");
    }
    assert!(sim.state().tapkey_grants().is_empty());

    let contact: Value = c
        .put(format!("{api}/Contacts"))
        .bearer_auth(&tok)
        .json(&json!({"ipId": "tapkey", "identifier": "p@example.com", "title": "P"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = format!("{api}/Contacts/{}", contact["id"].as_str().unwrap());
    let r = c
        .patch(&url)
        .bearer_auth(&tok)
        .json(&json!({"comment": "accesshub:acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let patched: Value = r.json().await.unwrap();
    assert_eq!(patched["comment"], "accesshub:acme");
    assert_eq!(patched["title"], "P", "unchanged");
    let r = c
        .patch(&url)
        .bearer_auth(&tok)
        .json(&json!({"identifier": "other@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "only title and comment can change");
    let r = c
        .patch(format!("{api}/Contacts/nope"))
        .bearer_auth(&tok)
        .json(&json!({"comment": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(sim.state().tapkey_contacts()[0].identifier, "p@example.com");
}

/// VENDORS.md: contact PUT is create-or-return. A repeated PUT must not rewrite the comment
/// (the place accesshub marks contacts as its own), or a client that never PATCHes would look
/// right here and leave unmarked contacts at the real vendor.
#[tokio::test]
async fn contact_put_returns_an_existing_contact_unchanged() {
    let sim = tk(Duration::from_secs(600)).await;
    let c = http();
    let tok = tk_token(&c, &sim, SCOPES).await;
    let url = format!(
        "{}/api/v1/Owners/{DEMO_OWNER_ID}/Contacts",
        sim.tapkey_url()
    );
    let put = |body: Value| c.put(&url).bearer_auth(&tok).json(&body).send();
    let first: Value =
        put(json!({"ipId": "tapkey", "identifier": "m@example.com", "title": "Member"}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let again: Value = put(json!({"ipId": "tapkey", "identifier": "M@example.com",
                                  "title": "Other", "comment": "accesshub:acme"}))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["title"], "Member");
    assert_eq!(again["comment"], Value::Null);
    assert_eq!(sim.state().tapkey_contacts()[0].comment, None);
}

/// VENDORS.md: `$filter` is documented for BoundLocks, not Grants. With the filter switched
/// off the grant list answers every grant of the owner, as a server that ignores it would.
#[tokio::test]
async fn grant_filter_can_be_ignored_like_an_undocumented_feature() {
    let sim = tk(Duration::from_secs(600)).await;
    let c = http();
    let tok = tk_token(&c, &sim, SCOPES).await;
    let url = format!("{}/api/v1/Owners/{DEMO_OWNER_ID}/Grants", sim.tapkey_url());
    for email in ["a@example.com", "b@example.com"] {
        let r = c
            .put(&url)
            .bearer_auth(&tok)
            .json(&grant(DEMO_LOCK_FRONT, email))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let contact = sim.state().tapkey_contacts()[0].id.clone();
    let list = |filter: String| {
        c.get(&url)
            .bearer_auth(&tok)
            .query(&[("$filter", filter)])
            .send()
    };
    let filter = format!("contactId eq '{contact}' and active eq true");
    let honoured: Value = list(filter.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(honoured.as_array().unwrap().len(), 1);
    let r = c
        .put(format!("{}/tapkey/grant-filter", sim.control_url()))
        .json(&json!({"honoured": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ignored: Value = list(filter).await.unwrap().json().await.unwrap();
    assert_eq!(
        ignored.as_array().unwrap().len(),
        2,
        "every grant of the owner"
    );
    sim.state().reset();
    assert!(sim.state().tapkey_grant_filter_honoured());
}
