//! `ragplane-operator`: reconciles ragplane's custom resources into Kubernetes objects.
//!
//! The controllers land with the operator work; until then the binary only reports the
//! configuration schema version it renders.

fn main() {
    let defaults = ragplane_config::Config::default();
    println!(
        "ragplane-operator {} (renders data-plane config; default listen {})",
        env!("CARGO_PKG_VERSION"),
        defaults.server.listen
    );
}
