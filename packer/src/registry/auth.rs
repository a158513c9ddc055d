//! Authentication as registries ask for it: a request goes out bare, and a 401's
//! `WWW-Authenticate` challenge says what to send. `Basic` takes the user name and
//! password on every request; `Bearer` takes a token from the registry's token service,
//! asked for the operation's scopes with the password (GET) or with Docker's identity
//! token (the OAuth2 refresh-token grant, POST), or anonymously.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;

use super::http::{self, Body, Call, Client, Failure, Method, ReadError};
use super::{CredentialKind, Event, RegistryError};
use crate::credentials::{Credential, Secret};

/// Token answers larger than this are refused.
const MAX_TOKEN_RESPONSE: u64 = 1 << 20;
/// `client_id` of the refresh-token grant.
const CLIENT_ID: &str = "wasmbuild";

/// The credential, and what the registry has asked for so far. Its `Debug` shows neither
/// the credential nor any token.
pub(crate) struct Auth {
    credential: Credential,
    /// Every token is asked for these (`repository:me/app:pull,push`).
    scopes: Vec<String>,
    scheme: Scheme,
}

enum Scheme {
    /// Not challenged yet: requests go without credentials.
    Unknown,
    /// The `Authorization` value to send.
    Basic(Secret),
    /// Tokens by the scopes they were issued for, the one in use, and the token service
    /// that issued them.
    Bearer {
        tokens: BTreeMap<String, Secret>,
        active: String,
        realm: String,
        service: Option<String>,
    },
}

/// The scopes before [`Client::widen_scopes`], for [`Client::narrow_scopes`].
pub(crate) struct Narrower {
    scopes: Vec<String>,
    active: Option<String>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match &self.scheme {
            Scheme::Unknown => "none yet".to_string(),
            Scheme::Basic(_) => "Basic <redacted>".to_string(),
            Scheme::Bearer { tokens, active, .. } => {
                format!(
                    "Bearer ({} tokens, <redacted>) for {active:?}",
                    tokens.len()
                )
            }
        };
        f.debug_struct("Auth")
            .field("credential", &self.credential)
            .field("scopes", &self.scopes)
            .field("scheme", &scheme)
            .finish()
    }
}

impl Auth {
    pub(crate) fn new(credential: Credential, scopes: Vec<String>) -> Auth {
        Auth {
            credential,
            scopes,
            scheme: Scheme::Unknown,
        }
    }

    /// The `Authorization` header for the next request, once the registry asked for one.
    pub(crate) fn authorization(&self) -> Option<Secret> {
        match &self.scheme {
            Scheme::Unknown => None,
            Scheme::Basic(value) => Some(value.clone()),
            Scheme::Bearer { tokens, active, .. } => tokens
                .get(active)
                .map(|token| Secret::new(format!("Bearer {}", token.expose()))),
        }
    }

    /// The error for a 401 or 403 that fresh credentials did not get past.
    pub(crate) fn refused(
        &self,
        registry: &str,
        url: &str,
        status: u16,
        error: Option<super::ApiError>,
    ) -> RegistryError {
        RegistryError::Unauthorized {
            registry: registry.to_string(),
            url: http::shown(url),
            status,
            credential: CredentialKind::of(&self.credential),
            error,
        }
    }

    /// Sends the token already issued for the scopes `key` from now on.
    fn use_existing(&mut self, key: String) {
        if let Scheme::Bearer { active, .. } = &mut self.scheme {
            *active = key;
        }
    }

    /// Sends `token`, issued for the scopes `key` by the service at `realm`, from now on.
    fn use_token(&mut self, key: String, token: Secret, realm: &str, service: Option<&str>) {
        match &mut self.scheme {
            Scheme::Bearer {
                tokens,
                active,
                realm: known_realm,
                service: known_service,
            } => {
                tokens.insert(key.clone(), token);
                *active = key;
                *known_realm = realm.to_string();
                *known_service = service.map(str::to_string);
            }
            scheme => {
                *scheme = Scheme::Bearer {
                    tokens: BTreeMap::from([(key.clone(), token)]),
                    active: key,
                    realm: realm.to_string(),
                    service: service.map(str::to_string),
                }
            }
        }
    }
}

