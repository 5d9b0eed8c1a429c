//! The BEX client's look-ups against the BEX simulator: an administration's rentables (the
//! accommodation objects reservations reference: what a lock system's room map is keyed by)
//! and the organization each administration belongs to.

#![allow(clippy::unwrap_used)]

use accesshub_upstreams::bex::BexClient;
use vendor_sim::bex;

#[tokio::test]
async fn rentables_and_organizations_are_listed() {
    let sim = bex::start_ephemeral().await.unwrap();
    sim.add_administration("1001", "Hotel Amsterdam");
    sim.set_organization("1001", "org-1");
    for (id, name) in [("5501", "Kamer 12"), ("5502", "Kamer 14")] {
        sim.put_rentable("1001", id, name);
    }
    let c = BexClient::with_rate(&sim.url(), bex::DEMO_API_KEY, 100.0, 10).unwrap();
    let got: Vec<(String, Option<String>)> = c
        .rentables("1001")
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.id.to_string(), r.attributes.name))
        .collect();
    assert_eq!(
        got,
        vec![
            ("5501".to_owned(), Some("Kamer 12".to_owned())),
            ("5502".to_owned(), Some("Kamer 14".to_owned()))
        ]
    );
    let admins = c.administrations().await.unwrap();
    assert_eq!(admins[0].organization().as_deref(), Some("org-1"));
    assert!(c.rentables("9999").await.is_err(), "unknown administration");
    sim.shutdown().await;
}
