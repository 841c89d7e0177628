//! [`RequestContext`]: who is on the other end of the connection, for the
//! audit events a request causes.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::USER_AGENT;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use tokio_postgres::GenericClient;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Header a reverse proxy appends the client's address to.
pub const FORWARDED_FOR_HEADER: &str = "x-forwarded-for";
/// Longest user agent kept (the rest is cut, at a character boundary).
pub const MAX_USER_AGENT_CHARS: usize = 512;

/// The request's id, the client's address and its user agent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestContext {
    pub request_id: String,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl RequestContext {
    /// Build the context from the request's headers and peer address.
    /// `X-Forwarded-For` is read only when `trust_forwarded_for` is set,
    /// and then only its last entry: the address the nearest proxy (the one
    /// trusted) saw; earlier entries are whatever the client wrote.
    pub fn from_parts(
        headers: &HeaderMap,
        peer: Option<IpAddr>,
        trust_forwarded_for: bool,
    ) -> Self {
        let forwarded = trust_forwarded_for
            .then(|| {
                headers
                    .get_all(FORWARDED_FOR_HEADER)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(','))
                    .last()
                    .and_then(|last| last.trim().parse::<IpAddr>().ok())
            })
            .flatten();
        Self {
            request_id: headers
                .get(crate::REQUEST_ID_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            ip: forwarded.or(peer),
            user_agent: headers
                .get(USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect()),
        }
    }

    /// Make the extension record this context in the audit events of the
    /// caller's transaction (`SET LOCAL`: it ends with the transaction, so a
    /// pooled connection never carries it to another request). With a
    /// pooled connection's transaction, pass `&*tx` (deadpool's transaction
    /// derefs to tokio-postgres's).
    pub async fn apply(&self, client: &impl GenericClient) -> ApiResult<()> {
        let ip = self.ip.map(|ip| ip.to_string());
        client
            .execute(
                "SELECT set_config('lifecycle.request_ip', coalesce($1, ''), true), \
                        set_config('lifecycle.request_user_agent', coalesce($2, ''), true)",
                &[&ip, &self.user_agent],
            )
            .await
            .map(drop)
            .map_err(ApiError::from)
    }
}

impl FromRequestParts<AppState> for RequestContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        Ok(Self::from_parts(
            &parts.headers,
            peer,
            state.config.trust_forwarded_for,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn forwarded_for_is_read_only_when_trusted_and_only_its_last_entry() {
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4, 5.6.7.8"),
            ("user-agent", "curl/8"),
            ("x-request-id", "r1"),
        ]);
        let ctx = RequestContext::from_parts(&h, Some(peer), false);
        assert_eq!(ctx.ip, Some(peer));
        assert_eq!(ctx.user_agent.as_deref(), Some("curl/8"));
        assert_eq!(ctx.request_id, "r1");
        let ctx = RequestContext::from_parts(&h, Some(peer), true);
        assert_eq!(ctx.ip, Some("5.6.7.8".parse().unwrap()));

        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "garbage"),
        ]);
        let ctx = RequestContext::from_parts(&h, Some(peer), true);
        assert_eq!(
            ctx.ip,
            Some(peer),
            "an unreadable entry falls back to the peer"
        );
    }

    #[test]
    fn long_user_agents_are_cut() {
        let ua = "a".repeat(MAX_USER_AGENT_CHARS + 10);
        let ctx = RequestContext::from_parts(&headers(&[("user-agent", &ua)]), None, false);
        assert_eq!(
            ctx.user_agent.unwrap().chars().count(),
            MAX_USER_AGENT_CHARS
        );
    }
}
