//! Import policy: denied by default, or jailed to one library directory.
//!
//! jrsonnet's own file resolver is no jail (`importstr "/etc/hostname"` and `../` work), so this
//! resolver rejects absolute paths and `..`, and checks that the canonical path (symlinks
//! followed) is still below the canonical library directory.

use std::path::{Component, Path, PathBuf};

use jrsonnet_evaluator::error::ErrorKind;
use jrsonnet_evaluator::{AsPathLike, Error, ImportResolver, Result, SourcePath};
use jrsonnet_gcmodule::Acyclic;
use jrsonnet_ir::SourceFile;

fn denied(msg: String) -> Error {
    Error::new(ErrorKind::RuntimeError(msg.into()))
}

/// Refuses every import, saying how to allow them.
#[derive(Acyclic)]
pub(crate) struct DenyImports;

impl ImportResolver for DenyImports {
    fn resolve_from(&self, _from: &SourcePath, path: &dyn AsPathLike) -> Result<SourcePath> {
        let p = path.as_path().to_owned();
        Err(denied(format!(
            "import of {:?} denied: imports are disabled (allow a library directory with the import_dir setting, or --import-dir)",
            p.to_string()
        )))
    }

    fn load_file_contents(&self, _resolved: &SourcePath) -> Result<Vec<u8>> {
        Err(denied("imports are disabled".into()))
    }
}

/// Resolves imports inside one directory only.
#[derive(Acyclic)]
pub(crate) struct JailImports {
    /// Canonical (symlink-free, absolute) library directory.
    root: PathBuf,
}

impl JailImports {
    /// A jail at `dir`, which must exist.
    pub(crate) fn new(dir: &Path) -> std::io::Result<Self> {
        Ok(Self {
            root: dir.canonicalize()?,
        })
    }
}

impl ImportResolver for JailImports {
    fn resolve_from(&self, from: &SourcePath, path: &dyn AsPathLike) -> Result<SourcePath> {
        let requested = path.as_path();
        let rel: &Path = requested.as_ref();
        let shown = rel.display().to_string();
        if rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(denied(format!(
                "import of {shown:?} denied: only relative paths without '..' inside the import directory are allowed"
            )));
        }
        // Relative to the importing library file, else to the library root.
        let base = from
            .downcast_ref::<SourceFile>()
            .and_then(|f| f.path().parent().map(Path::to_path_buf))
            .unwrap_or_else(|| self.root.clone());
        let candidate = base.join(rel);
        let canonical = candidate.canonicalize().map_err(|e| {
            denied(format!(
                "import of {shown:?} failed: {e} (looked in {})",
                base.display()
            ))
        })?;
        if !canonical.starts_with(&self.root) {
            return Err(denied(format!(
                "import of {shown:?} denied: it resolves outside the import directory"
            )));
        }
        if !canonical.is_file() {
            return Err(denied(format!("import of {shown:?} failed: not a file")));
        }
        Ok(SourcePath::new(SourceFile::new(canonical)))
    }

    fn load_file_contents(&self, resolved: &SourcePath) -> Result<Vec<u8>> {
        let Some(file) = resolved.downcast_ref::<SourceFile>() else {
            return Err(denied(format!("cannot load {resolved}")));
        };
        std::fs::read(file.path()).map_err(|e| denied(format!("reading {resolved}: {e}")))
    }
}
