//! The hashes of the audit log's chains.
//!
//! Each chain starts from its [`genesis`] hash; every event's [`event_hash`]
//! covers the previous hash, the event's public fields and the salted
//! [`personal_digest`] of its personal fields (actor, IP, user agent,
//! reason, details). Redacting an event clears the personal fields and the
//! salt but keeps the digest, so the chain still verifies.
//!
//! These bytes are stored in every database that has the extension: the
//! tests below pin them for fixed inputs, so that the format cannot change
//! without anyone noticing. A change needs a new version tag (the `-v1`
//! prefixes) and a migration of existing chains.

use sha2::{Digest, Sha256};

/// The genesis hash of chain `chain`.
pub fn genesis(chain: i32) -> Vec<u8> {
    Sha256::digest(format!("lifecycle audit chain {chain}").as_bytes()).to_vec()
}

/// One field, so that field boundaries are unambiguous: a 0 byte for NULL,
/// else a 1 byte, the length (8 bytes, big-endian) and the bytes.
fn put(h: &mut Sha256, field: Option<&[u8]>) {
    match field {
        None => h.update([0u8]),
        Some(b) => {
            h.update([1u8]);
            h.update((b.len() as u64).to_be_bytes());
            h.update(b);
        }
    }
}

/// Digest of the personal fields, salted. `details` is the JSON text as
/// PostgreSQL prints the stored `jsonb`.
pub fn personal_digest(
    salt: &[u8],
    actor: Option<&str>,
    ip: Option<&str>,
    user_agent: Option<&str>,
    reason: Option<&str>,
    details: &str,
) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"lifecycle-audit-personal-v1");
    put(&mut h, Some(salt));
    put(&mut h, actor.map(str::as_bytes));
    put(&mut h, ip.map(str::as_bytes));
    put(&mut h, user_agent.map(str::as_bytes));
    put(&mut h, reason.map(str::as_bytes));
    put(&mut h, Some(details.as_bytes()));
    h.finalize().to_vec()
}

