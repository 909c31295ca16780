//! From an unverified request to a verified event: headers are checked for shape (400),
//! the timestamp for its window and the signature against every secret (401), and only
//! then is the body trusted.

use axum::{body::Bytes, http::HeaderMap};
use clerk_sync_core::webhook::Secrets;

use crate::error::IngestError;

/// Svix allows ±5 minutes between its clock and ours.
const TOLERANCE_SECS: i64 = 5 * 60;

/// The three Svix headers, well-formed but not yet trusted.
#[derive(Debug, Clone)]
pub struct SvixHeaders {
    pub id: String,
    pub timestamp: i64,
    pub signature: String,
}

impl SvixHeaders {
    pub fn parse(headers: &HeaderMap) -> Result<Self, IngestError> {
        let id = header(headers, "svix-id")?;
        if id.len() > 255 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(IngestError::MalformedHeader {
                header: "svix-id",
                reason: "expected 1 to 255 visible ASCII characters",
            });
        }
        let timestamp = header(headers, "svix-timestamp")?;
        let timestamp = timestamp
            .parse::<i64>()
            .ok()
            .filter(|_| timestamp.bytes().all(|b| b.is_ascii_digit()))
            .ok_or(IngestError::MalformedHeader {
                header: "svix-timestamp",
                reason: "expected seconds since the epoch",
            })?;
        let signature = header(headers, "svix-signature")?;
        let well_formed = signature.split(' ').filter(|s| !s.is_empty()).all(|entry| {
            entry
                .split_once(',')
                .is_some_and(|(v, sig)| v.starts_with('v') && !sig.is_empty())
        });
        if !well_formed || !signature.split(' ').any(|e| e.starts_with("v1,")) {
            return Err(IngestError::MalformedHeader {
                header: "svix-signature",
                reason: "expected space-separated `v1,<base64>` entries",
            });
        }
        Ok(Self {
            id: id.to_owned(),
            timestamp,
            signature: signature.to_owned(),
        })
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, IngestError> {
    let value = headers.get(name).ok_or(IngestError::MissingHeader(name))?;
    let value = value.to_str().map_err(|_| IngestError::MalformedHeader {
        header: name,
        reason: "not visible ASCII",
    })?;
    if value.is_empty() {
        return Err(IngestError::MissingHeader(name));
    }
    Ok(value)
}

/// A delivery whose body was signed by one of our secrets.
#[derive(Debug)]
pub struct Verified {
    pub headers: SvixHeaders,
    pub body: Bytes,
}

/// Checks the timestamp window, then the signature (constant-time, inside svix) against
/// every configured secret.
pub fn verify(
    secrets: &Secrets,
    svix: SvixHeaders,
    raw_headers: &HeaderMap,
    body: Bytes,
    now_secs: i64,
) -> Result<Verified, IngestError> {
    if svix.timestamp < now_secs - TOLERANCE_SECS {
        return Err(IngestError::TimestampTooOld);
    }
    if svix.timestamp > now_secs + TOLERANCE_SECS {
        return Err(IngestError::TimestampInFuture);
    }
    if std::str::from_utf8(&body).is_err() {
        return Err(IngestError::BodyNotUtf8);
    }
    match secrets.verify(&body, raw_headers) {
        Ok(()) => Ok(Verified {
            headers: svix,
            body,
        }),
        Err(svix::webhooks::WebhookError::TimestampTooOldError) => {
            Err(IngestError::TimestampTooOld)
        }
        Err(svix::webhooks::WebhookError::FutureTimestampError) => {
            Err(IngestError::TimestampInFuture)
        }
        Err(_) => Err(IngestError::BadSignature),
    }
}

/// Fuzzing the header/verify path: arbitrary headers and bodies never panic, and only a
/// genuine signature over the exact bytes verifies.
/// `PROPTEST_CASES=1000000 cargo test -p clerk-sync-ingest fuzz` for a long run.
#[cfg(test)]
mod fuzz {
    use axum::http::{HeaderMap, HeaderValue};
    use proptest::prelude::*;

    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn headers(id: &str, ts: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("svix-id", id),
            ("svix-timestamp", ts),
            ("svix-signature", sig),
        ] {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.insert(k, v);
            }
        }
        h
    }

    proptest! {
        #[test]
        fn fuzz_arbitrary_headers_and_bodies_never_panic_nor_verify(
            id in "[ -~]{0,300}",
            ts in prop_oneof!["[0-9]{0,20}", "[ -~]{0,30}"],
            sig in "[ -~]{0,400}",
            body in proptest::collection::vec(any::<u8>(), 0..1024),
        ) {
            let secrets = Secrets::parse(SECRET).unwrap();
            let raw = headers(&id, &ts, &sig);
            if let Ok(svix) = SvixHeaders::parse(&raw) {
                let now = svix.timestamp;
                let result = verify(&secrets, svix, &raw, Bytes::from(body), now);
                prop_assert!(result.is_err(), "a random signature verified");
            }
        }

        #[test]
        fn fuzz_only_the_exact_signed_bytes_verify(
            id in "msg_[a-zA-Z0-9]{1,40}",
            body in "\\PC{0,512}",
            flip in any::<prop::sample::Index>(),
        ) {
            let secrets = Secrets::parse(SECRET).unwrap();
            // svix checks the window against the real clock too.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            let sig = secrets.sign(&id, now, body.as_bytes()).unwrap();
            let raw = headers(&id, &now.to_string(), &sig);
            let svix = SvixHeaders::parse(&raw).unwrap();
            prop_assert!(verify(&secrets, svix.clone(), &raw, Bytes::from(body.clone()), now).is_ok());
            let mut tampered = body.into_bytes();
            if !tampered.is_empty() {
                let i = flip.index(tampered.len());
                tampered[i] ^= 0x01;
                prop_assert!(verify(&secrets, svix, &raw, Bytes::from(tampered), now).is_err());
            }
        }
    }
}
