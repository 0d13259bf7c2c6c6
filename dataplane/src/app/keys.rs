//! API keys and tenants: issuing, listing, revoking and rotating keys, resolving a bearer token
//! to a [`Principal`] with its [`Scope`], and the per-tenant rate limit.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{validate_name, App, Principal};
use crate::error::{Error, Result};
use crate::metadata::{parse_rfc3339, ApiKey, NewApiKey, Scope, Tenant};
use crate::ratelimit::{Decision, RateLimiter};

/// A new API key, shown once.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IssuedKey {
    /// Key id.
    pub id: String,
    /// The key itself; store it, it cannot be shown again.
    pub key: String,
    /// Its first characters, shown in listings.
    pub prefix: String,
    /// Tenant name.
    pub tenant: String,
    /// What it may do.
    pub scope: Scope,
    /// When it stops working (RFC 3339), if ever.
    pub expires_at: Option<String>,
    /// Whether it is a cluster-admin key (the scope says so too; kept for older clients).
    pub admin: bool,
}

/// What a new key is for.
#[derive(Debug, Clone)]
pub struct KeyRequest {
    /// A label.
    pub name: String,
    /// What it may do.
    pub scope: Scope,
    /// When it stops working, if ever.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Hashes an API key for storage and lookup.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl App {
    /// Creates the first admin key when there is none: the configured one, or a random one that
    /// is returned so the caller can print it once.
    pub async fn bootstrap_admin_key(&self) -> Result<Option<String>> {
        if self.metadata.count_admin_keys().await? > 0 {
            return Ok(None);
        }
        let (key, generated) = match &self.config.auth.admin_key {
            Some(k) => (k.expose().to_string(), false),
            None => (ragplane_config::new_api_key(), true),
        };
        let prefix: String = key.chars().take(10).collect();
        let hash = hash_key(&key);
        match self
            .metadata
            .create_api_key(NewApiKey {
                tenant_id: &self.default_tenant,
                name: "admin",
                key_hash: &hash,
                prefix: &prefix,
                scope: Scope::ClusterAdmin,
                expires_at: None,
            })
            .await
        {
            Ok(_) => Ok(generated.then_some(key)),
            // Instances starting together with the same configured key: one stored it first.
            Err(crate::metadata::MetadataError::Conflict { .. })
                if self
                    .metadata
                    .api_key_by_hash(&hash)
                    .await?
                    .is_some_and(|k| k.scope == Scope::ClusterAdmin) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Resolves a bearer token to a principal: 401 for a key that is unknown, revoked or
    /// expired. Keys are cached for `auth.key_cache_secs`, which bounds how long a revoked key
    /// keeps working; an expiry applies at once, cached or not.
    pub async fn authenticate(&self, bearer: Option<&str>) -> Result<Principal> {
        self.authenticate_from(bearer, None).await
    }

    /// [`App::authenticate`] for a request from `client`. A client address whose keys keep
    /// failing (`auth.failed_attempts_per_minute`) gets 429 with Retry-After before any lookup,
    /// and a key just found unknown is answered from memory, so a burst of bad keys never
    /// reaches the metadata store each time.
    pub async fn authenticate_from(
        &self,
        bearer: Option<&str>,
        client: Option<std::net::IpAddr>,
    ) -> Result<Principal> {
        self.guarded(client, self.resolve(bearer)).await
    }

    /// Runs an authentication `attempt` for `client`: refused with 429 while the client is
    /// blocked, and a 401 counted towards blocking it.
    pub(super) async fn guarded<T>(
        &self,
        client: Option<std::net::IpAddr>,
        attempt: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        if let Some(until) = client.and_then(|c| self.blocked_clients.get(&c)) {
            let now = std::time::Instant::now();
            if until > now {
                crate::metrics::AUTH_FAILURES
                    .with_label_values(&["blocked"])
                    .inc();
                return Err(Error::RateLimited {
                    message: "too many failed authentications from this address".into(),
                    retry_after_secs: (until - now).as_secs().max(1),
                });
            }
        }
        match attempt.await {
            Err(e @ Error::Unauthorized(_)) => {
                self.count_failure(client).await;
                Err(e)
            }
            other => other,
        }
    }

    /// Counts a failed authentication of `client`, blocking it once over its budget.
    async fn count_failure(&self, client: Option<std::net::IpAddr>) {
        crate::metrics::AUTH_FAILURES
            .with_label_values(&["failed"])
            .inc();
        let Some(c) = client else { return };
        if let Ok(Decision::Limit { retry_after }) = self.auth_failures.check(&c.to_string()).await
        {
            tracing::warn!(client = %c, ?retry_after, "blocking a client whose keys keep failing");
            self.blocked_clients
                .insert(c, std::time::Instant::now() + retry_after);
        }
    }

    async fn resolve(&self, bearer: Option<&str>) -> Result<Principal> {
        if self.config.auth.disabled {
            self.admit("anonymous").await?;
            return Ok(Principal {
                tenant_id: self.default_tenant.clone(),
                key_id: None,
                scope: Scope::ClusterAdmin,
                expires_at: None,
            });
        }
        let key = bearer.ok_or_else(|| {
            Error::Unauthorized("missing API key: send Authorization: Bearer <key>".into())
        })?;
        self.resolve_hash(hash_key(key)).await
    }

    /// The principal of the key whose hash is `hash`: 401 when it is unknown, revoked or
    /// expired; counted against its tenant's rate limit.
    pub(super) async fn resolve_hash(&self, hash: String) -> Result<Principal> {
        let unknown = || Error::Unauthorized("unknown or revoked API key".into());
        let principal = match self.known_keys.get(&hash) {
            Some(p) => p,
            None if self.unknown_keys.contains_key(&hash) => return Err(unknown()),
            None => {
                let Some(k) = self.metadata.api_key_by_hash(&hash).await? else {
                    self.unknown_keys.insert(hash, ());
                    return Err(unknown());
                };
                let principal = Principal {
                    tenant_id: k.tenant_id,
                    key_id: Some(k.id),
                    scope: k.scope,
                    expires_at: k.expires_at.as_deref().and_then(parse_rfc3339),
                };
                self.known_keys.insert(hash.clone(), principal.clone());
                principal
            }
        };
        if principal
            .expires_at
            .is_some_and(|t| t <= chrono::Utc::now())
        {
            return Err(Error::Unauthorized("expired API key".into()));
        }
        // One limit per tenant, however many keys it has.
        self.admit(&format!("tenant:{}", principal.tenant_id))
            .await?;
        Ok(principal)
    }

    /// Counts a request against its tenant's rate limit (keyed by the tenant id, never a key).
    async fn admit(&self, key_id: &str) -> Result<()> {
        let Some(limiter) = &self.rate_limiter else {
            return Ok(());
        };
        let rl = &self.config.rate_limit;
        match limiter.check(key_id).await {
            Ok(Decision::Allow) => Ok(()),
            Ok(Decision::Limit { retry_after }) => {
                crate::metrics::RATE_LIMITED.inc();
                Err(Error::RateLimited {
                    message: format!(
                        "rate limit exceeded for this tenant ({} requests/s, burst {}, shared by its keys)",
                        rl.requests_per_second, rl.burst
                    ),
                    retry_after_secs: retry_after.as_secs_f64().ceil().max(1.0) as u64,
                })
            }
            Err(e) => {
                crate::metrics::RATE_LIMIT_ERRORS.inc();
                tracing::warn!(error = %e, fail = ?rl.on_backend_error, "rate limiter unavailable");
                match rl.on_backend_error {
                    ragplane_config::FailMode::Open => Ok(()),
                    ragplane_config::FailMode::Closed => Err(Error::Unavailable {
                        message: format!("rate limiter unavailable: {e}"),
                        retry_after_secs: 1,
                    }),
                }
            }
        }
    }

    /// Refuses with 403 unless the caller's key has at least `scope`.
    pub fn require(p: &Principal, scope: Scope) -> Result<()> {
        if p.scope >= scope {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "this operation needs a {scope} key; this key is {}",
                p.scope
            )))
        }
    }

    /// The tenant named `tenant`, whose keys the caller manages: a cluster-admin any tenant's,
    /// a tenant-admin only its own (another tenant answers 404, as if it did not exist).
    async fn managed_tenant(&self, p: &Principal, tenant: &str) -> Result<Tenant> {
        Self::require(p, Scope::TenantAdmin)?;
        self.metadata
            .tenant_by_name(tenant)
            .await?
            .filter(|t| p.scope == Scope::ClusterAdmin || t.id == p.tenant_id)
            .ok_or_else(|| Error::not_found("tenant", tenant))
    }

    /// Creates a tenant (cluster-admin only).
    pub async fn create_tenant(&self, p: &Principal, name: &str) -> Result<Tenant> {
        Self::require(p, Scope::ClusterAdmin)?;
        validate_name("name", name)?;
        Ok(self.metadata.create_tenant(name).await?)
    }

    /// Deletes a tenant with everything it has: each collection's points, originals, cached
    /// results and rows, then its keys (cluster-admin only; not the caller's own tenant). Its
    /// keys stop working at once on this instance and within `auth.key_cache_secs` on others.
    pub async fn delete_tenant(&self, p: &Principal, name: &str) -> Result<()> {
        Self::require(p, Scope::ClusterAdmin)?;
        let t = self
            .metadata
            .tenant_by_name(name)
            .await?
            .ok_or_else(|| Error::not_found("tenant", name))?;
        if t.id == p.tenant_id {
            return Err(Error::invalid(
                "tenant",
                "a key cannot delete its own tenant; use a cluster-admin key of another tenant",
            ));
        }
        for c in self.metadata.list_collections(&t.id).await? {
            self.remove_collection(&c).await?;
        }
        // Anything left under the tenant's prefix (an upload whose row was never written).
        self.objects.delete_prefix(&t.id).await?;
        if let Some(cache) = &self.results {
            cache.delete_prefix(&format!("res:{}:", t.id)).await;
        }
        self.metadata.delete_tenant(&t.id).await?;
        let tenant = t.id.clone();
        let _ = self
            .known_keys
            .invalidate_entries_if(move |_, principal| principal.tenant_id == tenant);
        tracing::info!(tenant = %t.name, "deleted a tenant and everything it had");
        Ok(())
    }

    /// Lists tenants (cluster-admin only).
    pub async fn list_tenants(&self, p: &Principal) -> Result<Vec<Tenant>> {
        Self::require(p, Scope::ClusterAdmin)?;
        Ok(self.metadata.list_tenants().await?)
    }

    /// Issues a key for a tenant. A tenant-admin issues keys of its own tenant, up to its own
    /// scope; only a cluster-admin issues cluster-admin keys.
    pub async fn issue_key(
        &self,
        p: &Principal,
        tenant: &str,
        request: KeyRequest,
    ) -> Result<IssuedKey> {
        let t = self.managed_tenant(p, tenant).await?;
        if request.scope > p.scope {
            return Err(Error::Forbidden(format!(
                "a {} key cannot issue a {} key",
                p.scope, request.scope
            )));
        }
        if request.name.is_empty() || request.name.len() > 128 {
            return Err(Error::invalid("name", "must be 1 to 128 bytes"));
        }
        if request.expires_at.is_some_and(|t| t <= chrono::Utc::now()) {
            return Err(Error::invalid("expires_at", "must be in the future"));
        }
        let key = ragplane_config::new_api_key();
        let prefix: String = key.chars().take(10).collect();
        let expires_at = request.expires_at.map(|t| t.to_rfc3339());
        let k = self
            .metadata
            .create_api_key(NewApiKey {
                tenant_id: &t.id,
                name: &request.name,
                key_hash: &hash_key(&key),
                prefix: &prefix,
                scope: request.scope,
                expires_at,
            })
            .await?;
        Ok(IssuedKey {
            id: k.id,
            key,
            prefix,
            tenant: t.name,
            scope: k.scope,
            expires_at: k.expires_at,
            admin: k.scope == Scope::ClusterAdmin,
        })
    }

    /// A tenant's keys, revoked ones included (never the keys themselves).
    pub async fn list_keys(&self, p: &Principal, tenant: &str) -> Result<Vec<ApiKey>> {
        let t = self.managed_tenant(p, tenant).await?;
        Ok(self.metadata.list_api_keys(&t.id).await?)
    }

    /// A key of a tenant the caller manages, unrevoked; 404 otherwise.
    async fn managed_key(&self, p: &Principal, tenant: &str, id: &str) -> Result<(Tenant, ApiKey)> {
        let t = self.managed_tenant(p, tenant).await?;
        let k = self
            .metadata
            .list_api_keys(&t.id)
            .await?
            .into_iter()
            .find(|k| k.id == id && k.revoked_at.is_none())
            .ok_or_else(|| Error::not_found("api key", id))?;
        if k.scope > p.scope {
            return Err(Error::Forbidden(format!(
                "a {} key cannot manage a {} key",
                p.scope, k.scope
            )));
        }
        Ok((t, k))
    }

    /// Revokes a key. It stops working within `auth.key_cache_secs` on every instance.
    pub async fn revoke_key(&self, p: &Principal, tenant: &str, id: &str) -> Result<()> {
        let (t, k) = self.managed_key(p, tenant, id).await?;
        self.metadata.revoke_api_key(&t.id, &k.id).await?;
        Ok(())
    }

    /// Replaces a key by a new one with the same name, scope and expiry. The old key keeps
    /// working for `grace` (so clients can switch), then expires; with no grace it is revoked
    /// at once.
    pub async fn rotate_key(
        &self,
        p: &Principal,
        tenant: &str,
        id: &str,
        grace: std::time::Duration,
    ) -> Result<IssuedKey> {
        let (t, old) = self.managed_key(p, tenant, id).await?;
        grace_period(grace)?;
        let expires_at = old
            .expires_at
            .as_deref()
            .and_then(parse_rfc3339)
            .filter(|e| *e > chrono::Utc::now());
        let issued = self
            .issue_key(
                p,
                &t.name,
                KeyRequest {
                    name: old.name.clone(),
                    scope: old.scope,
                    expires_at,
                },
            )
            .await?;
        if grace.is_zero() {
            self.metadata.revoke_api_key(&t.id, &old.id).await?;
        } else {
            let until = chrono::Utc::now() + grace_period(grace)?;
            self.metadata
                .expire_api_key(&t.id, &old.id, &until.to_rfc3339())
                .await?;
        }
        Ok(issued)
    }
}

/// A rotation's grace period as a date offset: at most 30 days, which is long enough to
/// switch every client and short enough that a leaked key does not live on unnoticed.
fn grace_period(grace: std::time::Duration) -> Result<chrono::Duration> {
    const MAX_GRACE: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);
    if grace > MAX_GRACE {
        return Err(Error::invalid(
            "grace_secs",
            format!("must be at most {} (30 days)", MAX_GRACE.as_secs()),
        ));
    }
    chrono::Duration::from_std(grace).map_err(|e| Error::invalid("grace_secs", e.to_string()))
}
