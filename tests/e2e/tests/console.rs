//! The operator console in a real headless Chromium (Debian's `chromium` + `chromedriver`,
//! driven over WebDriver with fantoccini) against the real binaries: accesshub-admin (which
//! serves the console), booking-ingest, the CloudPass, iPassan, dormakaba and Tapkey workers
//! (connections from Postgres, live), the reconciler and vendor-sim.
//!
//! The scenario: log in, connect a CloudPass account, map a BEX administration to a
//! site from the live dropdown, Test connection, add an iPassan connection and map a connecX
//! facility to an asset from the live dropdown (the booking before is ignored and listed on
//! Sync → Ignored events, the one after is applied), add a dormakaba Saflok connection with
//! its encoders and common areas and test it (HelloWorldTest), a BEX reservation arrives, its vehicle
//! bookings show on Bookings, Sync and its counts, a bad plate and an unmapped administration
//! land in Dead letters, the mapping is fixed and the entry replayed (dry run first), the bad
//! one purged with confirmation, a webhook secret rotated (the old one still valid), a
//! read-only session sees masked personal data and no controls, and every screen fits 1280×800
//! and a 390×844 phone without horizontal scrolling. A screenshot per screen goes to
//! `<target>/console-screens/`.
//!
//! Without chromium/chromedriver (deploy/dev-services.sh installs them) the test is skipped
//! with a loud message.

#![allow(clippy::unwrap_used)]

mod common;

use std::{path::PathBuf, time::Duration};

use accesshub_e2e::{Proc, bin_dir, free_port, wait_port};
use common::{
    IPASSAN_BBQ, IPASSAN_SITE, Options, Sim, Stack, TENANT, bex, bex_for, cloudpass_bookings,
    connecx, tapkey_conn,
};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "e2e-admin-token";

fn screens_dir() -> PathBuf {
    // bin_dir() is <target>/debug.
    let d = bin_dir()
        .parent()
        .map(|p| p.join("console-screens"))
        .unwrap_or_else(|| PathBuf::from("target/console-screens"));
    std::fs::create_dir_all(&d).unwrap();
    let _ = std::fs::remove_file(d.join("failed.png"));
    d
}

fn find_exe(names: &[&str]) -> Option<PathBuf> {
    names.iter().map(PathBuf::from).find(|p| p.exists())
}

/// chromedriver and a WebDriver session on headless Chromium.
struct Browser {
    c: Client,
    _driver: Proc,
    base: String,
    dir: PathBuf,
}

