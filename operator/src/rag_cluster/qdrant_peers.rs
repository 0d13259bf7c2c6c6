//! Peers of a managed Qdrant that lost their volume.
//!
//! Such a peer starts with no Raft state and joins the running cluster (the StatefulSet's
//! script), under the URI its pod name gives it. Qdrant refuses it while the cluster still
//! lists its predecessor, the peer of that URI, holding shards: "peer URI … already used by
//! peer N which still has shards". The refusal ends the container, and the kubelet keeps the
//! end of its log as the termination message (`FallbackToLogsOnError`). Read here, it names the
//! predecessor, which is removed from the cluster with its replicas (forced: they went with the
//! volume), so that the pod's next start joins as a new peer. The Collection reconciler then
//! restores each collection's replication factor on it.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use super::validate::{qdrant_service_name, ValidatedCluster};
use crate::context::Context;
use crate::crd::rag_cluster::RagCluster;
use crate::error::Result;

/// A Qdrant pod that the cluster refused because its predecessor still holds its URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The pod.
    pub pod: String,
    /// The predecessor's peer id.
    pub peer: u64,
    /// The URI both have.
    pub uri: String,
}

/// The URI and the predecessor's id in Qdrant's refusal, wherever it is in `message`.
fn refusal(message: &str) -> Option<(String, u64)> {
    let (_, rest) = message.rsplit_once("peer URI ")?;
    let (uri, rest) = rest.split_once(" already used by peer ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((uri.trim().to_owned(), digits.parse().ok()?))
}

/// The Qdrant containers of `pods` whose current or last run ended in that refusal.
pub fn refused(pods: &[Pod]) -> Vec<Refused> {
    let mut out = Vec::new();
    for pod in pods {
        let statuses = pod
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
            .filter(|c| c.name == "qdrant");
        for c in statuses {
            let ended = [c.state.as_ref(), c.last_state.as_ref()]
                .into_iter()
                .flatten()
                .filter_map(|s| s.terminated.as_ref()?.message.as_deref());
            if let Some((uri, peer)) = ended.filter_map(refusal).next() {
                out.push(Refused {
                    pod: pod.name_any(),
                    peer,
                    uri,
                });
            }
        }
    }
    out
}

/// Whether `uri` is the p2p URI of `pod` in `domain` (Qdrant writes it with a final `/`).
fn is_pod_uri(uri: &str, pod: &str, domain: &str) -> bool {
    uri.trim_end_matches('/') == format!("http://{pod}.{domain}:6335")
}

/// Removes from `c`'s managed Qdrant the predecessors of its refused pods, found among `pods`
/// (the cluster's); returns them. A refusal is acted on only when it names the pod's own URI
/// and the cluster still lists that peer under it, so an old message is harmless.
pub async fn remove_predecessors(
    ctx: &Context,
    obj: &RagCluster,
    c: &ValidatedCluster,
    pods: &[Pod],
) -> Result<Vec<Refused>> {
    let domain = format!("{}.{}.svc", qdrant_service_name(&c.name), c.namespace);
    let candidates: Vec<Refused> = refused(pods)
        .into_iter()
        .filter(|r| is_pod_uri(&r.uri, &r.pod, &domain))
        .collect();
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let target = crate::collection::validate::qdrant_target(obj)
        .map_err(|e| crate::error::Error::InvalidSpec(e.to_string()))?;
    let Some(http_url) = &target.http_url else {
        return Ok(Vec::new());
    };
    let key = crate::collection::api_key(ctx, &c.namespace, &target).await?;
    let peers = crate::collection::qdrant::peer_uris(&ctx.http, http_url, key.as_deref()).await?;
    let mut removed = Vec::new();
    for r in candidates {
        if peers.get(&r.peer).map(|u| u.trim_end_matches('/')) != Some(r.uri.trim_end_matches('/'))
        {
            continue;
        }
        crate::collection::qdrant::remove_peer(&ctx.http, http_url, key.as_deref(), r.peer).await?;
        tracing::warn!(pod = %r.pod, peer = r.peer, uri = %r.uri,
            "removed the Qdrant peer whose pod lost its volume; the pod rejoins as a new peer");
        ctx.event(
            obj,
            true,
            "QdrantPeerReplaced",
            format!(
                "pod {} restarted without its data and was refused while peer {} still held \
                 its URI {}: removed that peer (its replicas were lost with the volume), so \
                 the pod joins as a new peer and collections are replicated onto it",
                r.pod, r.peer, r.uri
            ),
        )
        .await;
        removed.push(r);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG_END: &str = "2026-12-02T02:10:48.615482Z ERROR qdrant::startup: Panic occurred in \
        file src/main.rs at line 613: Can't initialize consensus: Failed to initialize Consensus \
        for new Raft state\n\nCaused by:\n    1: code: 'The system is not in a state required \
        for the operation's execution', message: \"peer URI \
        http://prod-qdrant-0.prod-qdrant.rag.svc:6335/ already used by peer 7820848064766548 \
        which still has shards, remove its shards first or use a different URI\"\n";

    fn pod(name: &str, last_message: Option<&str>) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "status": {"containerStatuses": [{
                "name": "qdrant", "image": "q", "imageID": "", "ready": false,
                "restartCount": 2,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 101, "message": last_message}}
            }]}
        }))
        .unwrap()
    }

    #[test]
    fn a_refused_peer_names_its_predecessor() {
        assert_eq!(
            refusal(LOG_END),
            Some((
                "http://prod-qdrant-0.prod-qdrant.rag.svc:6335/".to_owned(),
                7_820_848_064_766_548
            ))
        );
        assert_eq!(
            refusal("peer URI http://x/ already used by peer none"),
            None
        );
        assert_eq!(refusal("exit 1"), None);
        let found = refused(&[
            pod("prod-qdrant-0", Some(LOG_END)),
            pod("prod-qdrant-1", Some("killed")),
            pod("prod-qdrant-2", None),
        ]);
        assert_eq!(
            found,
            [Refused {
                pod: "prod-qdrant-0".into(),
                peer: 7_820_848_064_766_548,
                uri: "http://prod-qdrant-0.prod-qdrant.rag.svc:6335/".into(),
            }]
        );
        // Only a refusal of the pod's own URI counts.
        let domain = "prod-qdrant.rag.svc";
        assert!(is_pod_uri(&found[0].uri, "prod-qdrant-0", domain));
        assert!(!is_pod_uri(&found[0].uri, "prod-qdrant-1", domain));
    }
}
