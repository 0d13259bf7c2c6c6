//! The model-cache claim of Deployment-backed pools.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;

use crate::model_pool::validate::ValidatedPool;

/// Name of a pool's cache claim.
pub fn cache_claim_name(pool: &str) -> String {
    format!("{pool}-model-cache")
}

/// `<pool>-model-cache`, when `spec.modelCache` is set.
pub fn build_cache_pvc(p: &ValidatedPool) -> Option<PersistentVolumeClaim> {
    let cache = p.cache.as_ref()?;
    // Several replicas on different nodes need a volume they can all mount.
    let mode = if p.desired > 1 {
        "ReadWriteMany"
    } else {
        "ReadWriteOnce"
    };
    Some(PersistentVolumeClaim {
        metadata: super::meta(p, cache_claim_name(&p.name)),
        spec: Some(cache.claim_spec(mode)),
        ..PersistentVolumeClaim::default()
    })
}
