//! The Qdrant side of a Collection: create or update, tenant index, shard replication and
//! rebalancing onto every peer, deletion and the observed layout.

use std::collections::{BTreeMap, BTreeSet};

use qdrant_client::qdrant::{
    update_collection_cluster_setup_request::Operation, CollectionClusterInfoResponse, MoveShard,
    Replica, ReplicaState, ReplicateShard, UpdateCollectionClusterSetupRequest,
};
use qdrant_client::Qdrant;

use super::build::{
    build_create_collection, build_tenant_index, build_update_collection, pending_update,
    tenant_index_missing,
};
use super::validate::ValidatedCollection;
use crate::crd::collection::ShardStatus;
use crate::error::{Error, Result};

/// What Qdrant reports after the collection was brought in line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// Whether this reconcile created the collection.
    pub created: bool,
    /// Points in the collection.
    pub points_count: Option<i64>,
    /// Shard replicas.
    pub shards: Vec<ShardStatus>,
    /// Replications started to reach the replication factor.
    pub replications_started: usize,
    /// Copies dropped because the replication factor went down.
    pub replicas_dropped: usize,
    /// Shards moved from the most loaded peers to the least loaded (peers that joined later).
    pub shards_moved: usize,
    /// Shard transfers Qdrant reports as running (this reconcile's and earlier ones').
    pub transfers_running: usize,
    /// Writes this reconcile sent: creation, an update of what differed, the tenant index,
    /// replications. None for a collection already as specified.
    pub writes: usize,
}

impl Observed {
    /// Whether the layout is still changing: replications just started or running, or a
    /// replica not yet `Active`.
    pub fn settling(&self) -> bool {
        self.replications_started > 0
            || self.replicas_dropped > 0
            || self.shards_moved > 0
            || self.transfers_running > 0
            || self.shards.iter().any(|s| s.state != "Active")
    }
}

fn qdrant_err(action: impl Into<String>) -> impl FnOnce(qdrant_client::QdrantError) -> Error {
    let action = action.into();
    move |e| Error::Qdrant {
        action,
        message: e.to_string(),
    }
}

/// A client for `url`.
pub fn connect(url: &str, api_key: Option<String>) -> Result<Qdrant> {
    Qdrant::from_url(url)
        .api_key(api_key)
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(qdrant_err(format!("connect to {url}")))
}

/// Every peer of the cluster, from Qdrant's REST API (`GET /cluster`): the gRPC API only shows
/// the peers that hold some shard of a collection, never one that joined and holds nothing yet.
/// Empty for a Qdrant without cluster mode.
pub async fn peers(
    http: &reqwest::Client,
    http_url: &str,
    api_key: Option<&str>,
) -> Result<BTreeSet<u64>> {
    Ok(peer_uris(http, http_url, api_key)
        .await?
        .into_keys()
        .collect())
}

/// Every peer of the cluster with its p2p URI, from `GET /cluster`.
pub async fn peer_uris(
    http: &reqwest::Client,
    http_url: &str,
    api_key: Option<&str>,
) -> Result<BTreeMap<u64, String>> {
    let failed = |message: String| Error::Qdrant {
        action: format!("list the peers of {http_url}"),
        message,
    };
    let mut request = http
        .get(format!("{}/cluster", http_url.trim_end_matches('/')))
        .timeout(std::time::Duration::from_secs(10));
    if let Some(key) = api_key {
        request = request.header("api-key", key);
    }
    let body: serde_json::Value = request
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| failed(e.to_string()))?
        .json()
        .await
        .map_err(|e| failed(e.to_string()))?;
    parse_peers(&body).map_err(failed)
}

/// The peers of a `GET /cluster` answer, by id, with their URIs.
fn parse_peers(body: &serde_json::Value) -> std::result::Result<BTreeMap<u64, String>, String> {
    let result = &body["result"];
    if result["status"] == "disabled" {
        return Ok(BTreeMap::new());
    }
    let peers = result["peers"]
        .as_object()
        .ok_or_else(|| format!("no result.peers in {body}"))?;
    peers
        .iter()
        .map(|(id, peer)| {
            let id = id
                .parse()
                .map_err(|_| format!("peer id {id:?} is not a number"))?;
            Ok((id, peer["uri"].as_str().unwrap_or_default().to_owned()))
        })
        .collect()
}

