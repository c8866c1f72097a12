//! Jsonnet payload templates: where they come from, how they are evaluated, and within what limits.
//!
//! - [`source`] reads a template URI (`file://`, `base64://`, `http(s)://`, a bare path) into a
//!   [`Template`]; remote templates are fetched once per [`source::Loader`], and [`remote`]
//!   says how to refresh them.
//! - [`Engine`] evaluates templates on the current thread, compiling each once.
//! - [`Pool`] runs engines on dedicated threads for async callers, with a per-render timeout and
//!   a cap on threads written off at it; or, with [`Isolation::Process`], in child processes with
//!   a memory cap, killed at the timeout ([`process`], [`worker`], [`wire`]).
//! - [`RenderError`] says what went wrong, in which template, where, and in which output field.
//!
//! jrsonnet values are neither `Send` nor `Sync`: only [`Template`] (an `Arc` of the source), JSON
//! values and output strings cross threads.

mod engine;
mod error;
pub mod fast;
mod jail;
mod lazy;
mod manifest;
mod pool;
mod process;
pub mod remote;
pub mod source;
pub mod style;
mod wire;
mod worker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use engine::{Ctx, CtxRef, Engine, TopLevel};
pub use error::{RenderError, RenderErrorKind};
pub use pool::{Pool, PoolOptions, PoolStats, DEFAULT_MAX_WRITTEN_OFF};
pub use process::{Isolation, ProcessOptions, DEFAULT_MAX_MEMORY_BYTES};
pub use style::{StyleChoice, StyleReason};
pub use worker::run_worker;

/// A template's source text and the name errors use for it. Cloning is cheap.
///
/// Each `Template` value has its own identity: engines cache the compiled form per identity, so
/// build a template once and reuse it rather than re-creating it per render.
#[derive(Clone)]
pub struct Template(Arc<Inner>);

struct Inner {
    id: u64,
    name: String,
    source: Arc<str>,
    /// The fast-path form, compiled on first use (see [`fast`]).
    fast: OnceLock<Result<fast::Program, fast::Unsupported>>,
}

impl Template {
    /// A template named `name` (shown in errors) with `source` as its Jsonnet code.
    pub fn new(name: impl Into<String>, source: impl Into<Arc<str>>) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Template(Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            name: name.into(),
            source: source.into(),
            fast: OnceLock::new(),
        }))
    }

    /// The name errors use: a file name, a URL, or a short base64 prefix.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The Jsonnet source.
    pub fn source(&self) -> &str {
        &self.0.source
    }

    pub(crate) fn id(&self) -> u64 {
        self.0.id
    }

    /// Whether renders of this template take the compiled fast path (no evaluator, on the
    /// caller's thread), or why not: the first construct outside the fast path's subset.
    ///
    /// # Errors
    /// The construct that keeps the template on the evaluator, with its location.
    pub fn fast_path(&self) -> Result<(), fast::Unsupported> {
        self.fast_program().map(|_| ())
    }

    pub(crate) fn fast_program(&self) -> Result<&fast::Program, fast::Unsupported> {
        self.0
            .fast
            .get_or_init(|| fast::compile(self.name(), self.source()))
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("name", &self.0.name)
            .field("bytes", &self.0.source.len())
            .finish()
    }
}

/// The shipped default body template (the spec's documented default, pascal style).
pub const DEFAULT_PASCAL: &str = include_str!("../../jsonnet/default.jsonnet");
/// The snake-style equivalent of [`DEFAULT_PASCAL`].
pub const DEFAULT_SNAKE: &str = include_str!("../../jsonnet/default.snake.jsonnet");

/// The shipped default template for a ctx style.
pub fn default_template(style: crate::message::CtxStyle) -> Template {
    match style {
        crate::message::CtxStyle::Pascal => Template::new("default.jsonnet", DEFAULT_PASCAL),
        crate::message::CtxStyle::Snake => Template::new("default.snake.jsonnet", DEFAULT_SNAKE),
    }
}

/// What a template may do and how long it may take. Every limit is on by default.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Maximum depth of the Jsonnet call stack (default 500 frames, as go-jsonnet).
    pub max_stack: usize,
    /// Maximum size of the rendered payload in bytes, enforced while writing (default 256 KiB).
    pub max_output_bytes: usize,
    /// Maximum time one render may evaluate (default 1 s). Enforced by [`Pool`]; an [`Engine`]
    /// used directly cannot be interrupted.
    pub timeout: Duration,
    /// Imports are denied unless this is set; then `import`/`importstr` may read files below this
    /// directory only (no `..`, absolute paths or symlinks out of it).
    pub import_dir: Option<PathBuf>,
    /// Where `std.trace` output goes: stderr when true (for the CLI), else the `debug` log.
    pub trace_to_stderr: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_stack: 500,
            max_output_bytes: 256 * 1024,
            timeout: Duration::from_secs(1),
            import_dir: None,
            trace_to_stderr: false,
        }
    }
}
