//! Lookups answered for the admin API / `accessctl` on `lookup.dormakaba`: `encoder-test`
//! runs `HelloWorldTest` with the connection's credentials (reachability, AuthHeader) and
//! lists the connection's encoders, flagging USB ones the web service cannot drive.

use accesshub_connections::lookup::{LookupFailure, LookupItem, LookupRequest};
use accesshub_connections::{Connection, DormakabaSettings, EncoderKind, Vendor, VendorSettings};
use accesshub_domain::Classify;

use crate::client::{SoapClient, SoapConfig};

/// `what` values this worker answers.
pub const ENCODER_TEST: &str = "encoder-test";

/// Runs the encoder test against one connection's lock system.
pub async fn encoder_test(s: &DormakabaSettings) -> Result<Vec<LookupItem>, LookupFailure> {
    let client = SoapClient::new(SoapConfig::from_settings(s))
        .map_err(|e| LookupFailure::vendor(e.to_string(), e.class()))?;
    let hello = client.hello_world_test().await.map_err(|e| match e.fault_code() {
        Some("AuthHeaderNotRecognized" | "UserCredentialsNotProvided") => LookupFailure::vendor(
            format!(
                "{e}: check the PMS user name and password configured in the lock system's PMS interface settings"
            ),
            e.class(),
        ),
        _ => LookupFailure::vendor(e.to_string(), e.class()),
    })?;
    let mut items = vec![LookupItem {
        id: "HelloWorldTest".into(),
        name: format!("{} web service", s.site_name),
        detail: Some(format!(
            "reachable, credentials accepted: {}",
            hello.message
        )),
    }];
    items.extend(s.encoders.iter().map(|e| LookupItem {
        id: e.id.clone(),
        name: e.name.clone(),
        detail: Some(match e.kind {
            EncoderKind::Network => "network encoder".into(),
            EncoderKind::Usb => "USB encoder: not supported by the web service".into(),
        }),
    }));
    Ok(items)
}

/// Answers one lookup with `conn` (found by the runtime from the request's tenant and
/// connection name).
pub async fn answer(
    conn: Connection,
    req: LookupRequest,
) -> Result<Vec<LookupItem>, LookupFailure> {
    if req.what != ENCODER_TEST {
        return Err(LookupFailure::bad_request(format!(
            "dormakaba answers {ENCODER_TEST:?}, not {:?}",
            req.what
        )));
    }
    match conn.settings {
        VendorSettings::Dormakaba(s) => encoder_test(&s).await,
        _ => Err(LookupFailure::no_connection(
            &req.tenant,
            Vendor::Dormakaba,
            &req.connection,
        )),
    }
}