/// Hash of one event: covers the previous hash, the public fields and the
/// personal digest. `occurred_at` is PostgreSQL's timestamp (microseconds
/// since 2000-01-01 UTC).
#[allow(clippy::too_many_arguments)]
pub fn event_hash(
    prev: &[u8],
    id: i64,
    chain: i32,
    occurred_at: i64,
    event_type: &str,
    subject_type: Option<&str>,
    subject_id: Option<&str>,
    tenant_id: Option<&str>,
    personal: &[u8],
) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"lifecycle-audit-event-v1");
    put(&mut h, Some(prev));
    h.update(id.to_be_bytes());
    h.update(chain.to_be_bytes());
    h.update(occurred_at.to_be_bytes());
    put(&mut h, Some(event_type.as_bytes()));
    put(&mut h, subject_type.map(str::as_bytes));
    put(&mut h, subject_id.map(str::as_bytes));
    put(&mut h, tenant_id.map(str::as_bytes));
    put(&mut h, Some(personal));
    h.finalize().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: [u8; 16] = [1; 16];
    const DETAILS: &str = r#"{"job_id": "0b7e6c1e-8a63-4a3c-9a57-4f3c0e6a1b2c"}"#;

    fn full_personal() -> Vec<u8> {
        personal_digest(
            &SALT,
            Some("dba@corp"),
            Some("192.0.2.1"),
            Some("curl/8.5"),
            Some("GDPR Art. 17, ticket 991"),
            DETAILS,
        )
    }

    /// The stored format, pinned: these values were computed before the
    /// functions moved here (and independently of this code), and every
    /// existing chain depends on them.
    #[test]
    fn outputs_are_pinned() {
        assert_eq!(
            hex::encode(genesis(0)),
            "17da18d6a117e54f78c2e4591fbbeab0cc9461bef5cef40f7e251f19c039d638"
        );
        assert_eq!(
            hex::encode(genesis(15)),
            "18e93a2c023f39f07a264fe90175afc60f1a2a873328433ced9b496d685960fc"
        );
        assert_eq!(
            hex::encode(full_personal()),
            "6e713b843bc6ba4378b339b43681353653d0e5c0817c7f0f8f9b690da41c2097"
        );
        let empty_personal = personal_digest(&[2; 16], None, None, None, None, "{}");
        assert_eq!(
            hex::encode(&empty_personal),
            "8175f550a5068a319267548fb263507f233c446fc85cc1e883684d68ce5aa4f9"
        );
        assert_eq!(
            hex::encode(event_hash(
                &genesis(0),
                1,
                0,
                789_000_000_000,
                "account.deletion_requested",
                Some("user"),
                Some("42"),
                Some("acme"),
                &full_personal(),
            )),
            "e3b2c2fa6e205f8a91793a32196efd045e4b7b145b9788f6b7a8fd0dc39cd17a"
        );
        assert_eq!(
            hex::encode(event_hash(
                &genesis(15),
                -7,
                15,
                -1,
                "x.y",
                None,
                None,
                None,
                &empty_personal,
            )),
            "6446a8350e4b4caccd2769abdb7d9a373766ac5ffc068b359535697e463f57cd"
        );
    }

    #[test]
    fn chains_start_apart() {
        let all: std::collections::HashSet<Vec<u8>> = (0..16).map(genesis).collect();
        assert_eq!(all.len(), 16);
        assert!(all.iter().all(|g| g.len() == 32));
    }

    /// Changing any one input changes the hash; field boundaries are
    /// unambiguous.
    #[test]
    fn event_hash_covers_every_public_field() {
        type Fields<'a> = (
            &'a [u8],
            i64,
            i32,
            i64,
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            &'a [u8],
        );
        let hash = |f: Fields<'_>| event_hash(f.0, f.1, f.2, f.3, f.4, f.5, f.6, f.7, f.8);
        let base: Fields<'_> = (
            b"p",
            1,
            0,
            10,
            "e",
            Some("user"),
            Some("1"),
            Some("t"),
            b"d",
        );
        assert_eq!(hash(base), hash(base));
        let variants: [Fields<'_>; 11] = [
            (
                b"q", base.1, base.2, base.3, base.4, base.5, base.6, base.7, base.8,
            ),
            (
                base.0, 2, base.2, base.3, base.4, base.5, base.6, base.7, base.8,
            ),
            (
                base.0, base.1, 1, base.3, base.4, base.5, base.6, base.7, base.8,
            ),
            (
                base.0, base.1, base.2, 11, base.4, base.5, base.6, base.7, base.8,
            ),
            (
                base.0, base.1, base.2, base.3, "f", base.5, base.6, base.7, base.8,
            ),
            (
                base.0, base.1, base.2, base.3, base.4, None, base.6, base.7, base.8,
            ),
            (
                base.0,
                base.1,
                base.2,
                base.3,
                base.4,
                base.5,
                Some("2"),
                base.7,
                base.8,
            ),
            (
                base.0, base.1, base.2, base.3, base.4, base.5, base.6, None, base.8,
            ),
            (
                base.0, base.1, base.2, base.3, base.4, base.5, base.6, base.7, b"x",
            ),
            // Field boundaries are unambiguous.
            (
                base.0,
                base.1,
                base.2,
                base.3,
                base.4,
                Some("use"),
                Some("r1"),
                base.7,
                base.8,
            ),
            (
                base.0,
                base.1,
                base.2,
                base.3,
                base.4,
                Some(""),
                base.6,
                base.7,
                base.8,
            ),
        ];
        for other in variants {
            assert_ne!(hash(base), hash(other), "{other:?}");
        }
    }

    #[test]
    fn personal_digest_covers_salt_and_every_field() {
        let base = full_personal();
        for other in [
            personal_digest(
                &[2; 16],
                Some("dba@corp"),
                Some("192.0.2.1"),
                Some("curl/8.5"),
                Some("GDPR Art. 17, ticket 991"),
                DETAILS,
            ),
            personal_digest(
                &SALT,
                Some("dba@corp2"),
                Some("192.0.2.1"),
                Some("curl/8.5"),
                Some("GDPR Art. 17, ticket 991"),
                DETAILS,
            ),
            personal_digest(
                &SALT,
                Some("dba@corp"),
                None,
                Some("curl/8.5"),
                Some("GDPR Art. 17, ticket 991"),
                DETAILS,
            ),
            personal_digest(
                &SALT,
                Some("dba@corp"),
                Some("192.0.2.1"),
                Some("curl/8.6"),
                Some("GDPR Art. 17, ticket 991"),
                DETAILS,
            ),
            personal_digest(
                &SALT,
                Some("dba@corp"),
                Some("192.0.2.1"),
                Some("curl/8.5"),
                None,
                DETAILS,
            ),
            personal_digest(
                &SALT,
                Some("dba@corp"),
                Some("192.0.2.1"),
                Some("curl/8.5"),
                Some("GDPR Art. 17, ticket 991"),
                "{}",
            ),
            // A field moved to its neighbour is another digest.
            personal_digest(
                &SALT,
                None,
                Some("dba@corp"),
                Some("192.0.2.1"),
                Some("curl/8.5"),
                DETAILS,
            ),
        ] {
            assert_ne!(base, other);
        }
    }
}