impl Client<'_> {
    /// Answers a 401 from `url`: fetches a token for a Bearer challenge, or starts
    /// sending the password for a Basic one. Fails when there is nothing (more) to offer.
    pub(crate) fn authenticate(
        &mut self,
        challenges: &[Challenge],
        url: &str,
        error: Option<super::ApiError>,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<(), Failure> {
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let Some(realm) = bearer.param("realm").filter(|r| !r.is_empty()) else {
                return Err(RegistryError::InvalidResponse {
                    url: http::shown(url),
                    reason: "its Bearer challenge names no realm (token service)".to_string(),
                }
                .into());
            };
            let mut scopes = self.auth.scopes.clone();
            for scope in bearer.param("scope").unwrap_or_default().split_whitespace() {
                if !scopes.iter().any(|s| s == scope) {
                    scopes.push(scope.to_string());
                }
            }
            let service = bearer.param("service");
            let token = self.fetch_token(realm, service, &scopes, on_event)?;
            self.auth.use_token(scopes.join(" "), token, realm, service);
            return Ok(());
        }
        let basic = challenges.iter().any(|c| c.scheme == "basic");
        match (&self.auth.credential, &self.auth.scheme) {
            (Credential::Basic { username, password }, Scheme::Unknown | Scheme::Bearer { .. })
                if basic =>
            {
                self.auth.scheme = Scheme::Basic(basic_authorization(username, password));
                Ok(())
            }
            _ => Err(self.auth.refused(&self.registry, url, 401, error).into()),
        }
    }

    /// Asks for `extra` scopes too (a mount's `repository:<from>:pull`) until
    /// [`Client::narrow_scopes`]. Where the registry has asked for Bearer tokens, gets one
    /// for the wider scopes now, since a registry need not challenge a token that lacks a
    /// scope but may quietly do less with it; fails, with nothing changed, when the token
    /// service refuses them.
    pub(crate) fn widen_scopes(
        &mut self,
        extra: &[String],
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Narrower, Failure> {
        let narrower = Narrower {
            scopes: self.auth.scopes.clone(),
            active: match &self.auth.scheme {
                Scheme::Bearer { active, .. } => Some(active.clone()),
                _ => None,
            },
        };
        let add = |scopes: &mut Vec<String>| {
            for scope in extra {
                if !scopes.contains(scope) {
                    scopes.push(scope.clone());
                }
            }
        };
        if let Scheme::Bearer {
            tokens,
            active,
            realm,
            service,
        } = &self.auth.scheme
        {
            let mut scopes: Vec<String> = active.split_whitespace().map(str::to_string).collect();
            add(&mut scopes);
            let key = scopes.join(" ");
            if tokens.contains_key(&key) {
                self.auth.use_existing(key);
            } else {
                let (realm, service) = (realm.clone(), service.clone());
                let token = self.fetch_token(&realm, service.as_deref(), &scopes, on_event)?;
                self.auth.use_token(key, token, &realm, service.as_deref());
            }
        }
        add(&mut self.auth.scopes);
        Ok(narrower)
    }

    /// Back to the scopes (and token) before [`Client::widen_scopes`].
    pub(crate) fn narrow_scopes(&mut self, narrower: Narrower) {
        self.auth.scopes = narrower.scopes;
        if let (Some(previous), Scheme::Bearer { active, .. }) =
            (narrower.active, &mut self.auth.scheme)
        {
            *active = previous;
        }
    }

    /// A token for `scopes` from the token service at `realm`.
    fn fetch_token(
        &mut self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Secret, Failure> {
        let form;
        let (call, authorization) = match &self.auth.credential {
            Credential::IdentityToken { token, .. } => {
                let mut fields = vec![
                    ("grant_type", "refresh_token".to_string()),
                    ("refresh_token", token.expose().to_string()),
                    ("client_id", CLIENT_ID.to_string()),
                ];
                if let Some(service) = service {
                    fields.push(("service", service.to_string()));
                }
                if !scopes.is_empty() {
                    fields.push(("scope", scopes.join(" ")));
                }
                form = Secret::new(
                    fields
                        .iter()
                        .map(|(k, v)| format!("{k}={}", http::percent_encode(v)))
                        .collect::<Vec<_>>()
                        .join("&"),
                );
                let call = Call::new(Method::Post, realm.to_string())
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(Body::Bytes(form.expose().as_bytes()));
                (call, None)
            }
            credential => {
                let mut url = realm.to_string();
                if let Some(service) = service {
                    url = http::with_query(&url, "service", service);
                }
                for scope in scopes {
                    url = http::with_query(&url, "scope", scope);
                }
                let authorization = match credential {
                    Credential::Basic { username, password } => {
                        url = http::with_query(&url, "account", username);
                        Some(basic_authorization(username, password))
                    }
                    _ => None,
                };
                (Call::new(Method::Get, url), authorization)
            }
        };
        let response = self.send(&call, authorization.as_ref(), on_event)?;
        let status = response.status().as_u16();
        match status {
            200..=299 => {}
            401 | 403 => {
                let error = http::api_error(response);
                return Err(self
                    .auth
                    .refused(&self.registry, realm, status, error)
                    .into());
            }
            408 | 429 | 500 | 502 | 503 | 504 => {
                return Err(Failure {
                    error: Box::new(http::status_error(call.method, realm, response)),
                    transient: true,
                    retry_after: None,
                });
            }
            _ => return Err(http::status_error(call.method, realm, response).into()),
        }
        let bytes = match http::read_limited(response, MAX_TOKEN_RESPONSE) {
            Ok(bytes) => bytes,
            Err(ReadError::Io(e)) => {
                return Err(http::body_failure(&self.registry, call.method, realm, e));
            }
            Err(ReadError::TooLarge(_)) => {
                return Err(invalid(realm, "its answer is larger than 1 MiB"));
            }
        };
        parse_token(&bytes).ok_or_else(|| {
            invalid(
                realm,
                "its answer has no `token` or `access_token` (is this a token service?)",
            )
        })
    }
}

fn invalid(url: &str, reason: &str) -> Failure {
    RegistryError::InvalidResponse {
        url: http::shown(url),
        reason: reason.to_string(),
    }
    .into()
}

/// `token`, else `access_token`, of a token service's JSON answer.
fn parse_token(bytes: &[u8]) -> Option<Secret> {
    // No Debug: it holds the token.
    #[derive(serde::Deserialize)]
    struct TokenAnswer {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        access_token: Option<String>,
    }
    let answer: TokenAnswer = serde_json::from_slice(bytes).ok()?;
    [answer.token, answer.access_token]
        .into_iter()
        .flatten()
        .find(|t| !t.is_empty())
        .map(Secret::new)
}

fn basic_authorization(username: &str, password: &Secret) -> Secret {
    let pair = Secret::new(format!("{username}:{}", password.expose()));
    Secret::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair.expose())
    ))
}

