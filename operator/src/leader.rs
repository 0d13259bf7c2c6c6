//! Leader election on a `coordination.k8s.io/v1` Lease: only the holder reconciles, so several
//! operator replicas never write the same objects at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

/// Leader-election failures.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The Lease could not be read or written.
    #[error("failed to {action} Lease {name}: {source}")]
    Kube {
        /// What was being done.
        action: &'static str,
        /// Lease name.
        name: String,
        /// Client error.
        #[source]
        source: kube::Error,
    },
}

/// One candidate for a Lease.
#[derive(Clone)]
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl LeaseLock {
    /// A candidate `identity` for Lease `name` in `namespace`, held for `duration` per renewal.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            duration,
        }
    }

    /// How long a renewal lasts.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    fn err(&self, action: &'static str) -> impl FnOnce(kube::Error) -> LeaderError + '_ {
        move |source| LeaderError::Kube {
            action,
            name: self.name.clone(),
            source,
        }
    }

    fn spec(&self, now: Timestamp, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Takes or renews the Lease. `Ok(true)` means this candidate holds it now.
    pub async fn try_acquire(&self) -> Result<bool, LeaderError> {
        let now = Timestamp::now();
        let Some(lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(self.err("read"))?
        else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, None, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(self.err("create")(e)),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let mine = holder == self.identity;
        let expired = spec.renew_time.as_ref().is_none_or(|t| {
            let secs = i64::from(spec.lease_duration_seconds.unwrap_or(0));
            t.0.as_second() + secs < now.as_second()
        });
        if !(mine || holder.is_empty() || expired) {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
        let acquired = if mine {
            spec.acquire_time.clone()
        } else {
            None
        };
        let mut next = lease.clone();
        next.spec = Some(self.spec(now, acquired, transitions));
        // `replace` carries the resourceVersion we read: a concurrent writer makes it fail with 409.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &next)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self.err("renew")(e)),
        }
    }

    /// Gives the Lease up so a standby takes over at once instead of waiting for expiry.
    pub async fn release(&self) -> Result<(), LeaderError> {
        let patch = serde_json::json!({
            "spec": {"holderIdentity": null, "renewTime": null}
        });
        let lease = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(self.err("read"))?;
        if lease
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .as_deref()
            == Some(self.identity.as_str())
        {
            self.api
                .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(self.err("release"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{mock_client, Exchange};
    use http::{Method, StatusCode};

    const PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";

    fn lock(client: Client) -> LeaseLock {
        LeaseLock::new(client, "ops", "op", "me", Duration::from_secs(15))
    }

    #[tokio::test]
    async fn creates_a_missing_lease() {
        let (client, server) = mock_client(vec![
            Exchange::not_found(Method::GET, &format!("{PATH}/op")),
            Exchange {
                status: StatusCode::CREATED,
                ..Exchange::echo(Method::POST, &format!("{PATH}?"), |body| {
                    assert_eq!(body["metadata"]["name"], "op");
                    assert_eq!(body["spec"]["holderIdentity"], "me");
                    assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
                })
            },
        ]);
        assert!(lock(client).try_acquire().await.unwrap());
        server.await.unwrap();
    }

    fn lease(holder: &str, renewed: Timestamp) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "op", "namespace": "ops", "resourceVersion": "7"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                     "renewTime": MicroTime(renewed), "leaseTransitions": 2}
        })
    }

    #[tokio::test]
    async fn a_fresh_lease_of_another_holder_is_left_alone() {
        let (client, server) = mock_client(vec![Exchange::reply(
            Method::GET,
            &format!("{PATH}/op"),
            StatusCode::OK,
            lease("other", Timestamp::now()),
        )]);
        assert!(!lock(client).try_acquire().await.unwrap());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_with_its_resource_version() {
        let old = Timestamp::now() - std::time::Duration::from_secs(60);
        let (client, server) = mock_client(vec![
            Exchange::reply(
                Method::GET,
                &format!("{PATH}/op"),
                StatusCode::OK,
                lease("other", old),
            ),
            Exchange::echo(Method::PUT, &format!("{PATH}/op"), |body| {
                assert_eq!(
                    body["metadata"]["resourceVersion"], "7",
                    "optimistic concurrency"
                );
                assert_eq!(body["spec"]["holderIdentity"], "me");
                assert_eq!(body["spec"]["leaseTransitions"], 3);
            }),
        ]);
        assert!(lock(client).try_acquire().await.unwrap());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn losing_the_race_is_not_an_error() {
        let old = Timestamp::now() - std::time::Duration::from_secs(60);
        let conflict = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "reason": "Conflict", "code": 409, "message": "conflict"});
        let (client, server) = mock_client(vec![
            Exchange::reply(
                Method::GET,
                &format!("{PATH}/op"),
                StatusCode::OK,
                lease("other", old),
            ),
            Exchange::reply(
                Method::PUT,
                &format!("{PATH}/op"),
                StatusCode::CONFLICT,
                conflict,
            ),
        ]);
        assert!(!lock(client).try_acquire().await.unwrap());
        server.await.unwrap();
    }
}
