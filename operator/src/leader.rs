//! Leader election on a `coordination.k8s.io/v1` Lease: only the holder reconciles, so several
//! operator replicas never write the same objects at once.
//!
//! The Lease protocol (server-side apply with conflict detection, renewal ahead of expiry,
//! taking over an expired Lease, release on shutdown) is `kube-lease-manager`'s; this module
//! fixes the operator's timings and turns the manager's state channel into the two moments
//! the operator cares about: becoming leader, and losing the Lease.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Leader-election failures.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The Lease could not be read or written.
    #[error("leader election on Lease {name} failed: {source}")]
    Lease {
        /// Lease name.
        name: String,
        /// The manager's error.
        #[source]
        source: LeaseManagerError,
    },
    /// Another candidate holds the Lease this one held.
    #[error("lost the leader Lease {0}")]
    Lost(String),
    /// The manager stopped while this candidate still waited or held the Lease.
    #[error("the leader election of Lease {0} stopped")]
    Stopped(String),
}

/// Where the Lease lives and how long one renewal holds it.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Lease name; candidates of one operator share it.
    pub name: String,
    /// This candidate's identity in the Lease (the pod name in a cluster).
    pub identity: String,
    /// How long one renewal holds the Lease.
    pub duration: Duration,
}

impl LeaseConfig {
    /// Seconds before expiry at which the holder renews: a third of the duration, at least 1.
    /// The same margin is the clock skew between nodes the election tolerates.
    pub fn grace_secs(&self) -> u64 {
        (self.duration.as_secs() / 3).max(1)
    }

    /// The duration in whole seconds, at least one more than the grace.
    pub fn duration_secs(&self) -> u64 {
        self.duration.as_secs().max(self.grace_secs() + 1)
    }
}

/// A running candidacy for the Lease.
pub struct Candidate {
    name: String,
    state: watch::Receiver<bool>,
    task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

impl Candidate {
    /// Starts competing for the Lease in the background, creating it if it does not exist.
    pub async fn start(client: Client, config: &LeaseConfig) -> Result<Self, LeaderError> {
        let manager = LeaseManagerBuilder::new(client, &config.name)
            .with_namespace(&config.namespace)
            .with_identity(&config.identity)
            .with_duration(config.duration_secs())
            .with_grace(config.grace_secs())
            .with_field_manager(format!("ragplane-operator-{}", config.identity))
            .build()
            .await
            .map_err(|source| LeaderError::Lease {
                name: config.name.clone(),
                source,
            })?;
        let (state, task) = manager.watch().await;
        Ok(Self {
            name: config.name.clone(),
            state,
            task,
        })
    }

    /// Resolves once this candidate holds the Lease.
    pub async fn acquired(&mut self) -> Result<(), LeaderError> {
        self.state
            .wait_for(|leader| *leader)
            .await
            .map(|_| ())
            .map_err(|_| LeaderError::Stopped(self.name.clone()))
    }

    /// Resolves when the Lease is lost: another candidate took it, or the manager stopped.
    pub async fn lost(&mut self) -> LeaderError {
        match self.state.wait_for(|leader| !*leader).await {
            Ok(_) => LeaderError::Lost(self.name.clone()),
            Err(_) => LeaderError::Stopped(self.name.clone()),
        }
    }

    /// Gives the Lease up, so a standby takes over at once instead of waiting for expiry.
    pub async fn release(self) -> Result<(), LeaderError> {
        // Closing the state channel makes the manager release the Lease and return.
        drop(self.state);
        match self.task.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(source)) => Err(LeaderError::Lease {
                name: self.name,
                source,
            }),
            Err(_) => Err(LeaderError::Stopped(self.name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(secs: u64) -> LeaseConfig {
        LeaseConfig {
            namespace: "ns".into(),
            name: "lease".into(),
            identity: "me".into(),
            duration: Duration::from_secs(secs),
        }
    }

    #[test]
    fn the_holder_renews_a_third_of_the_duration_before_expiry() {
        assert_eq!(
            (config(15).duration_secs(), config(15).grace_secs()),
            (15, 5)
        );
        assert_eq!((config(4).duration_secs(), config(4).grace_secs()), (4, 1));
        // A duration too short to renew ahead of expiry is lengthened, never left at zero grace.
        assert_eq!((config(1).duration_secs(), config(1).grace_secs()), (2, 1));
        assert_eq!((config(0).duration_secs(), config(0).grace_secs()), (2, 1));
    }
}
