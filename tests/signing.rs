//! Signing deliveries exactly as Svix does, with the svix crate.

use clerk_sync_core::webhook::{Secrets, new_msg_id};

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const OTHER_SECRET: &str = "whsec_dGVzdC1zZWNyZXQtYi0xMjM0NTY3ODkwMTI=";

pub struct Signer {
    secrets: Secrets,
}

/// A signed delivery: its three Svix headers and body.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub timestamp: i64,
    pub signature: String,
    pub body: Vec<u8>,
}

impl Delivery {
    pub fn headers(&self) -> Vec<(String, String)> {
        vec![
            ("svix-id".into(), self.id.clone()),
            ("svix-timestamp".into(), self.timestamp.to_string()),
            ("svix-signature".into(), self.signature.clone()),
            ("content-type".into(), "application/json".into()),
        ]
    }
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl Signer {
    pub fn new(secret: &str) -> Self {
        Self {
            secrets: Secrets::parse(secret).unwrap(),
        }
    }

    pub fn sign_at(&self, id: &str, timestamp: i64, body: &[u8]) -> Delivery {
        Delivery {
            id: id.to_owned(),
            timestamp,
            signature: self.secrets.sign(id, timestamp, body).unwrap(),
            body: body.to_vec(),
        }
    }

    /// A fresh svix-id, signed now.
    pub fn sign(&self, body: &[u8]) -> Delivery {
        self.sign_at(&new_msg_id(), now_secs(), body)
    }
}

impl Default for Signer {
    fn default() -> Self {
        Self::new(SECRET)
    }
}