/// Removes peer `id` from the cluster, with its shard replicas (`force`): for a peer whose
/// volume is gone, whose replicas went with it.
pub async fn remove_peer(
    http: &reqwest::Client,
    http_url: &str,
    api_key: Option<&str>,
    id: u64,
) -> Result<()> {
    let mut request = http
        .delete(format!(
            "{}/cluster/peer/{id}?force=true",
            http_url.trim_end_matches('/')
        ))
        .timeout(std::time::Duration::from_secs(30));
    if let Some(key) = api_key {
        request = request.header("api-key", key);
    }
    request
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map(|_| ())
        .map_err(|e| Error::Qdrant {
            action: format!("remove peer {id} from {http_url}"),
            message: e.to_string(),
        })
}

/// Creates the collection, or updates what may change; indexes the tenant field; replicates
/// shards that have fewer copies than the replication factor; moves shards onto `peers` that
/// hold fewer copies than the others (peers the layout does not show are those that joined
/// later).
pub async fn ensure(
    client: &Qdrant,
    c: &ValidatedCollection,
    peers: &BTreeSet<u64>,
) -> Result<Observed> {
    let exists = client
        .collection_exists(c.name.as_str())
        .await
        .map_err(qdrant_err(format!("check collection {}", c.name)))?;
    let mut writes = 0;
    let payload_schema = if exists {
        // Only what differs is written: a steady collection costs reads only.
        let info = client
            .collection_info(c.name.as_str())
            .await
            .map_err(qdrant_err(format!("read collection {}", c.name)))?
            .result
            .unwrap_or_default();
        if let Some(update) = pending_update(build_update_collection(c), info.config.as_ref()) {
            client
                .update_collection(update)
                .await
                .map_err(qdrant_err(format!("update collection {}", c.name)))?;
            writes += 1;
        }
        info.payload_schema
    } else {
        client
            .create_collection(build_create_collection(c))
            .await
            .map_err(qdrant_err(format!("create collection {}", c.name)))?;
        writes += 1;
        Default::default()
    };
    if tenant_index_missing(c, &payload_schema) {
        if let Some(index) = build_tenant_index(c) {
            client
                .create_field_index(index)
                .await
                .map_err(qdrant_err(format!("index the tenant field of {}", c.name)))?;
            writes += 1;
        }
    }
    let layout = client
        .collection_cluster_info(c.name.as_str())
        .await
        .map_err(qdrant_err(format!("read the shard layout of {}", c.name)))?;
    let mut replications_started = 0;
    let mut replicas_dropped = 0;
    let mut shards_moved = 0;
    for op in plan_replicas(&layout, peers, c.replication_factor) {
        let what = match &op {
            Operation::DropReplica(r) => {
                replicas_dropped += 1;
                format!(
                    "drop a copy of shard {} of {} from peer {}",
                    r.shard_id, c.name, r.peer_id
                )
            }
            Operation::MoveShard(m) => {
                shards_moved += 1;
                format!(
                    "move shard {} of {} from peer {} to peer {}",
                    m.shard_id, c.name, m.from_peer_id, m.to_peer_id
                )
            }
            _ => {
                replications_started += 1;
                format!("replicate a shard of {}", c.name)
            }
        };
        client
            .update_collection_cluster_setup(UpdateCollectionClusterSetupRequest {
                collection_name: c.name.clone(),
                operation: Some(op),
                ..UpdateCollectionClusterSetupRequest::default()
            })
            .await
            .map_err(qdrant_err(what))?;
        writes += 1;
    }
    let info = client
        .collection_info(c.name.as_str())
        .await
        .map_err(qdrant_err(format!("read collection {}", c.name)))?;
    Ok(Observed {
        created: !exists,
        points_count: info
            .result
            .and_then(|r| r.points_count)
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
        shards: shard_layout(&layout),
        replications_started,
        replicas_dropped,
        shards_moved,
        transfers_running: layout.shard_transfers.len(),
        writes,
    })
}

