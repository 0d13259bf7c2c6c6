//! Pod and container security settings shared by every workload the operator creates. They
//! pass the Pod Security "restricted" level, so the operator's pods run in namespaces labelled
//! `pod-security.kubernetes.io/enforce=restricted`.

use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, SeccompProfile, SecurityContext,
};

/// UID and GID of the data-plane image's user.
pub const DATA_PLANE_UID: i64 = 65532;
/// UID and GID of Qdrant's unprivileged image.
pub const QDRANT_UID: i64 = 1000;

/// A pod that runs as `uid` (never root), with the runtime's default seccomp profile; volumes
/// are made writable for the group `uid`.
pub fn restricted_pod(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: Some(uid),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

/// A container without capabilities that cannot gain privileges; with `read_only_root`, its
/// root filesystem is read-only too (for images that write only to volumes).
pub fn restricted_container(read_only_root: bool) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(read_only_root),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        ..SecurityContext::default()
    }
}
