use serde_json::{Value, json};
use vendor_sim::Vendor;
use vendor_sim::cloudpass::{
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_NOPERM_CLIENT_ID, DEMO_NOPERM_CLIENT_SECRET,
    DEMO_SITE_AMSTERDAM, DEMO_TR_AMSTERDAM_24_7, normalize_plate,
};

use crate::{http, sim, token};

pub(crate) async fn cp_token(c: &reqwest::Client, base: &str, id: &str, secret: &str) -> String {
    token(
        c,
        &format!("{base}/oauth/token"),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ],
    )
    .await
}

pub(crate) fn booking(reference: &str, plate: &str) -> Value {
    json!({
        "reference": reference, "license_plate": plate,
        "valid_from": "2030-05-01T14:00:00Z", "valid_until": "2030-05-03T11:00:00+02:00",
        "time_restriction_id": DEMO_TR_AMSTERDAM_24_7, "name": "Jansen",
    })
}

#[test]
fn plate_rule() {
    assert_eq!(normalize_plate("ab-12 cd").as_deref(), Some("AB12CD"));
    assert_eq!(normalize_plate("A"), None);
    assert_eq!(normalize_plate("AB12CD34EF5"), None);
    assert_eq!(normalize_plate("AB_12"), None);
    assert_eq!(normalize_plate("ÄB12"), None);
}

#[tokio::test]
async fn token_sites_and_time_restrictions() {
    let sim = sim().await;
    let c = http();
    let base = sim.cloudpass_url();
    let bad = c
        .post(format!("{base}/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", DEMO_CLIENT_ID),
            ("client_secret", "nope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let unauth = c.get(format!("{base}/api/v1/sites")).send().await.unwrap();
    assert_eq!(unauth.status(), 401);
    let body: Value = unauth.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");

    let tok = cp_token(&c, &base, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).await;
    let sites: Value = c
        .get(format!("{base}/api/v1/sites"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        sites["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == DEMO_SITE_AMSTERDAM)
    );
    let trs: Value = c
        .get(format!(
            "{base}/api/v1/sites/{DEMO_SITE_AMSTERDAM}/time-restrictions"
        ))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        trs["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == DEMO_TR_AMSTERDAM_24_7)
    );
    let missing = c
        .get(format!("{base}/api/v1/sites/nope/time-restrictions"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // Token expiry on the simulated clock.
    sim.state()
        .advance_clock(std::time::Duration::from_secs(7200));
    let expired = c
        .get(format!("{base}/api/v1/sites"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), 401);
}

#[tokio::test]
async fn api_user_without_permission_gets_403() {
    let sim = sim().await;
    let c = http();
    let base = sim.cloudpass_url();
    let tok = cp_token(&c, &base, DEMO_NOPERM_CLIENT_ID, DEMO_NOPERM_CLIENT_SECRET).await;
    let r = c
        .get(format!("{base}/api/v1/sites"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("permission")
    );
}

#[tokio::test]
async fn vehicle_booking_lifecycle_and_rules() {
    let sim = sim().await;
    let c = http();
    let base = sim.cloudpass_url();
    let tok = cp_token(&c, &base, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).await;
    let url = format!("{base}/api/v1/sites/{DEMO_SITE_AMSTERDAM}/vehicle-bookings");

    let r = c
        .post(&url)
        .bearer_auth(&tok)
        .json(&booking("res-1", "ab-12 cd"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["license_plate"], "AB12CD");
    assert_eq!(created["valid_until"], "2030-05-03T09:00:00Z");
    let id = created["id"].as_str().unwrap().to_owned();

    // Same reference → 409 with the existing id.
    let r = c
        .post(&url)
        .bearer_auth(&tok)
        .json(&booking("res-1", "XY99ZZ"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "conflict");
    assert_eq!(body["error"]["existing_id"], id.as_str());

    // Plate, dates and time restriction validation → 422.
    for bad in [
        booking("res-2", "A"),
        booking("res-2", "TOO-LONG-PLATE-1"),
        {
            let mut b = booking("res-2", "AB12CD");
            b["time_restriction_id"] = json!("cp-tr-utr-247"); // exists, but at another site
            b
        },
        {
            let mut b = booking("res-2", "AB12CD");
            b["valid_until"] = json!("2030-05-01T13:00:00Z");
            b
        },
        json!({"reference": "res-2"}),
    ] {
        let r = c
            .post(&url)
            .bearer_auth(&tok)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "validation_failed");
    }

    // PATCH validates too, and updates.
    let one = format!("{url}/{id}");
    let r = c
        .patch(&one)
        .bearer_auth(&tok)
        .json(&json!({"license_plate": "!!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = c
        .patch(&one)
        .bearer_auth(&tok)
        .json(&json!({"license_plate": "zz-99-zz"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["license_plate"], "ZZ99ZZ");

    // Filter by reference.
    let list: Value = c
        .get(&url)
        .query(&[("reference", "res-1")])
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["meta"]["total"], 1);
    assert_eq!(list["data"][0]["id"], id.as_str());

    // DELETE 204, then 404.
    assert_eq!(
        c.delete(&one)
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        c.delete(&one)
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert!(sim.state().cloudpass_bookings().is_empty());

    // Exactly one successful create per reference, proven by the call log.
    let creates = sim
        .state()
        .calls_for(Vendor::CloudPass)
        .into_iter()
        .filter(|c| c.method == "POST" && c.path.ends_with("/vehicle-bookings") && c.status == 201)
        .count();
    assert_eq!(creates, 1);
}

#[tokio::test]
async fn pagination() {
    let sim = sim().await;
    let c = http();
    let base = sim.cloudpass_url();
    let tok = cp_token(&c, &base, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).await;
    let url = format!("{base}/api/v1/sites/{DEMO_SITE_AMSTERDAM}/vehicle-bookings");
    for i in 0..7 {
        let r = c
            .post(&url)
            .bearer_auth(&tok)
            .json(&booking(&format!("r{i}"), "AB12CD"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let mut seen = Vec::new();
    for page in 1..=3 {
        let v: Value = c
            .get(&url)
            .query(&[("page", page.to_string()), ("per_page", "3".to_owned())])
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["meta"]["total"], 7);
        assert_eq!(v["meta"]["page"], page);
        assert_eq!(v["meta"]["per_page"], 3);
        for b in v["data"].as_array().unwrap() {
            seen.push(b["reference"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(seen, (0..7).map(|i| format!("r{i}")).collect::<Vec<_>>());
    let r = c
        .get(&url)
        .query(&[("per_page", "500")])
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
}