/// One challenge of a `WWW-Authenticate` header: the scheme (lowercase) and its
/// parameters (names lowercase).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub(crate) scheme: String,
    pub(crate) params: Vec<(String, String)>,
}

impl Challenge {
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a `WWW-Authenticate` value (RFC 9110 §11.6.1): challenges separated by commas,
/// each a scheme and comma-separated `name=value` parameters, values plain or quoted
/// (quoted ones may hold commas and `\"`). What it cannot read (token68) is skipped.
pub(crate) fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
    };
    let mut challenges = Vec::new();
    loop {
        p.skip(|b| b == b' ' || b == b'\t' || b == b',');
        let Some(scheme) = p.token() else { break };
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: Vec::new(),
        };
        loop {
            p.skip(|b| b == b' ' || b == b'\t');
            let start = p.i;
            let Some(name) = p.token() else { break };
            p.skip(|b| b == b' ' || b == b'\t');
            if p.peek() != Some(b'=') {
                // The next challenge's scheme.
                p.i = start;
                break;
            }
            p.i += 1;
            p.skip(|b| b == b' ' || b == b'\t');
            let value = if p.peek() == Some(b'"') {
                p.quoted()
            } else {
                p.bare_value()
            };
            challenge.params.push((name.to_ascii_lowercase(), value));
            p.skip(|b| b == b' ' || b == b'\t');
            if p.peek() == Some(b',') {
                p.i += 1;
            } else {
                // Unreadable rest (token68 padding, garbage): skip to the next comma.
                p.skip(|b| b != b',');
            }
        }
        challenges.push(challenge);
    }
    challenges
}

struct Parser<'s> {
    s: &'s [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip(&mut self, what: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&what) {
            self.i += 1;
        }
    }

    /// RFC 9110 `token`.
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        self.skip(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    /// An unquoted value: a token, leniently anything up to a comma or space (some
    /// servers leave URLs unquoted).
    fn bare_value(&mut self) -> String {
        let start = self.i;
        self.skip(|b| !matches!(b, b',' | b' ' | b'\t' | b'"'));
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    /// A quoted string from its opening quote, with `\` escapes undone.
    fn quoted(&mut self) -> String {
        self.i += 1;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(next) = self.peek() {
                        out.push(next);
                        self.i += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}
