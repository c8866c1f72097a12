//! The template files a configuration reads, stamped (modification time and size) so `courier
//! serve` can tell, once a second and off the hot path, that one changed on disk: channel bodies,
//! `courier.templates` file URIs, and every file under `courier.template_override_path`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use jsonnet_courier::config::Config;
use jsonnet_courier::template::source::TemplateUri;

/// Files looked at below the override folder at most: a folder of templates, not a disk.
const MAX_OVERRIDE_FILES: usize = 2000;

/// A file's path and, when it exists, its modification time and size.
pub(crate) type Stamp = (PathBuf, Option<(SystemTime, u64)>);

/// The stamps of every template file of `config`, in a stable order (so two stamps compare
/// equal exactly when no file changed, appeared or went away).
pub(crate) fn stamps(config: &Config) -> Vec<Stamp> {
    let uris = config
        .channels
        .iter()
        .filter_map(|c| c.body.as_deref())
        .chain(config.templates.uris.values().map(|s| s.uri.as_str()));
    let mut out: Vec<Stamp> = uris
        .filter_map(|uri| match TemplateUri::parse(uri, None) {
            Ok(TemplateUri::File(p) | TemplateUri::BarePath(p)) => Some(p),
            _ => None,
        })
        .map(|path| {
            // Resolved as the template loader resolves it: the working directory, else
            // beside the config file.
            let beside = config.base_dir.as_ref().map(|b| b.join(&path));
            let meta = stamp(&path).or_else(|| beside.as_deref().and_then(stamp));
            (path, meta)
        })
        .collect();
    if let Some(dir) = &config.templates.override_dir {
        let mut files = Vec::new();
        walk(dir, 0, &mut files);
        files.sort();
        out.extend(files.into_iter().map(|p| {
            let meta = stamp(&p);
            (p, meta)
        }));
    }
    out
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The files below `dir` (the override layout is `<type folder>/<file>`; two levels deep at most
/// beyond that), up to [`MAX_OVERRIDE_FILES`].
fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        if out.len() >= MAX_OVERRIDE_FILES {
            return;
        }
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() && depth < 3 => walk(&path, depth + 1, out),
            Ok(t) if !t.is_dir() => out.push(path),
            _ => {}
        }
    }
}
