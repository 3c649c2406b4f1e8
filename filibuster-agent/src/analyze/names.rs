//! Statuses by the names frameworks give them: `NOT_FOUND`, `NotFound`,
//! `StatusNotFound`'s `NotFound`, `not_found`, all one key.

use std::{collections::BTreeMap, sync::LazyLock};

use hyper::StatusCode;

use crate::explore::GRPC_CODES;

/// What a service can answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Status {
    Http(u16),
    /// A gRPC code by its canonical name ("UNAVAILABLE").
    Grpc(&'static str),
}

impl Status {
    /// Whether the status is a failure a caller must handle: HTTP 4xx and
    /// 5xx, every gRPC code but OK.
    pub(super) fn is_error(self) -> bool {
        match self {
            Self::Http(code) => (400..600).contains(&code),
            Self::Grpc(name) => name != "OK",
        }
    }
}

/// NOT_FOUND, NotFound, not_found → NOTFOUND: one key for every spelling.
fn squash(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Names frameworks use that are not today's reason phrase: older RFCs'
/// (Spring's `REQUEST_ENTITY_TOO_LARGE`, Servlet's `SC_REQUEST_URI_TOO_LONG`,
/// werkzeug's `RequestURITooLarge`), newer ones' (Python 3.13's
/// `UNPROCESSABLE_CONTENT`), and short forms (Go's `StatusTeapot`,
/// Django's `HttpResponseNotAllowed` and `HttpResponseServerError`, JAX-RS's
/// `NotAuthorizedException`).
const OTHER_NAMES: &[(&str, u16)] = &[
    ("NOTAUTHORIZED", 401),
    ("NOTALLOWED", 405),
    ("REQUESTENTITYTOOLARGE", 413),
    ("CONTENTTOOLARGE", 413),
    ("REQUESTURITOOLONG", 414),
    ("REQUESTURITOOLARGE", 414),
    ("NOTSUPPORTED", 415),
    ("REQUESTEDRANGENOTSATISFIABLE", 416),
    ("TEAPOT", 418),
    ("IAMATEAPOT", 418),
    ("UNPROCESSABLECONTENT", 422),
    ("SERVERERROR", 500),
];

/// Error statuses by squashed name ("SERVICEUNAVAILABLE" → 503).
static HTTP_NAMES: LazyLock<BTreeMap<String, u16>> = LazyLock::new(|| {
    (400..600)
        .filter_map(|code| {
            let reason = StatusCode::from_u16(code).ok()?.canonical_reason()?;
            Some((squash(reason), code))
        })
        .chain(
            OTHER_NAMES
                .iter()
                .map(|&(name, code)| (name.to_string(), code)),
        )
        .collect()
});

/// The error status a name stands for: `NOT_FOUND`, `NotFound` → 404.
pub(super) fn http_status(name: &str) -> Option<u16> {
    HTTP_NAMES.get(&squash(name)).copied()
}

/// The gRPC code a name stands for, by its canonical name:
/// `Unavailable`, `unavailable` → "UNAVAILABLE" (and Go's `Canceled`).
pub(super) fn grpc_code(name: &str) -> Option<&'static str> {
    let squashed = squash(name).replace("CANCELED", "CANCELLED");
    GRPC_CODES
        .iter()
        .copied()
        .find(|code| squash(code) == squashed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_names_one_status() {
        for name in ["NOT_FOUND", "NotFound", "not_found", "Not Found"] {
            assert_eq!(http_status(name), Some(404), "{name}");
        }
        assert_eq!(http_status("RequestEntityTooLarge"), Some(413));
        assert_eq!(http_status("ImATeapot"), Some(418));
        assert_eq!(http_status("OK"), None, "not an error");
        assert_eq!(grpc_code("DeadlineExceeded"), Some("DEADLINE_EXCEEDED"));
        assert_eq!(grpc_code("Canceled"), Some("CANCELLED"));
        assert_eq!(grpc_code("NOT_A_CODE"), None);
    }
}
