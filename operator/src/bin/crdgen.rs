//! Writes every CRD to `crds/<plural>.yaml` and `charts/ragplane/crds/<plural>.yaml`, or to the
//! directories given as arguments.

use std::path::PathBuf;

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let mut dirs: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if dirs.is_empty() {
        dirs = ragplane_operator::crd::output_dirs();
    }
    for dir in dirs {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
        for (file, crd) in ragplane_operator::crd::all() {
            let path = dir.join(file);
            let yaml = ragplane_operator::crd::to_yaml(&crd)?;
            std::fs::write(&path, yaml)
                .with_context(|| format!("failed to write {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}
