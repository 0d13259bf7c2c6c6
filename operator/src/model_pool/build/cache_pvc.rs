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
    // The mode the spec declares, never one derived from the replica count: a claim's access
    // mode cannot change, so a mode that followed scaling would end in a permanent 422. The
    // CRD refuses ReadWriteOnce with more than one replica instead.
    Some(PersistentVolumeClaim {
        metadata: super::meta(p, cache_claim_name(&p.name)),
        spec: Some(cache.storage().claim_spec(cache.access_mode.as_str())),
        ..PersistentVolumeClaim::default()
    })
}