impl Browser {
    async fn start(base: &str) -> Option<Browser> {
        let driver = find_exe(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]);
        let chromium = find_exe(&["/usr/bin/chromium", "/usr/lib/chromium/chromium"]);
        let (Some(driver), Some(chromium)) = (driver, chromium) else {
            eprintln!(
                "\n{bar}\n!!! SKIPPED: the console browser tests need Debian's chromium and \
                 chromium-driver.\n!!! Run deploy/dev-services.sh (make test does) or \
                 `apt-get install -y chromium chromium-driver`.\n{bar}\n",
                bar = "!".repeat(78)
            );
            return None;
        };
        let port = free_port();
        let driver =
            Proc::spawn("chromedriver", &driver, &[&format!("--port={port}")], &[]).unwrap();
        wait_port("chromedriver", port, Duration::from_secs(20)).unwrap();
        let caps: serde_json::Map<String, Value> = serde_json::from_value(json!({
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1280,800", "--lang=en-US"]
            }
        }))
        .unwrap();
        let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap();
        Some(Browser {
            c,
            _driver: driver,
            base: base.to_owned(),
            dir: screens_dir(),
        })
    }

    async fn goto(&self, path: &str) {
        self.c
            .goto(&format!("{}/console{path}", self.base))
            .await
            .unwrap();
    }

    async fn shot(&self, name: &str) {
        let png = self.c.screenshot().await.unwrap();
        std::fs::write(self.dir.join(format!("{name}.png")), png).unwrap();
    }

    async fn el(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .c
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => {
                self.shot("failed").await;
                let url = self.c.current_url().await.map(|u| u.to_string());
                panic!(
                    "no {css} on {url:?}: {e}\n{}",
                    self.c.source().await.unwrap_or_default()
                )
            }
        }
    }

    async fn fill(&self, css: &str, value: &str) {
        let e = self.el(css).await;
        e.clear().await.unwrap();
        e.send_keys(value).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.el(css).await.click().await.unwrap();
    }

    /// Clicks the submit button `css` and waits until the browser left the page: the page it
    /// lands on may show the same verdict as the one it left ("Saved"), and an element read
    /// from the old page goes stale under the test.
    async fn submit(&self, css: &str) {
        let old = self.el("html").await;
        self.click(css).await;
        let start = std::time::Instant::now();
        while old.tag_name().await.is_ok() {
            if start.elapsed() > Duration::from_secs(20) {
                self.shot("failed").await;
                panic!("still on the same page 20 s after clicking {css}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn text(&self, css: &str) -> String {
        self.el(css).await.text().await.unwrap()
    }

    /// Waits until the element `css` exists and its text contains `want` (reloading the
    /// page between tries when `reload`).
    async fn wait_text(&self, css: &str, want: &str, secs: u64, reload: bool) -> String {
        let start = std::time::Instant::now();
        let mut last = String::new();
        while start.elapsed() < Duration::from_secs(secs) {
            if let Ok(e) = self.c.find(Locator::Css(css)).await
                && let Ok(t) = e.text().await
            {
                if t.contains(want) {
                    return t;
                }
                last = t;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            if reload {
                self.c.refresh().await.unwrap();
            }
        }
        self.shot("failed").await;
        panic!(
            "{css} never contained {want:?} (last: {last:?})\n{}",
            self.c.source().await.unwrap_or_default()
        );
    }

    /// Types an administration id into mapping row `row` and picks its site from the live
    /// dropdown.
    async fn map_administration(&self, row: usize, administration: &str, site: &str) {
        self.fill(&format!("input[name='admin.{row}.id']"), administration)
            .await;
        self.el(&format!("select[name='admin.{row}.site']"))
            .await
            .select_by_value(site)
            .await
            .unwrap();
    }

    /// Presses Test connection of connection `id` on the Connections screen until the vendor
    /// says `Connected` (a worker learns a new connection over NATS a moment after it is
    /// saved) or 30 s passed; the last verdict.
    async fn test_connection(&self, id: &str) -> String {
        let start = std::time::Instant::now();
        loop {
            self.goto("/connections").await;
            self.click(&format!("button[data-test='{id}']")).await;
            let verdict = self
                .wait_text(&format!("#verdict-{id} .verdict"), "", 20, false)
                .await;
            if verdict.contains("Connected") || start.elapsed() > Duration::from_secs(30) {
                return verdict;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn source(&self) -> String {
        self.c.source().await.unwrap()
    }

    /// The page fits the window's width (no horizontal scrolling).
    async fn assert_fits(&self, what: &str) {
        let v = self
            .c
            .execute(
                "return [document.documentElement.scrollWidth, window.innerWidth];",
                vec![],
            )
            .await
            .unwrap();
        let (sw, iw) = (v[0].as_i64().unwrap(), v[1].as_i64().unwrap());
        if sw > iw + 1 {
            self.shot("failed").await;
            let culprits = self
                .c
                .execute(
                    "return [...document.querySelectorAll('body *')]
                       .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1
                                    || e.scrollWidth > e.clientWidth + 1)
                       .slice(0, 8).map(e => e.tagName + '.' + e.className + ' ' +
                         Math.round(e.getBoundingClientRect().right) + ' ' + e.scrollWidth);",
                    vec![],
                )
                .await
                .unwrap();
            panic!("{what}: page is {sw}px wide in a {iw}px window; too wide: {culprits}");
        }
    }
}

/// A reservation arriving tomorrow (so "Sync (next 5 days)" compares it).
fn soon(body: Value) -> Value {
    let mut b = body;
    let day = |d: u64| {
        (chrono::Utc::now().date_naive() + chrono::Days::new(d))
            .format("%Y-%m-%d")
            .to_string()
    };
    b["record"]["attributes"]["arrival_date"] = json!(day(1));
    b["record"]["attributes"]["departure_date"] = json!(day(3));
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_console_in_headless_chromium() {
    let mut s = Stack::new(Options::default()).await;
    // Connections come from Postgres (what the console writes), not the static file.
    let from_db = ("ACCESSHUB_CONNECTIONS_FILE".to_owned(), String::new());
    // A Tapkey connection exists already (its pass type → locks mapping is shown below).
    s.add_connection(tapkey_conn(&s.sim)).await;
    s.start_ingest(&[]).await;
    s.start_worker("tapkey-worker", std::slice::from_ref(&from_db))
        .await;
    for w in ["cloudpass-worker", "ipassan-worker", "dormakaba-worker"] {
        s.start_worker(w, std::slice::from_ref(&from_db)).await;
    }
    s.start_worker(
        "reconciler",
        &[
            ("RECONCILER_POLL_INTERVAL".into(), "1s".into()),
            from_db.clone(),
        ],
    )
    .await;
    let ingest_url = format!("http://127.0.0.1:{}", s.ingest.as_ref().unwrap().port);
    s.start_worker(
        "accesshub-admin",
        &[("ACCESSHUB_PUBLIC_WEBHOOK_URL".into(), ingest_url.clone())],
    )
    .await;
    let admin = format!("http://127.0.0.1:{}", s.worker("accesshub-admin").port);
    let Some(b) = Browser::start(&admin).await else {
        s.finish().await;
        return;
    };
    let cp = Sim::url(s.sim.cloudpass);
    let cp_id = format!("{TENANT}-cloudpass-default");

    // 1. Login.
    b.goto("/").await;
    b.el("#login").await;
    b.shot("01-login").await;
    b.fill("input[name=token]", "wrong-token").await;
    b.click("#login button").await;
    b.wait_text("small.error[data-field=token]", "unknown", 10, false)
        .await;
    b.fill("input[name=token]", ADMIN_TOKEN).await;
    b.click("#login button").await;
    b.wait_text("h1", "Connections", 10, false).await;
    b.assert_fits("connections at 1280").await;
    b.shot("02-connections-empty").await;

    // 2. Connect CloudPass (account first; then the sites appear in dropdowns).
    b.click("#add-cloudpass").await;
    b.fill("input[name=base_url]", &cp).await;
    b.fill("input[name=client_id]", "demo-cloudpass-client")
        .await;
    b.fill("input[name=client_secret]", "demo-cloudpass-secret")
        .await;
    b.fill("[name=default_time_restriction_id]", "cp-tr-ams-247")
        .await;
    b.shot("03-cloudpass-new").await;
    b.click("#save").await;
    b.wait_text(".verdict.ok", "Saved", 10, false).await;
    // The worker learns about the new connection over NATS; until then the look-up fails
    // and the form offers text inputs: reload until the live dropdown is there.
    b.wait_text("#cloudpass-form", "Amsterdam", 30, true).await;
    assert_eq!(
        b.text("[data-secret=client_secret]").await,
        "set",
        "secrets: set / not set"
    );
    assert!(!b.source().await.contains("demo-cloudpass-secret"));

    // 3. Map BEX administration 12 → the Amsterdam site, from the dropdown.
    b.map_administration(0, "12", "cp-site-amsterdam").await;
    b.shot("04-mapping").await;
    b.submit("#save").await;
    b.wait_text(".verdict.ok", "Saved", 10, false).await;
    b.assert_fits("mappings at 1280").await;

    // 4. Test connection (htmx: the verdict appears in place).
    b.goto("/connections").await;
    b.click(&format!("button[data-test='{cp_id}']")).await;
    b.wait_text(&format!("#verdict-{cp_id}"), "Connected", 20, false)
        .await;
    b.shot("05-test-connection").await;

    // 4b. Tapkey's pass type → locks mapping, the locks listed live by Tapkey.
    b.goto(&format!("/connections/{TENANT}/tapkey/default"))
        .await;
    b.wait_text("#mappings-form", "Front door", 30, true).await;
    b.assert_fits("tapkey mappings at 1280").await;
    b.shot("05b-tapkey-mappings").await;

    // 4c. iPassan, added in the console: the account form, then connecX facility → iPassan
    // asset from the live dropdown. A booking of the facility before it is mapped is ignored
    // (Sync → Ignored events); once mapped the next one is applied and shows on Bookings.
    b.goto("/connections").await;
    b.click("#add-ipassan").await;
    b.fill("input[name=base_url]", &Sim::url(s.sim.ipassan))
        .await;
    b.fill("input[name=client_id]", "demo-ipassan-client").await;
    b.fill("input[name=client_secret]", "demo-ipassan-secret")
        .await;
    b.fill("input[name=site_guid]", IPASSAN_SITE).await;
    b.shot("05c-ipassan-new").await;
    b.click("#save").await;
    b.wait_text(".verdict.ok", "Saved", 10, false).await;
    let day = (chrono::Utc::now() + chrono::Duration::days(3)).date_naive();
    let bbq = |updated: &str| {
        connecx(
            "CX-UI-1",
            &format!("{day}T17:00:00Z"),
            &format!("{day}T18:00:00Z"),
            "booked",
            updated,
        )
    };
    let (status, answer) = s.webhook("connecx", &bbq(&common::at(0))).await;
    assert!(
        (200..300).contains(&status) && answer["status"] == "ignored",
        "an unmapped facility is ignored: {status} {answer}"
    );
    b.goto("/sync/ignored").await;
    b.wait_text("tr[data-ignored=CX-UI-1]", "not mapped", 10, true)
        .await;
    b.assert_fits("ignored events at 1280").await;
    b.shot("05d-sync-ignored").await;
    b.goto(&format!("/connections/{TENANT}/ipassan/default"))
        .await;
    b.wait_text("#mappings-form", "Rooftop BBQ", 30, true).await;
    b.fill("input[name='map.0.key']", "rooftop-bbq").await;
    b.el("select[name='map.0.value']")
        .await
        .select_by_value(IPASSAN_BBQ)
        .await
        .unwrap();
    b.shot("05e-ipassan-mapping").await;
    b.submit("#save-mappings").await;
    b.wait_text(".verdict.ok", "Saved", 10, false).await;
    b.assert_fits("ipassan mappings at 1280").await;
    s.wait_until(
        "the facility booking accepted once mapped",
        Duration::from_secs(30),
        || async {
            let (status, answer) = s.webhook("connecx", &bbq(&common::at(0))).await;
            status == 202 && answer["status"] == "accepted"
        },
    )
    .await;
    b.goto("/bookings?q=CX-UI-1").await;
    b.wait_text(".applied[data-vendor=ipassan]", "revision", 30, true)
        .await;
    b.shot("05f-ipassan-booking").await;

    // 4d. dormakaba Saflok, added in the console: server host/port, user, password; Test
    // connection runs HelloWorldTest; encoders by name and ID and common areas → pass levels
    // on the mappings form. Another server without the password again is refused at the
    // password field. Then it is disabled.
    b.goto("/connections").await;
    b.click("#add-dormakaba").await;
    b.el("select[name=scheme]")
        .await
        .select_by_value("http")
        .await
        .unwrap();
    b.fill("input[name=host]", "127.0.0.1").await;
    b.fill("input[name=port]", &s.sim.dormakaba.to_string())
        .await;
    b.fill("input[name=username]", "pms-demo").await;
    b.fill("input[name=password]", "pms-demo-secret").await;
    b.fill("input[name=site_name]", "DEMO-HOTEL").await;
    b.shot("05g-dormakaba-new").await;
    b.click("#save").await;
    b.wait_text(".verdict.ok", "Saved", 10, false).await;
    b.fill("input[name='map.0.key']", "Front desk 1").await;
    b.fill("input[name='map.0.value']", "1").await;
    b.fill("input[name='area.0.key']", "fitness").await;
    b.fill("input[name='area.0.value']", "2").await;
    b.submit("#save-mappings").await;
    b.wait_text(".verdict.ok", "Saved", 10, false).await;
    assert_eq!(
        b.el("input[name='map.0.value']")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("1"),
        "the encoder is stored"
    );
    assert!(!b.source().await.contains("pms-demo-secret"));
    b.assert_fits("dormakaba at 1280").await;
    b.shot("05h-dormakaba-mappings").await;
    let dk = format!("{TENANT}-dormakaba-default");
    let verdict = b.test_connection(&dk).await;
    assert!(
        verdict.contains("Connected")
            && verdict.contains("HelloWorldTest")
            && verdict.contains("Front desk 1"),
        "{verdict}"
    );
    b.shot("05i-dormakaba-test").await;
    b.goto(&format!("/connections/{TENANT}/dormakaba/default"))
        .await;
    b.fill("input[name=host]", "localhost").await;
    b.click("#save").await;
    let refused = b
        .wait_text("small.error[data-field=password]", "Re-supply", 10, false)
        .await;
    assert!(refused.contains("settings.host"), "{refused}");
    b.shot("05j-dormakaba-password-again").await;
    // Disabled (no booking holds access through it, so nothing to ask): the hotel's BEX
    // reservations below are CloudPass' alone.
    b.goto("/connections").await;
    b.click(&format!("#conn-{dk} form[action$='/enabled'] button"))
        .await;
    b.wait_text(&format!("#conn-{dk}"), "disabled", 10, false)
        .await;

    // 5. A BEX reservation: its vehicle bookings on the Bookings screen.
    s.accepted(
        "bex",
        &soon(bex(
            "BEX-UI-1",
            "reservation:created",
            &common::at(0),
            &["UI-01-AB", "UI-02-AB"],
        )),
    )
    .await;
    let prefix = format!("ah:{TENANT}:reservation:BEX-UI-1:");
    s.wait_until("two vehicle bookings", Duration::from_secs(30), || async {
        cloudpass_bookings(&s.sim, &prefix).await.len() == 2
    })
    .await;
    b.goto("/bookings?q=UI-01-AB").await;
    let applied = b
        .wait_text(".applied[data-vendor=cloudpass]", "revision", 20, true)
        .await;
    assert!(!applied.contains("behind"), "{applied}");
    b.c.execute("document.querySelector('details').open = true", vec![])
        .await
        .unwrap();
    b.assert_fits("bookings at 1280").await;
    b.shot("06-bookings").await;

    // 6. Sync (next 5 days): the run's counts update live.
    b.goto("/sync").await;
    b.click("button[data-scope=upcoming]").await;
    b.wait_text(".verdict.ok", "queued", 10, false).await;
    b.wait_text("#runs tr[data-run]", "succeeded", 40, false)
        .await;
    let checked = b.text("#runs tr[data-run] td[data-count=checked]").await;
    assert_eq!(checked.trim(), "1", "the one upcoming booking was compared");
    assert_eq!(
        b.text("#runs tr[data-run] td[data-count=in_sync]")
            .await
            .trim(),
        "1"
    );
    b.assert_fits("sync at 1280").await;
    b.shot("07-sync").await;

    // 7. A bad plate lands in Dead letters. A reservation of administration 13, which no
    // connection maps yet, is answered 2xx "ignored" (access control is off there: issue 21),
    // never dead-lettered.
    s.accepted(
        "bex",
        &bex("BEX-UI-BAD", "reservation:created", &common::at(0), &["X"]),
    )
    .await;
    let (status, answer) = s
        .webhook(
            "bex",
            &bex_for(
                "13",
                "BEX-UI-13",
                "reservation:created",
                &common::at(0),
                &["UI-13-AB"],
            ),
        )
        .await;
    assert!(
        (200..300).contains(&status)
            && answer["status"] == "ignored"
            && answer["reason"] == "unmapped_administration",
        "{status} {answer}"
    );
    s.wait_until("the dead letter", Duration::from_secs(40), || async {
        !s.dead_letters().await.is_empty()
    })
    .await;
    b.goto("/dlq").await;
    b.wait_text("#dlq-count", "1 dead letter", 10, true).await;
    b.assert_fits("dlq at 1280").await;
    b.shot("08-dead-letters").await;
    b.goto("/dlq?reason=invalid").await;
    b.click("table.dlq tr[data-seq] a").await;
    let reason = b.text("#dlq-reason").await;
    assert!(reason.contains("license_plate"), "{reason}");
    b.shot("09-dead-letter-detail").await;

    // 8. Map administration 13 (the empty row); the PMS's next change of that reservation
    // then applies.
    b.goto(&format!("/connections/{TENANT}/cloudpass/default"))
        .await;
    b.map_administration(1, "13", "cp-site-amsterdam").await;
    b.click("#save").await;
    b.wait_text(".verdict.ok", "Saved", 10, false).await;
    s.wait_until(
        "the reservation of administration 13 accepted once mapped",
        Duration::from_secs(30),
        || async {
            let (status, answer) = s
                .webhook(
                    "bex",
                    &bex_for(
                        "13",
                        "BEX-UI-13",
                        "reservation:updated",
                        &common::at(0),
                        &["UI-13-AB"],
                    ),
                )
                .await;
            status == 202 && answer["status"] == "accepted"
        },
    )
    .await;
    s.wait_until(
        "the booking of administration 13 at CloudPass",
        Duration::from_secs(30),
        || async {
            cloudpass_bookings(&s.sim, &format!("ah:{TENANT}:reservation:BEX-UI-13:"))
                .await
                .len()
                == 1
        },
    )
    .await;

    // 9. Replay the bad plate, dry run first: the dry run publishes nothing; the real replay
    // fails again (the plate is still bad) and lands a second dead letter.
    b.goto("/dlq?reason=invalid").await;
    b.wait_text("#dlq-count", "1 dead letter", 10, false).await;
    b.click("#replay-filtered").await;
    b.wait_text("#dry-run", "nothing was published", 10, false)
        .await;
    b.shot("10-replay-dry-run").await;
    assert_eq!(
        s.dead_letters().await.len(),
        1,
        "a dry run publishes nothing"
    );
    b.click("#replay-confirm").await;
    b.wait_text(".verdict.ok", "Replayed 1", 20, false).await;
    b.shot("11-replayed").await;
    s.wait_until(
        "the replay dead-lettered again",
        Duration::from_secs(30),
        || async { s.dead_letters().await.len() >= 2 },
    )
    .await;

    // The guest's plate gets corrected upstream; purge the dead letters.
    b.goto("/dlq?reason=invalid").await;
    b.click("#purge-filtered").await;
    b.wait_text("#purge-preview", "2", 10, false).await;
    b.shot("12-purge-confirm").await;
    b.click("#purge-confirm").await;
    b.wait_text(".verdict.ok", "Purged 2", 20, false).await;

    // 10. Webhooks: rotate BEX's secret; the previous one stays valid for the grace period.
    b.goto("/webhooks").await;
    assert!(
        b.source()
            .await
            .contains(&format!("{ingest_url}/webhooks/bex/{TENANT}"))
    );
    b.click("button[data-rotate=bex]").await;
    b.wait_text("#new-secret", "not shown again", 10, false)
        .await;
    b.assert_fits("webhooks at 1280").await;
    b.shot("13-webhooks-rotated").await;
    s.wait_until(
        "old secret still accepted",
        Duration::from_secs(20),
        || async {
            s.webhook(
                "bex",
                &bex(
                    "BEX-UI-2",
                    "reservation:created",
                    &common::at(0),
                    &["UI-22-AB"],
                ),
            )
            .await
            .0 == 202
        },
    )
    .await;

    // 10b. A refused secret: Test connection says where to fix it.
    b.goto(&format!("/connections/{TENANT}/cloudpass/default"))
        .await;
    b.fill("input[name=client_secret]", "not-the-secret").await;
    b.click("#save").await;
    b.wait_text(".verdict.ok", "Saved", 10, false).await;
    b.goto("/connections").await;
    b.click(&format!("button[data-test='{cp_id}']")).await;
    let refused = b
        .wait_text(&format!("#verdict-{cp_id}"), "Not working", 20, false)
        .await;
    assert!(refused.contains("Settings → Website Users"), "{refused}");
    b.shot("14-test-connection-refused").await;

    // 11. A read-only session: sees, masked, without controls (on a fresh dead letter).
    s.accepted(
        "bex",
        &bex("BEX-UI-BAD2", "reservation:created", &common::at(0), &["X"]),
    )
    .await;
    s.wait_until(
        "a dead letter to look at",
        Duration::from_secs(40),
        || async {
            s.dead_letters()
                .await
                .iter()
                .any(|d| d.original_subject.ends_with("BEX-UI-BAD2"))
        },
    )
    .await;
    let http = reqwest::Client::new();
    let minted: Value = http
        .post(format!("{admin}/admin/v1/tokens"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "front-office", "role": "viewer", "tenants": [TENANT]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let viewer = minted["token"].as_str().unwrap().to_owned();
    b.click(".who form button").await;
    b.el("#login").await;
    b.fill("input[name=token]", &viewer).await;
    b.click("#login button").await;
    b.wait_text("#read-only", "Read-only", 10, false).await;
    b.goto("/dlq").await;
    b.click("table.dlq tr[data-seq] a").await;
    let payload = b.text("#dlq-payload").await;
    assert!(
        !payload.contains("john.doe@example.com"),
        "personal data is masked for the viewer: {payload}"
    );
    let page = b.source().await;
    assert!(!page.contains("replay-one") && !page.contains("purge-one"));
    b.shot("15-viewer-dead-letter").await;
    b.goto("/connections").await;
    let page = b.source().await;
    assert!(!page.contains("add-cloudpass") && !page.contains(">Disable<"));

    // 12. Phone width: every screen fits 390 px.
    b.c.set_window_size(390, 844).await.unwrap();
    for (path, name) in [
        ("/connections", "16-phone-connections"),
        ("/bookings?q=UI", "17-phone-bookings"),
        ("/sync", "18-phone-sync"),
        ("/dlq", "19-phone-dead-letters"),
        ("/webhooks", "20-phone-webhooks"),
        (
            &format!("/connections/{TENANT}/cloudpass/default") as &str,
            "21-phone-mappings",
        ),
        (
            &format!("/connections/{TENANT}/dormakaba/default"),
            "22-phone-dormakaba",
        ),
        (
            &format!("/connections/{TENANT}/ipassan/default"),
            "23-phone-ipassan",
        ),
        ("/sync/ignored", "24-phone-ignored"),
    ] {
        b.goto(path).await;
        b.el("h1").await;
        b.assert_fits(name).await;
        b.shot(name).await;
    }
    eprintln!("screenshots in {}", b.dir.display());
    let _ = b.c.close().await;
    s.finish().await;
}
