//! Helpers shared by the integration tests.

#![allow(dead_code, clippy::unwrap_used)]

use accesshub_connections::{DormakabaProduct, DormakabaSettings, Secret};
use vendor_sim::SimHandle;

/// Port of a simulator URL (`http://127.0.0.1:PORT/...`).
pub fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|s| s.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap()
}

/// A connection to the simulator's demo lock system of `product` (no encoders listed).
pub fn sim_settings(sim: &SimHandle, product: DormakabaProduct) -> DormakabaSettings {
    DormakabaSettings {
        product,
        host: "127.0.0.1".into(),
        port: port_of(&sim.dormakaba_url()),
        scheme: "http".into(),
        path: None,
        namespace: None,
        username: "pms-demo".into(),
        password: Secret::new("pms-demo-secret"),
        site_name: match product {
            DormakabaProduct::Saflok => "DEMO-HOTEL".into(),
            DormakabaProduct::Ambiance => "DEMO-AMBIANCE".into(),
        },
        pms_terminal_id: "accesshub".into(),
        encoders: vec![],
        rooms: Default::default(),
        common_areas: Default::default(),
        mobile_keys: true,
        key_size: 0,
    }
}
