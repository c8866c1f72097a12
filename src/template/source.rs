//! Template URIs: `file://`, `base64://`, `http://`, `https://`, and (deprecated) bare paths.
//!
//! A [`Loader`] reads each URI once and hands out the same [`Template`] for it afterwards, so a
//! remote template is fetched once per load (the reference re-fetches it on every send) and
//! engines compile it once. It keeps what the server said about each remote copy
//! ([`RemoteCopy`]), so `courier serve` can refresh it when it expires (see [`super::remote`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;

use super::remote::{self, Fetched, Validators};
use super::Template;
use crate::http::{self, HttpClient};

/// The schemes a template URI may use.
pub const SCHEMES: &str = "file://, base64://, http://, https://";

/// Largest template accepted from a remote server.
pub const MAX_REMOTE_BYTES: usize = 1024 * 1024;

/// How long a remote template fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// A remote template as loaded: its text and what the server said about it.
#[derive(Debug, Clone)]
pub struct RemoteCopy {
    /// The template text as served.
    pub source: String,
    /// The validators for the next, conditional, fetch.
    pub validators: Validators,
    /// How long the server said the copy is good.
    pub fresh_for: Duration,
}

/// A parsed template URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateUri {
    /// `file://` with an absolute path, or a relative one resolved against the base directory.
    File(PathBuf),
    /// `base64://` with the standard alphabet.
    Base64(String),
    /// `http://` or `https://`.
    Remote(String),
    /// A path with no scheme: accepted for compatibility, deprecated.
    BarePath(PathBuf),
}

/// A template that could not be read. Messages name the URI (without credentials or query).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The URI has a scheme this version does not read.
    #[error("template {uri:?}: unsupported scheme {scheme:?}; use one of {SCHEMES}")]
    UnknownScheme {
        /// The URI, redacted.
        uri: String,
        /// The scheme found.
        scheme: String,
    },
    /// Reading a file failed.
    #[error("template {path}: {source}")]
    Io {
        /// The resolved path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The base64 text does not decode.
    #[error("template {uri:?}: invalid base64 (standard alphabet, padded): {reason}")]
    Base64 {
        /// The URI, shortened.
        uri: String,
        /// The decoder's complaint.
        reason: String,
    },
    /// The template is not UTF-8 text.
    #[error("template {uri:?}: not UTF-8 text")]
    NotUtf8 {
        /// The URI, redacted.
        uri: String,
    },
    /// Fetching a remote template failed.
    #[error("template {uri:?}: fetch failed: {source}")]
    Fetch {
        /// The URL, redacted.
        uri: String,
        /// The cause.
        #[source]
        source: http::FetchError,
    },
    /// The URI is empty.
    #[error("template URI is empty; use one of {SCHEMES}")]
    Empty,
}

impl TemplateUri {
    /// Parses `uri`, resolving relative `file://` and bare paths against `base_dir` (or the
    /// current directory when `None`).
    ///
    /// # Errors
    /// An empty URI or an unknown scheme.
    pub fn parse(uri: &str, base_dir: Option<&Path>) -> Result<Self, SourceError> {
        let uri = uri.trim();
        if uri.is_empty() {
            return Err(SourceError::Empty);
        }
        let resolve = |p: &str| {
            let path = Path::new(p);
            match base_dir {
                Some(base) if path.is_relative() => base.join(path),
                _ => path.to_path_buf(),
            }
        };
        if let Some(rest) = uri.strip_prefix("file://") {
            return Ok(Self::File(resolve(rest)));
        }
        if let Some(rest) = uri.strip_prefix("base64://") {
            return Ok(Self::Base64(rest.to_owned()));
        }
        if uri.starts_with("http://") || uri.starts_with("https://") {
            return Ok(Self::Remote(uri.to_owned()));
        }
        if let Some((scheme, _)) = uri.split_once("://") {
            return Err(SourceError::UnknownScheme {
                uri: redact(uri),
                scheme: scheme.to_owned(),
            });
        }
        Ok(Self::BarePath(resolve(uri)))
    }
}

/// Drops userinfo and query from a URL, and shortens long base64 text, for display.
pub fn redact(uri: &str) -> String {
    if let Some(rest) = uri.strip_prefix("base64://") {
        let head: String = rest.chars().take(12).collect();
        return if rest.len() > 12 {
            format!("base64://{head}…")
        } else {
            uri.to_owned()
        };
    }
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_owned();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.rsplit('@').next().unwrap_or(authority);
    format!("{scheme}://{host}{path}")
}

/// Reads template URIs, each once.
pub struct Loader {
    base_dir: Option<PathBuf>,
    cache: Mutex<HashMap<String, Template>>,
    remotes: Mutex<HashMap<String, RemoteCopy>>,
    client: Mutex<Option<HttpClient>>,
    fetch_timeout: Duration,
}

impl Loader {
    /// A loader resolving relative paths against the working directory, falling back to
    /// `base_dir` (the config file's directory) for files found only there.
    pub fn new(base_dir: Option<PathBuf>) -> Self {
        Self {
            base_dir,
            cache: Mutex::new(HashMap::new()),
            remotes: Mutex::new(HashMap::new()),
            client: Mutex::new(None),
            fetch_timeout: FETCH_TIMEOUT,
        }
    }

    /// Where a template path is read from: relative paths resolve against the working directory,
    /// as in the reference; a file found only beside the config file is used from there, with a
    /// warning (each URI is read once per loader, so it warns once).
    fn locate(&self, uri: &str, path: PathBuf) -> PathBuf {
        let Some(base) = self.base_dir.as_deref().filter(|_| path.is_relative()) else {
            return path;
        };
        let beside = base.join(&path);
        if path.exists() || !beside.exists() {
            return path;
        }
        tracing::warn!(
            "template {uri:?} is not in the working directory; using {} beside the config file \
             (the reference resolves relative paths against the working directory only)",
            beside.display()
        );
        beside
    }

