//! One evaluator on the current thread: a jrsonnet `State` with the standard library, the import
//! policy, and a cache of compiled templates.

use std::collections::HashMap;
use std::rc::Rc;

use jrsonnet_evaluator::function::{CallLocation, FuncVal, NativeFn};
use jrsonnet_evaluator::trace::PathResolver;
use jrsonnet_evaluator::{IStr, State, Val};
use jrsonnet_stdlib::TracePrinter;
use serde::Deserialize as _;
use serde_json::Value;

use super::fast;
use super::jail::{DenyImports, JailImports};
use super::lazy;
use super::manifest::{ManifestError, Writer};
use super::{Limits, RenderError, RenderErrorKind, Template};

/// Compiled templates kept per engine; past this the cache starts over (a template costs ~13 µs to
/// compile, so this only bounds memory for processes that see many distinct templates).
const CACHE_CAPACITY: usize = 512;
/// Renders between cycle collections: jrsonnet never collects cycles by itself, and collecting
/// rarely means long pauses.
const GC_EVERY: u32 = 100;

/// Evaluates templates on the thread that owns it. Not `Send`: use [`super::Pool`] from async code.
pub struct Engine {
    state: State,
    limits: Limits,
    cache: HashMap<u64, Compiled>,
    since_gc: u32,
    fast_path: bool,
}

/// A compiled template, as go-jsonnet would run it with `ctx` as a top-level argument.
#[derive(Clone)]
enum Compiled {
    /// `function(ctx) ...`: called with the ctx.
    Func(NativeFn<(Val, Val)>),
    /// Any other value: rendered as is, whatever the ctx (go-jsonnet ignores top-level
    /// arguments a value cannot take).
    Value(Val),
    /// The top level itself is `error "cancel"`: every message is cancelled.
    Cancel(RenderError),
}

/// What a template's top level is, for tools that describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopLevel {
    /// A function of the ctx.
    Function,
    /// A value that ignores the ctx: every message gets the same payload.
    IgnoresCtx,
    /// `error "cancel"`: every message is cancelled.
    CancelsAll,
}

#[derive(jrsonnet_gcmodule::Acyclic)]
struct Tracer {
    stderr: bool,
}

impl TracePrinter for Tracer {
    fn print_trace(&self, loc: CallLocation, value: IStr) {
        let line = loc
            .0
            .map(|span| span.0.map_source_locations(&[span.1])[0].line)
            .unwrap_or(0);
        if self.stderr {
            eprintln!("TRACE: line {line}: {value}");
        } else {
            tracing::debug!(target: "courier::template", line, "std.trace: {value}");
        }
    }
}

impl Engine {
    /// An engine enforcing `limits`.
    ///
    /// # Errors
    /// The import directory, when set, does not exist or cannot be read.
    pub fn new(limits: Limits) -> std::io::Result<Self> {
        let stdlib = jrsonnet_stdlib::ContextInitializer::new(PathResolver::FileName);
        stdlib.settings_mut().trace_printer = Rc::new(Tracer {
            stderr: limits.trace_to_stderr,
        });
        let mut builder = State::builder();
        builder.context_initializer(stdlib);
        match &limits.import_dir {
            Some(dir) => builder.import_resolver(JailImports::new(dir)?),
            None => builder.import_resolver(DenyImports),
        };
        Ok(Self {
            state: builder.build(),
            limits,
            cache: HashMap::new(),
            since_gc: 0,
            fast_path: true,
        })
    }

    /// Turns the compiled fast path (see [`super::fast`]) on or off for this engine (on by
    /// default). Off, every render goes through the evaluator: for comparisons and benches.
    pub fn set_fast_path(&mut self, on: bool) {
        self.fast_path = on;
    }

