//! Signed download links: the single-purpose link an e-mail carries to an
//! export's bundle. It names the database and the export and expires with
//! the bundle's entitlement; it is a capability to ask, not an
//! authorisation: the download still requires the subject's own token.
//!
//! The signature is an HMAC-SHA256 of the link's parts, under a key derived
//! from the subject-token secret (so a deployment has one secret to keep,
//! and rotating it voids every link with every token). Links carry no token
//! and nothing about the subject.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// What the signature covers, so that a link of one kind never serves
/// another.
const PURPOSE: &str = "lifecycled export download v1";

/// Signs and checks download links.
#[derive(Clone)]
pub struct LinkSigner {
    key: [u8; 32],
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner(***)")
    }
}

/// Why a link was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkError {
    /// Missing half of the pair, not a number, or a signature that does not
    /// verify.
    Invalid,
    /// Its time has passed.
    Expired,
}

impl LinkSigner {
    /// A signer whose key is derived from `secret`.
    pub fn new(secret: &[u8]) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(PURPOSE.as_bytes());
        Self {
            key: mac.finalize().into_bytes().into(),
        }
    }

    fn mac(&self, database: &str, export: Uuid, expires: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(format!("{PURPOSE}\n{database}\n{export}\n{expires}").as_bytes());
        mac
    }

    /// The query string (`expires=...&signature=...`) of the link to
    /// `export` of `database`, valid until `expires`.
    pub fn query(&self, database: &str, export: Uuid, expires: DateTime<Utc>) -> String {
        let at = expires.timestamp();
        let signature =
            URL_SAFE_NO_PAD.encode(self.mac(database, export, at).finalize().into_bytes());
        format!("expires={at}&signature={signature}")
    }

    /// Check a link's `expires` and `signature` for `export` of `database`
    /// at `now` (constant-time comparison).
    pub fn verify(
        &self,
        database: &str,
        export: Uuid,
        expires: Option<&str>,
        signature: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), LinkError> {
        let (Some(expires), Some(signature)) = (expires, signature) else {
            return Err(LinkError::Invalid);
        };
        let at: i64 = expires.parse().map_err(|_| LinkError::Invalid)?;
        let sig = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| LinkError::Invalid)?;
        self.mac(database, export, at)
            .verify_slice(&sig)
            .map_err(|_| LinkError::Invalid)?;
        if now.timestamp() >= at {
            return Err(LinkError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn parts(query: &str) -> (String, String) {
        let mut e = String::new();
        let mut s = String::new();
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap();
            match k {
                "expires" => e = v.to_string(),
                "signature" => s = v.to_string(),
                _ => panic!("{k}"),
            }
        }
        (e, s)
    }

    #[test]
    fn a_link_verifies_for_its_export_until_it_expires() {
        let signer = LinkSigner::new(b"a secret of at least thirty-two bytes!!");
        let id = Uuid::new_v4();
        let now = Utc::now();
        let (e, s) = parts(&signer.query("default", id, now + Duration::days(7)));
        assert_eq!(
            signer.verify("default", id, Some(&e), Some(&s), now),
            Ok(())
        );
        // Expired.
        assert_eq!(
            signer.verify("default", id, Some(&e), Some(&s), now + Duration::days(8)),
            Err(LinkError::Expired)
        );
        // Another export, another database, a moved expiry, another key.
        let other = Uuid::new_v4();
        assert_eq!(
            signer.verify("default", other, Some(&e), Some(&s), now),
            Err(LinkError::Invalid)
        );
        assert_eq!(
            signer.verify("eu", id, Some(&e), Some(&s), now),
            Err(LinkError::Invalid)
        );
        let later = (e.parse::<i64>().unwrap() + 86_400).to_string();
        assert_eq!(
            signer.verify("default", id, Some(&later), Some(&s), now),
            Err(LinkError::Invalid)
        );
        let stranger = LinkSigner::new(b"another secret of thirty-two bytes!!!!!");
        assert_eq!(
            stranger.verify("default", id, Some(&e), Some(&s), now),
            Err(LinkError::Invalid)
        );
        // Half a link, or garbage.
        assert_eq!(
            signer.verify("default", id, Some(&e), None, now),
            Err(LinkError::Invalid)
        );
        assert_eq!(
            signer.verify("default", id, Some("x"), Some(&s), now),
            Err(LinkError::Invalid)
        );
        assert_eq!(
            signer.verify("default", id, Some(&e), Some("!!"), now),
            Err(LinkError::Invalid)
        );
    }
}
