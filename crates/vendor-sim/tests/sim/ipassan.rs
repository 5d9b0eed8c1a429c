use serde_json::{Value, json};
use vendor_sim::ipassan::{
    DEMO_ASSET_BBQ, DEMO_BASE, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_PERSON_EVA,
    DEMO_PERSON_JAN, DEMO_PROFILE_DOOR, DEMO_PROFILE_FLOOR, DEMO_SITE,
};

use crate::{http, sim, token};

pub(crate) async fn ip_token(c: &reqwest::Client, base: &str) -> String {
    token(
        c,
        &format!("{base}/api/v1/token"),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "all"),
            ("client_id", DEMO_CLIENT_ID),
            ("client_secret", DEMO_CLIENT_SECRET),
        ],
    )
    .await
}

#[tokio::test]
async fn token_bases_sites_and_access_denied() {
    let sim = sim().await;
    let c = http();
    let base = sim.ipassan_url();
    let r = c
        .post(format!("{base}/api/v1/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "read"),
            ("client_id", DEMO_CLIENT_ID),
            ("client_secret", DEMO_CLIENT_SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "scope must be all");
    let tok = ip_token(&c, &base).await;
    let bases: Value = c
        .get(format!("{base}/api/v1/admin/base"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bases["data"][0]["uuid"], DEMO_BASE);
    assert!(bases["next_cursor"].is_null());
    let sites: Value = c
        .get(format!("{base}/api/v1/admin/base/{DEMO_BASE}/site"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sites["data"][0]["uuid"], DEMO_SITE);
    let r = c
        .get(format!(
            "{base}/api/v1/access/site/00000000-0000-0000-0000-000000000000/person"
        ))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error_description"], "Access Denied");
    assert_eq!(
        c.get(format!("{base}/api/v1/admin/base"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn persons_form_create_filter_and_cursor_pages() {
    let sim = sim().await;
    let c = http();
    let base = sim.ipassan_url();
    let tok = ip_token(&c, &base).await;
    let url = format!("{base}/api/v1/access/site/{DEMO_SITE}/person");
    for i in 0..5 {
        let r = c
            .post(&url)
            .bearer_auth(&tok)
            .form(&[
                ("lastname", format!("Person {i}")),
                ("firstname", "Test".to_owned()),
                ("mail", format!("p{i}@example.com")),
                ("type", "3".to_owned()),
                ("accessType[doorTemporary]", DEMO_PROFILE_DOOR.to_owned()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = c
        .post(&url)
        .bearer_auth(&tok)
        .form(&[("firstname", "NoLast")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.json::<Value>().await.unwrap()["Error"]["message"]
            .as_str()
            .unwrap()
            .contains("lastname")
    );
    let r = c
        .post(&url)
        .bearer_auth(&tok)
        .form(&[
            ("lastname", "X"),
            ("accessType[floorPermanent]", DEMO_PROFILE_DOOR),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a door profile is not a floor profile");

    let found: Value = c
        .get(&url)
        .query(&[("mail", "p3@example.com")])
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        found["data"][0]["accessType"]["doorTemporary"][0],
        DEMO_PROFILE_DOOR
    );

    // 2 demo persons + 5 = 7, pages of 3.
    let mut all = Vec::new();
    let mut offset = Some(0u64);
    while let Some(o) = offset {
        let v: Value = c
            .get(&url)
            .query(&[("limit", "3".to_owned()), ("offset", o.to_string())])
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        all.extend(
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["uuid"].as_str().unwrap().to_owned()),
        );
        offset = v["next_cursor"].as_u64();
    }
    assert_eq!(all.len(), 7);
    let one = format!("{url}/{DEMO_PERSON_EVA}");
    let r = c
        .put(&one)
        .bearer_auth(&tok)
        .form(&[("phone", "+31699999999")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
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
        c.get(&one).bearer_auth(&tok).send().await.unwrap().status(),
        404
    );
}

#[tokio::test]
async fn asset_booking_rules() {
    let sim = sim().await;
    let c = http();
    let base = sim.ipassan_url();
    let tok = ip_token(&c, &base).await;
    let assets: Value = c
        .get(format!("{base}/api/v1/access/site/{DEMO_SITE}/asset"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(assets["data"][0]["time_slot_minutes"], 30);
    assert_eq!(assets["data"][0]["max_booking_minutes"], 120);
    assert_eq!(assets["data"][0]["one_booking_per_slot"], true);
    let url = format!("{base}/api/v1/access/site/{DEMO_SITE}/asset/{DEMO_ASSET_BBQ}/booking");
    let post = |person: &str, start: &str, end: &str, reference: &str| {
        let (c, url, tok) = (c.clone(), url.clone(), tok.clone());
        let body = json!({"person_uuid": person, "start": start, "end": end, "reference": reference, "title": "BBQ"});
        async move {
            let r = c
                .post(&url)
                .bearer_auth(&tok)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let (s, b) = post(
        DEMO_PERSON_JAN,
        "2030-06-01T18:00:00Z",
        "2030-06-01T19:30:00Z",
        "fb-1",
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let id = b["uuid"].as_str().unwrap().to_owned();
    // Off-slot, too long, overlapping, missing floor profile.
    let (s, b) = post(
        DEMO_PERSON_JAN,
        "2030-06-02T18:10:00Z",
        "2030-06-02T19:00:00Z",
        "fb-2",
    )
    .await;
    assert_eq!(s, 422);
    assert!(b["Error"]["message"].as_str().unwrap().contains("slot"));
    let (s, b) = post(
        DEMO_PERSON_JAN,
        "2030-06-02T10:00:00Z",
        "2030-06-02T12:30:00Z",
        "fb-2",
    )
    .await;
    assert_eq!(s, 422);
    assert!(b["Error"]["message"].as_str().unwrap().contains("maximum"));
    let (s, b) = post(
        DEMO_PERSON_JAN,
        "2030-06-01T19:00:00Z",
        "2030-06-01T20:00:00Z",
        "fb-2",
    )
    .await;
    assert_eq!(s, 422);
    assert!(
        b["Error"]["message"]
            .as_str()
            .unwrap()
            .contains("one booking per time slot")
    );
    let (s, b) = post(
        DEMO_PERSON_EVA,
        "2030-06-03T10:00:00Z",
        "2030-06-03T11:00:00Z",
        "fb-3",
    )
    .await;
    assert_eq!(s, 422);
    let msg = b["Error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("Floor 7") && msg.contains(DEMO_PROFILE_FLOOR),
        "{msg}"
    );
    // Adjacent slot is fine.
    let (s, _) = post(
        DEMO_PERSON_JAN,
        "2030-06-01T19:30:00Z",
        "2030-06-01T20:00:00Z",
        "fb-4",
    )
    .await;
    assert_eq!(s, 201);

    let list: Value = c
        .get(&url)
        .query(&[("reference", "fb-1")])
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        c.delete(format!("{url}/{id}"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        c.delete(format!("{url}/{id}"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(sim.state().ipassan_bookings().len(), 1);
}
