//! Which ctx key style a template gets: an explicit setting, or else the names the template reads,
//! decided once from its parsed source.
//!
//! A read is a ctx key name used on the template's ctx parameter: `ctx.Recipient`,
//! `ctx['template_data']`, `ctx.TemplateData.RecoveryCode`, `'to' in ctx.template_data`,
//! `std.objectHas(ctx, 'Body')`, `std.get(ctx.template_data, 'login_code')`. Names inside user
//! data (`ctx.TemplateData.Identity.traits`) are not ctx keys and do not count.

use std::fmt;

use jrsonnet_evaluator::IStr;
use jrsonnet_ir::visit::{self, Visitor};
use jrsonnet_ir::{BinaryOpType, Destruct, Expr, IndexPart, Source};

use super::{RenderError, RenderErrorKind, Template};
use crate::message::keys::style_of;
use crate::message::CtxStyle;

/// Why a template got its style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StyleReason {
    /// Set explicitly, by the named setting (a config key path or a flag).
    Explicit(String),
    /// The template reads this name (e.g. `ctx.Recipient`).
    Reads(String),
    /// The template reads no ctx key name, so it gets what the reference sends.
    ReadsNone,
}

/// A template's ctx style and the reason for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StyleChoice {
    /// The style of the ctx the template is given.
    pub style: CtxStyle,
    /// Why.
    pub reason: StyleReason,
}

impl fmt::Display for StyleChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            StyleReason::Explicit(by) => write!(f, "{} (set by {by})", self.style),
            StyleReason::Reads(name) => write!(f, "{} (the template reads {name})", self.style),
            StyleReason::ReadsNone => write!(
                f,
                "{} (the template reads no ctx key name; snake is what the reference sends)",
                self.style
            ),
        }
    }
}

/// The first ctx key name of each style a template reads, as written (`ctx.TemplateData.To`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reads {
    /// A pascal-style read, if any.
    pub pascal: Option<String>,
    /// A snake-style read, if any.
    pub snake: Option<String>,
}

/// The ctx key names `template` reads. A template that does not parse reads nothing here (its
/// syntax error is reported when it is compiled).
pub fn reads(template: &Template) -> Reads {
    let source = Source::new_virtual(template.name().into(), template.source().into());
    let settings = jrsonnet_ir_parser::ParserSettings { source };
    // The parse, the scan and the tree's drop all recurse once per level.
    crate::template::nesting::guarded(template.source(), || {
        let Ok(expr) = jrsonnet_ir_parser::parse(template.source(), &settings) else {
            return Reads::default();
        };
        let Some((param, body)) = top_function(&expr) else {
            return Reads::default();
        };
        let mut scan = Scan {
            ctx: param,
            reads: Reads::default(),
        };
        scan.visit_expr(body);
        scan.reads
    })
    .unwrap_or_default()
}

/// The style for `template`: `explicit` (the style and the setting that chose it) when given,
/// else the style of the names it reads, else snake.
///
/// # Errors
/// With no explicit style, a template that reads names of both styles; the error names one of
/// each.
pub fn decide(
    template: &Template,
    explicit: Option<(CtxStyle, &str)>,
) -> Result<StyleChoice, RenderError> {
    if let Some((style, by)) = explicit {
        return Ok(StyleChoice {
            style,
            reason: StyleReason::Explicit(by.to_owned()),
        });
    }
    match reads(template) {
        Reads {
            pascal: Some(p),
            snake: Some(s),
        } => Err(RenderError::new(
            RenderErrorKind::MixedStyles,
            template,
            format!(
                "the template reads ctx names of both key styles ({p}, pascal, and {s}, snake); \
                 use one style, or set ctx_style to choose the ctx it gets"
            ),
        )),
        Reads {
            pascal: Some(p), ..
        } => Ok(StyleChoice {
            style: CtxStyle::Pascal,
            reason: StyleReason::Reads(p),
        }),
        Reads { snake: Some(s), .. } => Ok(StyleChoice {
            style: CtxStyle::Snake,
            reason: StyleReason::Reads(s),
        }),
        Reads {
            pascal: None,
            snake: None,
        } => Ok(StyleChoice {
            style: CtxStyle::Snake,
            reason: StyleReason::ReadsNone,
        }),
    }
}

/// The parameter name and body of the top-level function, past any top-level locals.
fn top_function(expr: &Expr) -> Option<(IStr, &Expr)> {
    match expr {
        Expr::LocalExpr(_, body) => top_function(body),
        Expr::Function(params, body) => match &params.exprs.first()?.destruct {
            Destruct::Full(name) => Some((name.value.clone(), body)),
            #[allow(unreachable_patterns)] // other forms exist with jrsonnet's destructuring
            _ => None,
        },
        _ => None,
    }
}

struct Scan {
    ctx: IStr,
    reads: Reads,
}

impl Scan {
    fn is_ctx(&self, e: &Expr) -> bool {
        matches!(e, Expr::Var(name) if name.value == self.ctx)
    }

    fn record(&mut self, name: &str, top_level: bool, shown: impl FnOnce() -> String) {
        let slot = match style_of(name, top_level) {
            Some(CtxStyle::Pascal) => &mut self.reads.pascal,
            Some(CtxStyle::Snake) => &mut self.reads.snake,
            None => return,
        };
        if slot.is_none() {
            *slot = Some(shown());
        }
    }