    /// The limits this engine enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles `template` (or finds it in the cache) without rendering it, and says what its
    /// top level is.
    ///
    /// # Errors
    /// Syntax errors, errors in the template's top-level code (other than `error "cancel"`),
    /// and a top-level function that cannot take the ctx.
    pub fn compile(&mut self, template: &Template) -> Result<TopLevel, RenderError> {
        let _entered = self.state.try_enter();
        jrsonnet_evaluator::stack::set_stack_depth_limit(self.limits.max_stack);
        Ok(match self.compiled(template)? {
            Compiled::Func(_) => TopLevel::Function,
            Compiled::Value(_) => TopLevel::IgnoresCtx,
            Compiled::Cancel(_) => TopLevel::CancelsAll,
        })
    }

    fn compiled(&mut self, template: &Template) -> Result<Compiled, RenderError> {
        if let Some(c) = self.cache.get(&template.id()) {
            return Ok(c.clone());
        }
        let state = &self.state;
        // Evaluating the top level walks its chain of locals recursively too.
        let top = super::nesting::guarded(template.source(), || {
            state
                .prepare_snippet(template.name(), template.source())
                .and_then(|prepared| state.evaluate_prepared_snippet(&prepared))
        })
        .map_err(|deep| RenderError::at(RenderErrorKind::Syntax, template, deep.at, deep.what))?
        .map_err(|e| RenderError::from_jsonnet(template, &e, None, None));
        let compiled = match top {
            Ok(Val::Func(func)) => {
                check_arity(template, &func)?;
                let native = NativeFn::<(Val, Val)>::try_from(func)
                    .map_err(|e| RenderError::from_jsonnet(template, &e, None, None))?;
                Compiled::Func(native)
            }
            Ok(value) => Compiled::Value(value),
            Err(e) if e.is_cancelled() => Compiled::Cancel(e),
            Err(e) => return Err(e),
        };
        if self.cache.len() >= CACHE_CAPACITY {
            self.cache.clear();
        }
        self.cache.insert(template.id(), compiled.clone());
        Ok(compiled)
    }

    /// Renders `template` over `ctx` and returns the payload as compact JSON.
    ///
    /// # Errors
    /// See [`RenderErrorKind`]; the error names the template, the location and the output field.
    pub fn render(&mut self, template: &Template, ctx: &Value) -> Result<String, RenderError> {
        let mut out = String::with_capacity(512);
        self.render_into(template, CtxRef::Value(ctx), &mut out)?;
        Ok(out)
    }

    /// Like [`Engine::render`], with the ctx as JSON text (the cheapest form to hand over).
    ///
    /// # Errors
    /// As [`Engine::render`]; text that is not JSON is a runtime error naming the ctx.
    pub fn render_json(&mut self, template: &Template, ctx: &str) -> Result<String, RenderError> {
        let mut out = String::with_capacity(512);
        self.render_into(template, CtxRef::Json(ctx), &mut out)?;
        Ok(out)
    }

    /// Renders into `out` (cleared first), reusing its allocation.
    ///
    /// # Errors
    /// As [`Engine::render`].
    pub fn render_into(
        &mut self,
        template: &Template,
        ctx: CtxRef<'_>,
        out: &mut String,
    ) -> Result<(), RenderError> {
        out.clear();
        if self.fast_path {
            if let Ok(program) = template.fast_program() {
                if fast::render(program, ctx, out, &self.limits).is_ok() {
                    return Ok(());
                }
            }
        }
        let _entered = self.state.try_enter();
        jrsonnet_evaluator::stack::set_stack_depth_limit(self.limits.max_stack);
        let result = self.evaluate(template, ctx, out);
        if result.is_err() {
            // A failed evaluation can leave errors memoised in the template's top-level locals.
            self.cache.remove(&template.id());
            out.clear();
        }
        self.since_gc += 1;
        if self.since_gc >= GC_EVERY {
            self.since_gc = 0;
            jrsonnet_gcmodule::collect_thread_cycles();
        }
        result
    }

