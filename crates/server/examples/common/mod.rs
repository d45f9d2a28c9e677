//! Shared by the benchmark examples (`fixed_response`, `handler_cost`): the fixed answer that
//! stands for the physical limit.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// What `vulngate serve` answers for the benchmark's review (`scripts/bench-webhook.sh`: an
/// allowed image, no warnings), byte for byte, so that both servers send the same response.
/// `handler_cost` fails when vulngate's answer differs.
pub const RESPONSE: &[u8] = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","allowed":true,"status":{}}}"#;

/// [`RESPONSE`] as the webhook sends it: 200, `Content-Type: application/json`.
pub fn fixed_answer() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        RESPONSE,
    )
        .into_response()
}
