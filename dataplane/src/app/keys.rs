//! API keys and tenants: issuing keys, resolving a bearer token to a [`Principal`], and the
//! per-key rate limit.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{validate_name, App, Principal};
use crate::error::{Error, Result};
use crate::metadata::Tenant;
use crate::ratelimit::Decision;

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
    /// Whether it is an admin key.
    pub admin: bool,
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
            .create_api_key(&self.default_tenant, "admin", &hash, &prefix, true)
            .await
        {
            Ok(_) => Ok(generated.then_some(key)),
            // Instances starting together with the same configured key: one stored it first.
            Err(crate::metadata::MetadataError::Conflict { .. })
                if self
                    .metadata
                    .api_key_by_hash(&hash)
                    .await?
                    .is_some_and(|k| k.admin) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Resolves a bearer token to a principal.
    pub async fn authenticate(&self, bearer: Option<&str>) -> Result<Principal> {
        if self.config.auth.disabled {
            self.admit("anonymous").await?;
            return Ok(Principal {
                tenant_id: self.default_tenant.clone(),
                admin: true,
            });
        }
        let key = bearer.ok_or_else(|| {
            Error::Unauthorized("missing API key: send Authorization: Bearer <key>".into())
        })?;
        let hash = hash_key(key);
        let principal = match self.known_keys.get(&hash) {
            Some(p) => p,
            None => {
                let found = self.metadata.api_key_by_hash(&hash).await?;
                let k = found
                    .ok_or_else(|| Error::Unauthorized("unknown or revoked API key".into()))?;
                let principal = Principal {
                    tenant_id: k.tenant_id,
                    admin: k.admin,
                };
                self.known_keys.insert(hash.clone(), principal.clone());
                principal
            }
        };
        self.admit(&hash).await?;
        Ok(principal)
    }

    /// Counts a request against the key's rate limit (keyed by the key's hash, never the key).
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
                        "rate limit exceeded for this API key ({} requests/s, burst {})",
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

    fn require_admin(p: &Principal) -> Result<()> {
        if p.admin {
            Ok(())
        } else {
            Err(Error::Forbidden(
                "this operation needs an admin API key".into(),
            ))
        }
    }

    /// Creates a tenant (admin only).
    pub async fn create_tenant(&self, p: &Principal, name: &str) -> Result<Tenant> {
        Self::require_admin(p)?;
        validate_name("name", name)?;
        Ok(self.metadata.create_tenant(name).await?)
    }

    /// Lists tenants (admin only).
    pub async fn list_tenants(&self, p: &Principal) -> Result<Vec<Tenant>> {
        Self::require_admin(p)?;
        Ok(self.metadata.list_tenants().await?)
    }

    /// Issues a key for a tenant (admin only).
    pub async fn issue_key(
        &self,
        p: &Principal,
        tenant: &str,
        name: &str,
        admin: bool,
    ) -> Result<IssuedKey> {
        Self::require_admin(p)?;
        let t = self
            .metadata
            .tenant_by_name(tenant)
            .await?
            .ok_or_else(|| Error::not_found("tenant", tenant))?;
        let key = ragplane_config::new_api_key();
        let prefix: String = key.chars().take(10).collect();
        let k = self
            .metadata
            .create_api_key(&t.id, name, &hash_key(&key), &prefix, admin)
            .await?;
        Ok(IssuedKey {
            id: k.id,
            key,
            prefix,
            tenant: t.name,
            admin,
        })
    }
}