    fn evaluate(
        &mut self,
        template: &Template,
        ctx: CtxRef<'_>,
        out: &mut String,
    ) -> Result<(), RenderError> {
        let func = match self.compiled(template)? {
            Compiled::Func(func) => func,
            Compiled::Value(val) => return self.write(template, &val, out, || None),
            Compiled::Cancel(e) => return Err(e),
        };
        let val = match ctx {
            CtxRef::Value(v) => Val::deserialize(v).map_err(|e| e.to_string()),
            // Validated up front, then converted field by field as the template reads it:
            // templates touch a few fields of a ctx that carries far more.
            CtxRef::Json(text) => lazy::ctx_from_json(text).map_err(|e| e.to_string()),
        }
        .map_err(|e| {
            RenderError::new(
                RenderErrorKind::Runtime,
                template,
                format!("ctx is not valid JSON: {e}"),
            )
        })?;
        // Only errors need the ctx as a JSON value (for the key-style hint).
        let hint_ctx = || match ctx {
            CtxRef::Value(v) => Some(v.clone()),
            CtxRef::Json(text) => serde_json::from_str(text).ok(),
        };
        let val = func
            .call(val)
            .map_err(|e| RenderError::from_jsonnet(template, &e, None, hint_ctx().as_ref()))?;
        self.write(template, &val, out, hint_ctx)
    }

    /// Manifests `val` into `out`; `hint_ctx` gives the ctx for error hints.
    fn write(
        &self,
        template: &Template,
        val: &Val,
        out: &mut String,
        hint_ctx: impl Fn() -> Option<Value>,
    ) -> Result<(), RenderError> {
        let mut writer = Writer::new(out, self.limits.max_output_bytes);
        writer.write(val).map_err(|e| match e {
            ManifestError::Eval(err, path) => {
                let field = (!path.is_empty()).then_some(path);
                RenderError::from_jsonnet(template, &err, field, hint_ctx().as_ref())
            }
            ManifestError::TooLarge => RenderError::new(
                RenderErrorKind::OutputTooLarge,
                template,
                format!(
                    "the payload is larger than the {} byte cap",
                    self.limits.max_output_bytes
                ),
            ),
            ManifestError::Invalid(path, msg) => {
                RenderError::new(RenderErrorKind::Runtime, template, msg)
                    .with_field((!path.is_empty()).then_some(path))
            }
        })
    }
}

/// A borrowed ctx: a JSON value, or JSON text.
#[derive(Debug, Clone, Copy)]
pub enum CtxRef<'a> {
    /// An already parsed value.
    Value(&'a Value),
    /// JSON text, validated up front and converted into Jsonnet values lazily, as fields are
    /// read.
    Json(&'a str),
}

/// An owned ctx for [`super::Pool`]: a JSON value, or JSON text (cheapest to move between
/// threads; see [`crate::message::ctx::to_json`]).
#[derive(Debug, Clone)]
pub enum Ctx {
    /// An already parsed value.
    Value(Value),
    /// JSON text.
    Json(String),
}

impl Ctx {
    /// Borrows it.
    pub fn as_ref(&self) -> CtxRef<'_> {
        match self {
            Ctx::Value(v) => CtxRef::Value(v),
            Ctx::Json(s) => CtxRef::Json(s),
        }
    }
}

impl From<Value> for Ctx {
    fn from(v: Value) -> Self {
        Ctx::Value(v)
    }
}

impl From<String> for Ctx {
    fn from(s: String) -> Self {
        Ctx::Json(s)
    }
}

/// The reference passes ctx by name as the only argument; a function that cannot take exactly one
/// argument would fail on every message, so say so at compile time.
fn check_arity(template: &Template, func: &FuncVal) -> Result<(), RenderError> {
    let params = func.params();
    let required = params.iter().filter(|p| !p.has_default()).count();
    if params.is_empty() || required > 1 {
        return Err(RenderError::new(
            RenderErrorKind::NotAFunction,
            template,
            format!(
                "the top-level function takes {} required parameters; it must take one, ctx: `function(ctx) {{ ... }}`",
                required
            ),
        ));
    }
    Ok(())
}