/// Deletes the collection; a collection that is already gone is not an error.
pub async fn delete(client: &Qdrant, name: &str) -> Result<()> {
    let exists = client
        .collection_exists(name)
        .await
        .map_err(qdrant_err(format!("check collection {name}")))?;
    if exists {
        client
            .delete_collection(name)
            .await
            .map_err(qdrant_err(format!("delete collection {name}")))?;
    }
    Ok(())
}

fn state_name(state: i32) -> String {
    qdrant_client::qdrant::ReplicaState::try_from(state)
        .map_or_else(|_| format!("Unknown({state})"), |s| format!("{s:?}"))
}

/// Every shard replica, local and remote, sorted by shard then peer.
pub fn shard_layout(info: &CollectionClusterInfoResponse) -> Vec<ShardStatus> {
    let mut shards: Vec<ShardStatus> = info
        .local_shards
        .iter()
        .map(|s| ShardStatus {
            shard_id: i32::try_from(s.shard_id).unwrap_or(i32::MAX),
            peer_id: info.peer_id.to_string(),
            state: state_name(s.state),
        })
        .chain(info.remote_shards.iter().map(|s| ShardStatus {
            shard_id: i32::try_from(s.shard_id).unwrap_or(i32::MAX),
            peer_id: s.peer_id.to_string(),
            state: state_name(s.state),
        }))
        .collect();
    shards.sort_by(|a, b| (a.shard_id, &a.peer_id).cmp(&(b.shard_id, &b.peer_id)));
    shards
}

/// What it takes to give every shard `factor` live copies: replications to peers that hold no
/// copy of it yet (preferring the peers holding the fewest), and, when the factor went down,
/// dropped copies (from the most loaded peers). A `Dead` copy does not count toward the factor,
/// and its peer gets no new copy while it holds one; the last live copy is never dropped.
/// Shards already being transferred are left alone.
///
/// `peers` adds the peers the layout cannot show, those holding no copy at all. Once every
/// shard has its copies, all `Active`, and nothing is being transferred, [`plan_moves`] evens
/// out the copies per peer.
pub fn plan_replicas(
    info: &CollectionClusterInfoResponse,
    peers: &BTreeSet<u64>,
    factor: u32,
) -> Vec<Operation> {
    let dead = ReplicaState::Dead as i32;
    let active = ReplicaState::Active as i32;
    // Every copy by shard: (peer, live).
    let mut copies: BTreeMap<u32, BTreeMap<u64, bool>> = BTreeMap::new();
    let mut load: BTreeMap<u64, usize> = peers.iter().map(|p| (*p, 0)).collect();
    load.entry(info.peer_id).or_default();
    let mut all_active = true;
    // A peer holding a dead copy may be down: it gets no new copy until that copy recovers.
    let mut suspect: BTreeSet<u64> = BTreeSet::new();
    let replicas = info
        .local_shards
        .iter()
        .map(|s| (s.shard_id, info.peer_id, s.state))
        .chain(
            info.remote_shards
                .iter()
                .map(|s| (s.shard_id, s.peer_id, s.state)),
        );
    for (shard, peer, state) in replicas {
        copies.entry(shard).or_default().insert(peer, state != dead);
        *load.entry(peer).or_default() += 1;
        all_active &= state == active;
        if state == dead {
            suspect.insert(peer);
        }
    }

    let busy: BTreeSet<u32> = info.shard_transfers.iter().map(|t| t.shard_id).collect();
    let factor = factor as usize;
    let mut ops = Vec::new();
    for (shard, peers) in &copies {
        if busy.contains(shard) {
            continue;
        }
        let mut live: Vec<u64> = peers.iter().filter(|(_, l)| **l).map(|(p, _)| *p).collect();
        let Some(&from) = live.first() else {
            continue; // no live copy to copy from: only Qdrant's own recovery can help
        };
        while live.len() < factor {
            let Some(to) = load
                .iter()
                .filter(|(p, _)| {
                    !peers.contains_key(p) && !live.contains(p) && !suspect.contains(p)
                })
                .min_by_key(|(p, n)| (**n, **p))
                .map(|(p, _)| *p)
            else {
                break; // fewer healthy peers than the factor: nothing more can be placed
            };
            ops.push(Operation::ReplicateShard(ReplicateShard {
                shard_id: *shard,
                from_peer_id: from,
                to_peer_id: to,
                ..ReplicateShard::default()
            }));
            live.push(to);
            *load.entry(to).or_default() += 1;
        }
        while live.len() > factor.max(1) {
            // The most loaded peer gives its copy up (the higher id on a tie).
            let Some(pos) = live
                .iter()
                .enumerate()
                .max_by_key(|(_, p)| (load.get(p).copied().unwrap_or(0), **p))
                .map(|(i, _)| i)
            else {
                break;
            };
            let peer = live.swap_remove(pos);
            ops.push(Operation::DropReplica(Replica {
                shard_id: *shard,
                peer_id: peer,
            }));
            if let Some(n) = load.get_mut(&peer) {
                *n = n.saturating_sub(1);
            }
        }
    }
    // Every copy `Active` also means no peer is suspect.
    if ops.is_empty() && busy.is_empty() && all_active {
        ops = plan_moves(&copies, &load);
    }
    ops
}

