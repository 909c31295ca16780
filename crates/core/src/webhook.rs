//! Svix webhook secrets: parsing with rotation, verifying and signing.

use std::fmt;

use svix::webhooks::{Webhook, WebhookError};

/// One or more `whsec_…` secrets (rotation: a request signed by any of them is accepted).
/// Never printed: `Debug` shows only how many there are.
pub struct Secrets {
    keys: Vec<Webhook>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets([{} redacted])", self.keys.len())
    }
}

/// Why `CLERK_WEBHOOK_SECRET` was refused. Names the position, never the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("no secret given (expected one or more whsec_… values separated by spaces or commas)")]
    Empty,
    #[error("secret #{position} is not a valid whsec_… value: {reason}")]
    Invalid { position: usize, reason: String },
}

impl Secrets {
    pub fn parse(value: &str) -> Result<Self, SecretError> {
        let raw: Vec<&str> = value
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .collect();
        if raw.is_empty() {
            return Err(SecretError::Empty);
        }
        let keys = raw
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Webhook::new(s).map_err(|e| SecretError::Invalid {
                    position: i + 1,
                    reason: match e {
                        WebhookError::InvalidSecret(_) => {
                            "not base64 after the whsec_ prefix".into()
                        }
                        other => other.to_string(),
                    },
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// True when any configured secret produced one of the signatures (constant-time compare
    /// inside svix). The caller has checked the headers' shape and the timestamp's window.
    pub fn verify(&self, body: &[u8], headers: &http::HeaderMap) -> Result<(), WebhookError> {
        let mut last = WebhookError::InvalidSignature;
        for key in &self.keys {
            match key.verify(body, headers) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The `svix-signature` header value for a message, signed with the first secret.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> Result<String, WebhookError> {
        self.keys[0].sign(msg_id, timestamp, body)
    }
}

/// A fresh `msg_…` id in the shape Svix uses.
pub fn new_msg_id() -> String {
    format!("msg_{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const B: &str = "whsec_dGVzdC1zZWNyZXQtYi0xMjM0NTY3ODkwMTI=";

    #[test]
    fn debug_never_shows_a_secret() {
        let s = Secrets::parse(&format!("{A}, {B}")).unwrap();
        assert_eq!(s.len(), 2);
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("MfKQ") && !shown.contains("dGVz"),
            "{shown}"
        );
    }

    #[test]
    fn bad_secrets_are_refused_by_position() {
        assert!(matches!(Secrets::parse(" ,"), Err(SecretError::Empty)));
        let err = Secrets::parse(&format!("{A} whsec_***"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("#2"), "{err}");
        assert!(!err.contains("***"), "{err}");
    }
}
