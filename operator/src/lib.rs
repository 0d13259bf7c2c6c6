//! `ragplane-operator`: reconciles RagCluster, ModelPool and Collection resources into Kubernetes
//! objects and Qdrant collections.

pub mod apply;
pub mod autoscale;
pub mod collection;
pub mod conditions;
pub mod context;
pub mod crd;
pub mod error;
#[cfg(test)]
pub mod fixtures;
pub mod http;
pub mod labels;
pub mod leader;
pub mod metrics;
pub mod model_pool;
pub mod rag_cluster;
pub mod reconciler;
pub mod rollout;
pub mod security;
