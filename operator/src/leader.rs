//! Leader election on a `coordination.k8s.io/v1` Lease: only the holder reconciles, so several
//! operator replicas never write the same objects at once.
//!
//! The Lease protocol (server-side apply with conflict detection, renewal ahead of expiry,
//! taking over an expired Lease, release on shutdown) is `kube-lease-manager`'s; this module
//! fixes the operator's timings and turns the manager's changes into the two moments the
//! operator cares about: becoming leader, and losing the Lease.
//!
//! Losing includes failing to renew. The manager's own watch loop logs a failed renewal and
//! retries, still reporting the holder as leader, so a holder cut off from the API server would
//! go on reconciling after its Lease expired and a standby took it. Here the holder gives up at
//! the first renewal (or read of the Lease) that fails, as client-go's election does when its
//! renew deadline passes: it cannot know it still holds the Lease. Requests for the Lease time
//! out after the grace period ([`LeaseConfig::request_timeout`]), so a hung API server is a
//! failure in time too.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
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
    /// Holding the Lease, this candidate failed to renew it (or to read it).
    #[error("cannot renew the leader Lease {name}, so stopped leading: {source}")]
    NotRenewed {
        /// Lease name.
        name: String,
        /// The manager's error.
        #[source]
        source: LeaseManagerError,
    },
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

    /// How long one request for the Lease may take: the grace period, since a renewal that
    /// takes longer ends after the Lease has expired.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.grace_secs())
    }
}

/// How long a candidate that is not leader waits before retrying after a failed request, at
/// first and at most.
const RETRY: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

/// Drives `manager`: sends each change of leadership on `state`; while leading, the first
/// failure ends the candidacy with that error; releases the Lease once every receiver is gone.
async fn drive(
    manager: LeaseManager,
    state: watch::Sender<bool>,
    name: String,
) -> Result<LeaseManager, LeaseManagerError> {
    let mut retry = RETRY.0;
    loop {
        tokio::select! {
            biased;
            () = state.closed() => {
                manager.release().await?;
                return Ok(manager);
            }
            changed = manager.changed() => match changed {
                Ok(leader) => {
                    retry = RETRY.0;
                    if state.send(leader).is_err() {
                        manager.release().await?;
                        return Ok(manager);
                    }
                }
                Err(e) if *state.borrow() => {
                    tracing::error!(lease = %name, error = %e,
                        "cannot renew the leader Lease; no longer leader");
                    let _ = state.send(false);
                    return Err(e);
                }
                Err(e) => {
                    tracing::warn!(lease = %name, error = %e, retry_secs = retry.as_secs(),
                        "leader election request failed; retrying");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY.1);
                }
            }
        }
    }
}

/// A running candidacy for the Lease.
pub struct Candidate {
    name: String,
    state: watch::Receiver<bool>,
    /// The task driving the manager, until [`Candidate::lost`] has read how it ended.
    task: Option<JoinHandle<Result<LeaseManager, LeaseManagerError>>>,
}

impl Candidate {
    /// Starts competing for the Lease in the background, creating it if it does not exist.
    /// `client` should time its requests out after [`LeaseConfig::request_timeout`].
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
        let (sender, state) = watch::channel(false);
        let task = tokio::spawn(drive(manager, sender, config.name.clone()));
        Ok(Self {
            name: config.name.clone(),
            state,
            task: Some(task),
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

    /// Resolves when the Lease is lost: another candidate took it, this one could not renew
    /// it, or the manager stopped.
    pub async fn lost(&mut self) -> LeaderError {
        let flipped = self.state.wait_for(|leader| !*leader).await.is_ok();
        // A failed renewal ends the task right after it reports the loss.
        let task = self.task.as_mut().filter(|t| t.is_finished() || flipped);
        if let Some(task) = task {
            if let Ok(joined) = tokio::time::timeout(Duration::from_secs(1), task).await {
                self.task = None;
                if let Ok(Err(source)) = joined {
                    return LeaderError::NotRenewed {
                        name: self.name.clone(),
                        source,
                    };
                }
            }
        }
        if flipped {
            LeaderError::Lost(self.name.clone())
        } else {
            LeaderError::Stopped(self.name.clone())
        }
    }

    /// Gives the Lease up, so a standby takes over at once instead of waiting for expiry.
    pub async fn release(self) -> Result<(), LeaderError> {
        // Closing the state channel makes the manager release the Lease and return.
        drop(self.state);
        let Some(task) = self.task else {
            return Ok(());
        };
        match task.await {
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
