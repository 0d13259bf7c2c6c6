//! Writes every CRD to `crds/<plural>.yaml` and, as Helm templates, to
//! `charts/ragplane/templates/crds/<plural>.yaml`; or, plain, to the directories given as
//! arguments.

use std::path::PathBuf;

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    use ragplane_operator::crd::Form;
    let mut dirs: Vec<(PathBuf, Form)> = std::env::args_os()
        .skip(1)
        .map(|d| (PathBuf::from(d), Form::Plain))
        .collect();
    if dirs.is_empty() {
        dirs = ragplane_operator::crd::output_dirs();
    }
    for (dir, form) in dirs {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
        for (file, crd) in ragplane_operator::crd::all() {
            let path = dir.join(file);
            let yaml = ragplane_operator::crd::render(&crd, form)?;
            std::fs::write(&path, yaml)
                .with_context(|| format!("failed to write {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}
