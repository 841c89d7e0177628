//! Admin tokens: how they look, how they are stored, and the queries on
//! `lifecycled.admin_tokens` (the primary database).
//!
//! A token is `lc_<prefix>_<secret>`: the prefix (12 hex digits) is public
//! and finds the row; the secret (256 random bits, URL-safe base64) is
//! never stored. The row keeps the SHA-256 of the whole token, compared in
//! constant time, so a copy of the database lets nobody call the API. The
//! token itself is shown once, when it is created.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::admin::AdminRole;
use crate::error::{ApiError, ApiResult};

/// Every admin token starts with this.
pub const TOKEN_PREFIX: &str = "lc_";
/// Random bytes of the public lookup prefix (hex encoded: 12 characters).
const LOOKUP_BYTES: usize = 6;
/// Random bytes of the secret: 256 bits.
const SECRET_BYTES: usize = 32;
/// Longest accepted token name (it is the actor the audit log records).
pub const MAX_NAME_CHARS: usize = 200;

/// A new token as shown once to whoever created it. `Debug` hides it.
pub struct NewToken {
    pub token: String,
    pub lookup: String,
    pub hash: [u8; 32],
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("lookup", &self.lookup)
            .finish_non_exhaustive()
    }
}

impl NewToken {
    /// A fresh token from the operating system's random generator.
    pub fn generate() -> Self {
        let mut rng = rand::rngs::OsRng;
        let mut lookup = [0u8; LOOKUP_BYTES];
        let mut secret = [0u8; SECRET_BYTES];
        rand::TryRngCore::try_fill_bytes(&mut rng, &mut lookup)
            .expect("the operating system's random generator failed");
        rand::TryRngCore::try_fill_bytes(&mut rng, &mut secret)
            .expect("the operating system's random generator failed");
        let lookup = hex_encode(&lookup);
        let token = format!("{TOKEN_PREFIX}{lookup}_{}", URL_SAFE_NO_PAD.encode(secret));
        let hash = hash(&token);
        Self {
            token,
            lookup,
            hash,
        }
    }
}

/// SHA-256 of the whole token text.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether `token` hashes to `stored`, in time that does not depend on
/// where they differ.
pub fn matches(token: &str, stored: &[u8]) -> bool {
    hash(token).ct_eq(stored).into()
}

/// The public lookup prefix of a token that has the admin token's shape.
pub fn lookup_of(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (lookup, secret) = rest.split_once('_')?;
    let shaped = lookup.len() == LOOKUP_BYTES * 2
        && lookup
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && URL_SAFE_NO_PAD
            .decode(secret)
            .is_ok_and(|s| s.len() == SECRET_BYTES);
    shaped.then_some(lookup)
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One row of `lifecycled.admin_tokens`, without the hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: Uuid,
    pub name: String,
    /// `platform-admin` or `tenant-admin`.
    pub role: String,
    pub tenant: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

const INFO_COLUMNS: &str = "id, name, role, tenant, created_at, last_used_at, revoked_at";

impl TokenInfo {
    fn from_row(row: &tokio_postgres::Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            role: row.try_get("role")?,
            tenant: row.try_get("tenant")?,
            created_at: row.try_get("created_at")?,
            last_used_at: row.try_get("last_used_at")?,
            revoked_at: row.try_get("revoked_at")?,
        })
    }
}

/// What the store knows of a presented token, for the [`super::Admin`]
/// extractor.
pub struct StoredToken {
    pub id: Uuid,
    pub name: String,
    pub role: AdminRole,
    pub hash: Vec<u8>,
    pub revoked: bool,
    /// `last_used_at` is more than a minute old (or unset).
    pub stale: bool,
}

/// Find the token with this lookup prefix.
///
/// Prepared once per pooled connection: every admin request runs it, and a
/// text query would cost a Parse round trip of its own each time.
pub async fn find(
    client: &deadpool_postgres::ClientWrapper,
    lookup: &str,
) -> ApiResult<Option<StoredToken>> {
    let find = client
        .prepare_cached(
            "SELECT id, name, role, tenant, secret_hash, revoked_at IS NOT NULL AS revoked, \
                    last_used_at IS NULL OR last_used_at < now() - interval '1 minute' AS stale \
               FROM lifecycled.admin_tokens WHERE lookup = $1",
        )
        .await?;
    let row = client.query_opt(&find, &[&lookup]).await?;
    let Some(row) = row else { return Ok(None) };
    let role: String = row.try_get("role")?;
    let tenant: Option<String> = row.try_get("tenant")?;
    // The table's CHECK constraint makes any other combination impossible.
    let role = AdminRole::from_parts(&role, tenant)
        .ok_or_else(|| ApiError::internal(format!("admin token with role {role:?}")))?;
    Ok(Some(StoredToken {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role,
        hash: row.try_get("secret_hash")?,
        revoked: row.try_get("revoked")?,
        stale: row.try_get("stale")?,
    }))
}

