//! The compiled fast path: templates that only project the ctx, rendered without the evaluator.
//!
//! Most body templates are an object literal of ctx lookups, `"x" in ctx.y` tests, `if`s, string
//! literals and `+`. [`compile`] turns such a template, once, from jrsonnet's own parse tree into
//! a small tree of [`compile::Ir`] nodes; [`render`] walks it over the ctx and writes the payload
//! directly. The work is bounded by the template's size and the ctx's (no functions, no
//! recursion, no comprehensions), so it runs on the caller's thread.
//!
//! Anything outside the subset is refused at compile time with the construct and its location
//! ([`Unsupported`], shown by `courier check --explain`), and that template keeps using jrsonnet.
//! At run time the fast path only ever produces a successful payload: any error (a missing field,
//! a type mismatch, `error`, a failed `assert`, a ctx that is not JSON, the output cap) is
//! answered by [`Fallback`], and the caller renders with the evaluator instead. That keeps errors
//! identical by construction (same kind, message, location and output field, built by the same
//! code in `error.rs`), and is correct because evaluation is deterministic: whatever the fast path
//! computed without error, the lazy evaluator computes the same way for the parts it reads.

mod build;
mod compile;
mod exec;
mod need;
mod node;
mod paths;
mod scan;

use std::fmt;

use crate::message::{ctx, CtxStyle, Message};
use crate::template::lazy::scan::PLAIN_MAX_DEPTH;

pub(crate) use compile::Program;

/// Why a template does not take the fast path: the first construct outside the subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// What the construct is, e.g. `std.format` or `object comprehension`.
    pub construct: String,
    /// 1-based line and column of the construct (or of the nearest enclosing located node),
    /// when known.
    pub location: Option<(usize, usize)>,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.construct)?;
        if let Some((line, col)) = self.location {
            write!(f, " at line {line} column {col}")?;
        }
        Ok(())
    }
}

/// The fast path declined this render; the evaluator must produce the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fallback;

/// Compiles `source` (named `name` in locations) for the fast path.
///
/// # Errors
/// The template uses a construct outside the subset, or does not parse (the evaluator then
/// reports the syntax error).
pub(crate) fn compile(name: &str, source: &str) -> Result<Program, Unsupported> {
    compile::compile(name, source)
}

/// Renders `program` over `ctx` into `out` (cleared first).
///
/// # Errors
/// [`Fallback`] whenever the evaluator could answer differently (an error of any kind, the
/// output cap, a stack limit too small for the template); `out` is then empty (the payload is
/// written as it is evaluated, and callers render with the evaluator into the same buffer).
pub(crate) fn render(
    program: &Program,
    ctx: super::CtxRef<'_>,
    out: &mut String,
    limits: &super::Limits,
) -> Result<(), Fallback> {
    out.clear();
    exec::render(program, ctx, out, limits).inspect_err(|_| out.clear())
}

/// Like [`render`], over `message`'s ctx in `style`, built from the message's ctx view without
/// writing it as JSON text first.
///
/// # Errors
/// As [`render`], and also when the message holds something whose JSON text form the tree
/// cannot mirror for sure (a JSON value nested too deep); the caller then writes the text and
/// renders from it.
pub(crate) fn render_message(
    program: &Program,
    message: &Message,
    style: CtxStyle,
    out: &mut String,
    limits: &super::Limits,
) -> Result<(), Fallback> {
    out.clear();
    // Walking the values no template reads (a whole identity, for most) only to find their
    // nesting within bounds cost as much as evaluating the default template: one direct look
    // at the message's JSON values answers it for all of them.
    let walk_unread = !ctx::values_within(message, VALUE_LEVELS);
    exec::render_serialize(
        program,
        &ctx::view(message, style),
        walk_unread,
        out,
        limits,
    )
    .inspect_err(|_| out.clear())
}

/// How deep a message's JSON values may nest for [`render_message`] to skip walking the unread
/// ones: the view puts them two containers into the ctx (`ctx.TemplateData.Identity`,
/// `ctx.RequestHeaders.X`), and the build refuses a container entered [`PLAIN_MAX_DEPTH`] deep;
/// two levels of margin besides.
const VALUE_LEVELS: usize = PLAIN_MAX_DEPTH - 4;

/// [`render_message`] over any value that serializes to a ctx, every part walked (for tests).
#[cfg(test)]
pub(crate) fn render_serialize<T: serde::Serialize + ?Sized>(
    program: &Program,
    value: &T,
    out: &mut String,
    limits: &super::Limits,
) -> Result<(), Fallback> {
    out.clear();
    exec::render_serialize(program, value, true, out, limits).inspect_err(|_| out.clear())
}

#[cfg(test)]
pub(crate) mod tests;