/// Moves that even out the copies per peer: while the most loaded peer holds two or more
/// copies more than the least loaded one, it hands that peer one of its shards (one the other
/// holds no copy of). Each peer takes part in at most one move per pass, so transfers never
/// pile up on a peer; the next reconcile, once they are done, plans the next ones.
fn plan_moves(
    copies: &BTreeMap<u32, BTreeMap<u64, bool>>,
    load: &BTreeMap<u64, usize>,
) -> Vec<Operation> {
    let mut load = load.clone();
    let mut ops = Vec::new();
    let mut moved: BTreeSet<u32> = BTreeSet::new();
    // Peers already sending or receiving a shard in this plan: one transfer each at a time.
    let mut engaged: BTreeSet<u64> = BTreeSet::new();
    loop {
        let free = |p: &u64| !engaged.contains(p);
        // The most loaded free peer (the lower id on a tie), and the least loaded (likewise).
        let Some((&from, &most)) = load
            .iter()
            .filter(|(p, _)| free(p))
            .max_by_key(|(p, n)| (**n, std::cmp::Reverse(**p)))
        else {
            break;
        };
        let Some((&to, &fewest)) = load
            .iter()
            .filter(|(p, _)| free(p) && **p != from)
            .min_by_key(|(p, n)| (**n, **p))
        else {
            break;
        };
        if most < fewest + 2 {
            break;
        }
        let Some(shard) = copies.iter().find_map(|(shard, peers)| {
            (peers.get(&from) == Some(&true) && !peers.contains_key(&to) && !moved.contains(shard))
                .then_some(*shard)
        }) else {
            break;
        };
        ops.push(Operation::MoveShard(MoveShard {
            shard_id: shard,
            from_peer_id: from,
            to_peer_id: to,
            ..MoveShard::default()
        }));
        moved.insert(shard);
        engaged.extend([from, to]);
        *load.entry(from).or_default() -= 1;
        *load.entry(to).or_default() += 1;
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use qdrant_client::qdrant::{LocalShardInfo, RemoteShardInfo};

    fn layout() -> CollectionClusterInfoResponse {
        // Two shards, one copy each, on a three-peer cluster.
        CollectionClusterInfoResponse {
            peer_id: 1,
            shard_count: 2,
            local_shards: vec![LocalShardInfo {
                shard_id: 0,
                points_count: 10,
                state: 0,
                ..LocalShardInfo::default()
            }],
            remote_shards: vec![
                RemoteShardInfo {
                    shard_id: 1,
                    peer_id: 2,
                    state: 0,
                    ..RemoteShardInfo::default()
                },
                RemoteShardInfo {
                    shard_id: 1,
                    peer_id: 3,
                    state: 0,
                    ..RemoteShardInfo::default()
                },
            ],
            ..CollectionClusterInfoResponse::default()
        }
    }

    fn replications(ops: &[Operation]) -> Vec<&ReplicateShard> {
        ops.iter()
            .filter_map(|o| match o {
                Operation::ReplicateShard(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    fn moves(ops: &[Operation]) -> Vec<(u32, u64, u64)> {
        ops.iter()
            .filter_map(|o| match o {
                Operation::MoveShard(m) => Some((m.shard_id, m.from_peer_id, m.to_peer_id)),
                _ => None,
            })
            .collect()
    }

    fn remote(shard_id: u32, peer_id: u64) -> RemoteShardInfo {
        RemoteShardInfo {
            shard_id,
            peer_id,
            state: ReplicaState::Active as i32,
            ..RemoteShardInfo::default()
        }
    }

    /// Three shards of one copy on peers 1 and 2 (two on peer 1).
    fn crowded() -> CollectionClusterInfoResponse {
        CollectionClusterInfoResponse {
            peer_id: 1,
            shard_count: 3,
            local_shards: [0, 1]
                .map(|shard_id| LocalShardInfo {
                    shard_id,
                    state: ReplicaState::Active as i32,
                    ..LocalShardInfo::default()
                })
                .to_vec(),
            remote_shards: vec![remote(2, 2)],
            ..CollectionClusterInfoResponse::default()
        }
    }

    #[test]
    fn peers_are_read_from_the_cluster_answer() {
        let body = serde_json::json!({"result": {"status": "enabled", "peer_id": 7,
            "peers": {"7": {"uri": "http://a:6335/"}, "12": {"uri": "http://b:6335/"}}}});
        assert_eq!(
            parse_peers(&body),
            Ok(BTreeMap::from([
                (7, "http://a:6335/".to_owned()),
                (12, "http://b:6335/".to_owned())
            ]))
        );
        let single = serde_json::json!({"result": {"status": "disabled"}});
        assert_eq!(parse_peers(&single), Ok(BTreeMap::new()));
        assert!(parse_peers(&serde_json::json!({"status": "error"})).is_err());
    }

    #[test]
    fn a_peer_that_joined_later_gets_shards_moved_onto_it() {
        let peers = BTreeSet::from([1, 2, 3]);
        let ops = plan_replicas(&crowded(), &peers, 1);
        assert_eq!(moves(&ops), [(0, 1, 3)], "{ops:?}");
        assert!(replications(&ops).is_empty() && drops(&ops).is_empty());
        // Without the peer list the layout looks even enough (2 and 1): nothing moves.
        assert!(plan_replicas(&crowded(), &BTreeSet::new(), 1).is_empty());
    }

    #[test]
    fn moves_wait_for_the_layout_to_settle() {
        let peers = BTreeSet::from([1, 2, 3]);
        let mut busy = crowded();
        busy.shard_transfers.push(Default::default());
        assert!(moves(&plan_replicas(&busy, &peers, 1)).is_empty());
        let mut partial = crowded();
        partial.remote_shards[0].state = ReplicaState::Partial as i32;
        assert!(moves(&plan_replicas(&partial, &peers, 1)).is_empty());
        // Missing copies come first; the move waits for the next pass.
        let ops = plan_replicas(&crowded(), &peers, 2);
        assert_eq!(replications(&ops).len(), 3, "{ops:?}");
        assert!(moves(&ops).is_empty(), "{ops:?}");
    }

    #[test]
    fn a_balanced_layout_moves_nothing_and_each_peer_moves_once_per_pass() {
        let mut even = crowded();
        even.local_shards.pop();
        even.remote_shards.push(remote(1, 3));
        assert!(plan_replicas(&even, &BTreeSet::from([1, 2, 3]), 1).is_empty());
        // Four shards on peer 1, two new peers: one move to each, from peer 1 only once.
        let mut heavy = crowded();
        heavy.remote_shards.clear();
        heavy.local_shards = (0..4)
            .map(|shard_id| LocalShardInfo {
                shard_id,
                state: ReplicaState::Active as i32,
                ..LocalShardInfo::default()
            })
            .collect();
        let ops = plan_replicas(&heavy, &BTreeSet::from([1, 2, 3]), 1);
        assert_eq!(moves(&ops), [(0, 1, 2)], "{ops:?}");
    }

    #[test]
    fn raising_the_factor_prefers_peers_holding_nothing() {
        let ops = plan_replicas(&layout(), &BTreeSet::from([1, 2, 3, 4]), 2);
        let r = replications(&ops);
        assert_eq!(r.len(), 1, "{ops:?}");
        assert_eq!((r[0].shard_id, r[0].to_peer_id), (0, 4));
    }

    fn drops(ops: &[Operation]) -> Vec<(u32, u64)> {
        ops.iter()
            .filter_map(|o| match o {
                Operation::DropReplica(r) => Some((r.shard_id, r.peer_id)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn raising_the_factor_replicates_to_peers_without_the_shard() {
        let ops = plan_replicas(&layout(), &BTreeSet::new(), 2);
        let ops = replications(&ops);
        assert_eq!(ops.len(), 1, "{ops:?}");
        assert_eq!((ops[0].shard_id, ops[0].from_peer_id), (0, 1));
        assert!(ops[0].to_peer_id == 2 || ops[0].to_peer_id == 3);
        // Factor 4 on three peers: every shard ends up on all three, a fourth copy has no place.
        let ops = plan_replicas(&layout(), &BTreeSet::new(), 4);
        let ops = replications(&ops);
        assert_eq!(ops.len(), 3, "{ops:?}");
        assert!(ops.iter().all(|o| o.from_peer_id != o.to_peer_id));
    }

    #[test]
    fn lowering_the_factor_drops_copies_from_the_most_loaded_peers() {
        // Shard 1 has copies on peers 2 and 3; factor 1 drops one, never the last.
        let ops = plan_replicas(&layout(), &BTreeSet::new(), 1);
        assert!(replications(&ops).is_empty());
        assert_eq!(drops(&ops), [(1, 3)], "{ops:?}");
        assert_eq!(
            plan_replicas(&layout(), &BTreeSet::new(), 0).len(),
            1,
            "one live copy always stays"
        );
    }

    #[test]
    fn a_peer_holding_a_dead_copy_gets_no_new_copy() {
        let mut l = layout();
        l.remote_shards[1].state = ReplicaState::Dead as i32;
        // Peer 4 holds nothing but is the only place for shard 0's second copy besides the
        // suspect peer 3 and peer 2: peer 3 is never chosen.
        let ops = plan_replicas(&l, &BTreeSet::from([1, 2, 3, 4]), 3);
        assert!(
            replications(&ops).iter().all(|r| r.to_peer_id != 3),
            "{ops:?}"
        );
        assert!(moves(&ops).is_empty(), "{ops:?}");
    }

    #[test]
    fn dead_copies_do_not_count_toward_the_factor() {
        let mut l = layout();
        l.remote_shards[1].state = qdrant_client::qdrant::ReplicaState::Dead as i32;
        // Shard 1 has one live copy (peer 2) and a dead one (peer 3): factor 2 needs another,
        // on a peer without any copy of the shard (peer 1).
        let ops = plan_replicas(&l, &BTreeSet::new(), 2);
        let r = replications(&ops);
        assert!(
            r.iter()
                .any(|o| o.shard_id == 1 && o.from_peer_id == 2 && o.to_peer_id == 1),
            "{ops:?}"
        );
        assert!(drops(&ops).is_empty());
    }

    #[test]
    fn layout_lists_local_and_remote_replicas() {
        let shards = shard_layout(&layout());
        assert_eq!(shards.len(), 3);
        assert_eq!(
            (
                shards[0].shard_id,
                shards[0].peer_id.as_str(),
                shards[0].state.as_str()
            ),
            (0, "1", "Active")
        );
    }
}