/// Record a use of the token, at most once a minute (the condition makes a
/// concurrent second update a no-op).
pub async fn touch(client: &impl GenericClient, id: Uuid) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE lifecycled.admin_tokens SET last_used_at = now() \
              WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
            &[&id],
        )
        .await
        .map(drop)
}

/// Store a new token; the caller shows `NewToken::token` once.
pub async fn create(
    client: &impl GenericClient,
    name: &str,
    role: &AdminRole,
) -> anyhow::Result<(TokenInfo, NewToken)> {
    let name = name.trim();
    anyhow::ensure!(!name.is_empty(), "a token needs a name");
    // `<subject type>:<id>` is how the extension records a subject acting
    // on their own data: an admin named like that would pass for one.
    anyhow::ensure!(
        !name.contains(':'),
        "a token name may not contain ':' (\"type:id\" names a subject acting on their own data)"
    );
    anyhow::ensure!(
        name.chars().count() <= MAX_NAME_CHARS,
        "a token name has at most {MAX_NAME_CHARS} characters"
    );
    let new = NewToken::generate();
    let row = client
        .query_one(
            &format!(
                "INSERT INTO lifecycled.admin_tokens (name, role, tenant, lookup, secret_hash) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING {INFO_COLUMNS}"
            ),
            &[
                &name,
                &role.as_str(),
                &role.tenant(),
                &new.lookup,
                &new.hash.as_slice(),
            ],
        )
        .await
        .map_err(|err| match err.code() {
            Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                anyhow::anyhow!("a token named {name:?} exists already (names are never reused: they are the actors of the audit log)")
            }
            _ => anyhow::Error::new(err).context("could not store the token"),
        })?;
    Ok((TokenInfo::from_row(&row)?, new))
}

/// Every token, oldest first.
pub async fn list(client: &impl GenericClient) -> anyhow::Result<Vec<TokenInfo>> {
    let rows = client
        .query(
            &format!(
                "SELECT {INFO_COLUMNS} FROM lifecycled.admin_tokens ORDER BY created_at, name"
            ),
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(TokenInfo::from_row)
        .collect::<Result<_, _>>()?)
}

/// Revoke the token with this id or name. A token revoked already keeps
/// its first revocation time. `None` when there is no such token.
pub async fn revoke(
    client: &impl GenericClient,
    id_or_name: &str,
) -> anyhow::Result<Option<TokenInfo>> {
    let id = Uuid::parse_str(id_or_name).ok();
    let row = client
        .query_opt(
            &format!(
                "UPDATE lifecycled.admin_tokens SET revoked_at = coalesce(revoked_at, now()) \
                  WHERE id = $1 OR ($1 IS NULL AND name = $2) RETURNING {INFO_COLUMNS}"
            ),
            &[&id, &id_or_name],
        )
        .await?;
    row.as_ref()
        .map(TokenInfo::from_row)
        .transpose()
        .map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_have_the_documented_shape() {
        let new = NewToken::generate();
        assert!(new.token.starts_with("lc_"), "{}", new.token);
        assert_eq!(lookup_of(&new.token), Some(new.lookup.as_str()));
        assert_eq!(new.lookup.len(), 12);
        // 256 bits of secret.
        let secret = &new.token["lc_".len() + 12 + 1..];
        assert_eq!(URL_SAFE_NO_PAD.decode(secret).unwrap().len(), 32);
        assert!(matches(&new.token, &new.hash));
        assert!(!format!("{new:?}").contains(&new.token));

        let other = NewToken::generate();
        assert_ne!(other.token, new.token);
        assert!(!matches(&other.token, &new.hash));
    }

    #[test]
    fn malformed_tokens_have_no_lookup() {
        let new = NewToken::generate();
        for bad in [
            "",
            "lc_",
            "eyJhbGciOiJIUzI1NiJ9.e30.x",
            &new.token[..new.token.len() - 1],
            &new.token.replace("lc_", "xx_"),
            &format!("LC_{}", &new.token[3..]),
            "lc_0123456789ab_short",
        ] {
            assert_eq!(lookup_of(bad), None, "{bad}");
        }
    }
}