    /// `ctx.A` and `ctx.A.B` (B counts when A is the template-data key).
    fn index(&mut self, indexable: &Expr, parts: &[IndexPart]) {
        if !self.is_ctx(indexable) {
            return;
        }
        let ctx = self.ctx.to_string();
        let Some(Expr::Str(top)) = parts.first().map(|p| &p.value) else {
            return;
        };
        self.record(top, true, || format!("{ctx}.{top}"));
        if matches!(&**top, "TemplateData" | "template_data") {
            if let Some(Expr::Str(inner)) = parts.get(1).map(|p| &p.value) {
                self.record(inner, false, || format!("{ctx}.{top}.{inner}"));
            }
        }
    }

    /// A key tested or looked up on `container`: `'A' in ctx`, `std.objectHas(ctx.A, 'B')`.
    fn member(&mut self, container: &Expr, name: &str) {
        let ctx = self.ctx.to_string();
        if self.is_ctx(container) {
            self.record(name, true, || format!("'{name}' in {ctx}"));
            return;
        }
        if let Expr::Index { indexable, parts } = container {
            if let ([part], true) = (&parts[..], self.is_ctx(indexable)) {
                if let Expr::Str(top) = &part.value {
                    self.record(top, true, || format!("{ctx}.{top}"));
                    if matches!(&**top, "TemplateData" | "template_data") {
                        self.record(name, false, || format!("'{name}' in {ctx}.{top}"));
                    }
                }
            }
        }
    }
}

/// `std.<name>` for the standard functions that test or read a field by name.
fn is_field_lookup(callee: &Expr) -> bool {
    let Expr::Index { indexable, parts } = callee else {
        return false;
    };
    matches!(&**indexable, Expr::Var(v) if &*v.value == "std")
        && matches!(
            &parts[..],
            [p] if matches!(&p.value, Expr::Str(f) if matches!(&**f, "objectHas" | "objectHasAll" | "objectHasEx" | "get"))
        )
}

impl Visitor for Scan {
    fn visit_expr(&mut self, e: &Expr) {
        match e {
            Expr::Index { indexable, parts } => self.index(indexable, parts),
            Expr::BinaryOp(op) if op.op == BinaryOpType::In => {
                if let Expr::Str(name) = &op.lhs {
                    self.member(&op.rhs, name);
                }
            }
            Expr::Apply(callee, args, _) if is_field_lookup(callee) => {
                if let [container, Expr::Str(name), ..] = &args.unnamed[..] {
                    self.member(container, name);
                }
            }
            _ => {}
        }
        visit::visit_expr(self, e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decided(source: &str) -> Result<StyleChoice, String> {
        decide(&Template::new("t.jsonnet", source), None).map_err(|e| e.to_string())
    }

    #[test]
    fn names_read_decide_the_style() {
        for (source, style, why) in [
            (
                "function(ctx) {to: ctx.Recipient}",
                CtxStyle::Pascal,
                "ctx.Recipient",
            ),
            (
                "function(ctx) {to: ctx.recipient}",
                CtxStyle::Snake,
                "ctx.recipient",
            ),
            (
                "local x = 1; function(c) {to: c['TemplateData'].To}",
                CtxStyle::Pascal,
                "c.TemplateData",
            ),
            (
                "function(ctx) {a: if 'login_code' in ctx.template_data then 1}",
                CtxStyle::Snake,
                "ctx.template_data",
            ),
            (
                "function(ctx) {a: std.objectHas(ctx, 'HTMLBody')}",
                CtxStyle::Pascal,
                "'HTMLBody' in ctx",
            ),
            (
                "function(ctx) {a: std.get(ctx.TemplateData, 'LoginCode', null)}",
                CtxStyle::Pascal,
                "ctx.TemplateData",
            ),
            // User data keeps its own keys: `traits` here is not the snake ctx key.
            (
                "function(ctx) {lang: ctx.TemplateData.Identity.traits.lang, body: 'x'}",
                CtxStyle::Pascal,
                "ctx.TemplateData",
            ),
        ] {
            let choice = decided(source).unwrap();
            assert_eq!(choice.style, style, "{source}");
            assert_eq!(choice.reason, StyleReason::Reads(why.into()), "{source}");
        }
    }

    #[test]
    fn reading_nothing_is_snake_and_mixing_is_an_error() {
        for source in [
            "function(ctx) ctx",
            "function(ctx) {to: 'x', body: ctx.custom}",
            "{text: 'ping'}",
            "function(ctx",
        ] {
            let choice = decided(source).unwrap();
            assert_eq!(choice.style, CtxStyle::Snake, "{source}");
            assert_eq!(choice.reason, StyleReason::ReadsNone, "{source}");
        }
        let err = decided("function(ctx) {a: ctx.Recipient, b: ctx.template_data.to}").unwrap_err();
        assert!(err.contains("ctx.Recipient, pascal"), "{err}");
        assert!(err.contains("ctx.template_data, snake"), "{err}");
        let explicit = decide(
            &Template::new("t", "function(ctx) {a: ctx.Recipient, b: ctx.recipient}"),
            Some((CtxStyle::Pascal, "--style")),
        )
        .unwrap();
        assert_eq!(explicit.to_string(), "pascal (set by --style)");
    }
}