    /// The template at `uri`, read on first use and cached afterwards.
    ///
    /// # Errors
    /// See [`SourceError`]; the message names the URI.
    pub async fn load(&self, uri: &str) -> Result<Template, SourceError> {
        if let Some(t) = self.cache.lock().ok().and_then(|c| c.get(uri).cloned()) {
            return Ok(t);
        }
        let parsed = TemplateUri::parse(uri, None)?;
        let template = match parsed {
            TemplateUri::File(path) => read_file(&self.locate(uri, path))?,
            TemplateUri::BarePath(path) => {
                tracing::warn!(
                    "template {:?} has no scheme: bare paths are deprecated, write file://{}",
                    uri,
                    uri
                );
                read_file(&self.locate(uri, path))?
            }
            TemplateUri::Base64(text) => {
                let shown = redact(uri);
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|e| SourceError::Base64 {
                        uri: shown.clone(),
                        reason: e.to_string(),
                    })?;
                let code = String::from_utf8(bytes)
                    .map_err(|_| SourceError::NotUtf8 { uri: shown.clone() })?;
                Template::new(shown, code)
            }
            TemplateUri::Remote(url) => {
                let shown = redact(&url);
                let client = self
                    .client
                    .lock()
                    .map(|mut c| {
                        c.get_or_insert_with(|| http::client(self.fetch_timeout))
                            .clone()
                    })
                    .unwrap_or_else(|_| http::client(self.fetch_timeout));
                let fetched =
                    remote::fetch(&client, &url, self.fetch_timeout, MAX_REMOTE_BYTES, None)
                        .await
                        .map_err(|source| SourceError::Fetch {
                            uri: shown.clone(),
                            source,
                        })?;
                // An unconditional GET is answered 200 or fails: `fetch` refuses a 304 then.
                let Fetched::Modified {
                    body,
                    validators,
                    fresh_for,
                } = fetched
                else {
                    return Err(SourceError::Fetch {
                        uri: shown,
                        source: http::FetchError::Status(hyper::StatusCode::NOT_MODIFIED),
                    });
                };
                let code = String::from_utf8(body.to_vec())
                    .map_err(|_| SourceError::NotUtf8 { uri: shown.clone() })?;
                if let Ok(mut remotes) = self.remotes.lock() {
                    remotes.insert(
                        uri.to_owned(),
                        RemoteCopy {
                            source: code.clone(),
                            validators,
                            fresh_for,
                        },
                    );
                }
                Template::new(shown, code)
            }
        };
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(uri.to_owned(), template.clone());
        }
        Ok(template)
    }
}

impl Loader {
    /// The remote templates read so far, by URI.
    pub fn remote_copies(&self) -> HashMap<String, RemoteCopy> {
        self.remotes.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

fn read_file(path: &Path) -> Result<Template, SourceError> {
    let shown = path.display().to_string();
    let code = std::fs::read_to_string(path).map_err(|source| SourceError::Io {
        path: shown.clone(),
        source,
    })?;
    let name = path
        .file_name()
        .map_or(shown, |n| n.to_string_lossy().into_owned());
    Ok(Template::new(name, code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_scheme() {
        let base = Path::new("/etc/courier");
        assert_eq!(
            TemplateUri::parse("file:///abs/b.jsonnet", Some(base)).unwrap(),
            TemplateUri::File("/abs/b.jsonnet".into())
        );
        assert_eq!(
            TemplateUri::parse("file://./rel.jsonnet", Some(base)).unwrap(),
            TemplateUri::File("/etc/courier/./rel.jsonnet".into())
        );
        assert_eq!(
            TemplateUri::parse("body.jsonnet", Some(base)).unwrap(),
            TemplateUri::BarePath("/etc/courier/body.jsonnet".into())
        );
        assert!(matches!(
            TemplateUri::parse("https://x.example/t.jsonnet", None).unwrap(),
            TemplateUri::Remote(_)
        ));
        let err = TemplateUri::parse("s3://bucket/t.jsonnet", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"s3\"") && err.contains("base64://"), "{err}");
    }

    #[test]
    fn redacts_credentials_and_queries() {
        assert_eq!(
            redact("https://user:secret@h.example:8443/t.jsonnet?token=abc"),
            "https://h.example:8443/t.jsonnet"
        );
        assert_eq!(
            redact("base64://ZnVuY3Rpb24oY3R4KSB7fQ=="),
            "base64://ZnVuY3Rpb24o…"
        );
    }

    #[tokio::test]
    async fn base64_and_file_templates_load_and_are_cached() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.jsonnet"), "function(ctx) {a: 1}").unwrap();
        let loader = Loader::new(Some(dir.path().to_path_buf()));
        let a = loader.load("file://./t.jsonnet").await.unwrap();
        let b = loader.load("file://./t.jsonnet").await.unwrap();
        assert_eq!(a.id(), b.id(), "one identity per URI");
        assert_eq!(a.source(), "function(ctx) {a: 1}");
        let c = loader
            .load("base64://ZnVuY3Rpb24oY3R4KSB7fQ==")
            .await
            .unwrap();
        assert_eq!(c.source(), "function(ctx) {}");
        let err = loader.load("base64://***").await.unwrap_err().to_string();
        assert!(err.contains("invalid base64"), "{err}");
        let err = loader
            .load("file:///nonexistent/x.jsonnet")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/x.jsonnet"), "{err}");
    }
}
