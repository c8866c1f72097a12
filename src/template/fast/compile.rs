//! Compiles jrsonnet's parse tree into the fast path's [`Ir`], refusing anything outside the
//! subset with the construct's name and location.

use jrsonnet_ir::{
    BinaryOpType, BindSpec, CompSpec, Destruct, Expr, FieldName, IStr, LiteralType, ObjBody,
    Source, Span, UnaryOpType, Visibility,
};
use jrsonnet_ir_parser::ParserSettings;

use super::Unsupported;

/// Deepest nesting of expressions compiled; keeps rendering well inside any stack limit the
/// evaluator would enforce (see [`Program::min_stack`]).
const MAX_DEPTH: usize = 32;

/// A compiled template: `function(ctx) <root>` with every local in its own slot.
#[derive(Debug)]
pub(crate) struct Program {
    pub(super) root: Ir,
    /// Number of local slots; slot 0 holds the ctx.
    pub(super) slots: usize,
    /// Deepest expression nesting, to compare with the evaluator's stack limit.
    pub(super) depth: usize,
    pub(super) funcs: Vec<Func>,
    /// The parts of the ctx the template can read.
    pub(super) need: super::need::Need,
    /// The ctx paths [`Ir::Ctx`] and [`Ir::CtxHas`] name, by number.
    pub(super) paths: Vec<super::paths::Path>,
}

impl Program {
    /// The smallest evaluator stack limit under which the evaluator surely renders this template
    /// without a stack overflow; below it, the fast path declines.
    pub(super) fn min_stack(&self) -> usize {
        self.depth * 4 + 16
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bin {
    Add,
    Lt,
    Gt,
    Lte,
    Gte,
    Eq,
    Neq,
    And,
    Or,
    In,
}

/// A compiled expression.
#[derive(Debug)]
pub(super) enum Ir {
    Null,
    Bool(bool),
    Num(f64),
    Str(Box<str>),
    Local(usize),
    Arr(Vec<Ir>),
    Obj(Box<ObjIr>),
    /// `e.name` or `e["name"]`.
    Field(Box<Ir>, Box<str>),
    /// `e[i]` with a computed index.
    Index(Box<Ir>, Box<Ir>),
    If(Box<Ir>, Box<Ir>, Option<Box<Ir>>),
    Not(Box<Ir>),
    Neg(Box<Ir>),
    Bin(Bin, Box<Ir>, Box<Ir>),
    /// Locals bound in order (each value may use only the ones before it), then the body.
    Let(Vec<(usize, Ir)>, Box<Ir>),
    /// `std.get(o, f, default, inc_hidden)`.
    StdGet(Box<[Ir]>),
    /// `std.objectHas(o, f)` (visible only) or `std.objectHasAll(o, f)`.
    Has(Box<Ir>, Box<Ir>, bool),
    /// `assert cond : msg; rest`: the message is only needed when the assertion fails.
    Assert(Box<Ir>, Box<Ir>),
    /// `error ...`: always an error, so always the evaluator's to report.
    Fail,
    /// A call of a local function: its parameters' slots get the arguments, then its body runs.
    Call(usize, Box<[Ir]>),
    /// `[body for x in e if c ...]`.
    Comp(Box<[Spec]>, Box<Ir>),
    /// A standard library function outside `get`/`objectHas`, with its arguments.
    Std(StdFn, Box<[Ir]>),
    /// `ctx.a.b`: the ctx path numbered so in [`Program::paths`] (see `paths.rs`).
    Ctx(usize),
    /// `"k" in ctx.a`: whether the numbered ctx path `ctx.a.k` is there.
    CtxHas(usize),
}

#[derive(Debug)]
pub(super) enum Spec {
    For(usize, Ir),
    If(Ir),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StdFn {
    /// `std.format(fmt, args)` with `%s` and `%%` directives only.
    Format,
    StrReplace,
    Join,
    Length,
}

/// A local function: parameters' slots and body, compiled where it is defined.
#[derive(Debug)]
pub(super) struct Func {
    pub(super) params: Vec<usize>,
    pub(super) body: Ir,
}

#[derive(Debug)]
pub(super) struct ObjIr {
    pub(super) locals: Vec<(usize, Ir)>,
    pub(super) fields: Vec<FieldIr>,
    /// Every name is fixed, and `fields` is sorted by name bytes (stably: duplicates, which
    /// fail at run time, stay in source order).
    pub(super) sorted: bool,
    /// `sorted`, with a name twice: known here, so renders need not compare the names.
    pub(super) duplicate: bool,
}

/// The text of a fixed name; empty for a computed one.
fn fixed(name: &Name) -> &str {
    match name {
        Name::Fixed(k) => k,
        Name::Dyn(_) => "",
    }
}

#[derive(Debug)]
pub(super) enum Name {
    Fixed(Box<str>),
    /// `[e]: ...`: a string, or null to leave the field out.
    Dyn(Ir),
}

#[derive(Debug)]
pub(super) struct FieldIr {
    pub(super) name: Name,
    pub(super) hidden: bool,
    pub(super) value: Ir,
}

pub(super) fn compile(name: &str, code: &str) -> Result<Program, Unsupported> {
    let source = Source::new_virtual(IStr::from(name), IStr::from(code));
    let settings = ParserSettings {
        source: source.clone(),
    };
    // The parse, the walk below and the tree's drop all recurse once per level.
    crate::template::nesting::guarded(code, || {
        let expr = jrsonnet_ir_parser::parse(code, &settings).map_err(|e| Unsupported {
            construct: format!("a syntax error ({})", e.message),
            location: locate(&e.location),
        })?;
        compile_expr(&expr)
    })
    .map_err(|deep| Unsupported {
        construct: "deep nesting".into(),
        location: Some(deep.at),
    })?
}

fn compile_expr(expr: &Expr) -> Result<Program, Unsupported> {
    let mut c = Compiler {
        scope: Vec::new(),
        // Slot 0 is the ctx.
        slots: 1,
        near: None,
        depth: 0,
        max_depth: 0,
        funcs: Vec::new(),
    };
    let root = c.top(expr)?;
    let mut program = Program {
        root,
        slots: c.slots,
        depth: c.max_depth,
        funcs: c.funcs,
        need: super::need::Need::Full,
        paths: Vec::new(),
    };
    super::paths::number(&mut program);
    program.need = super::need::of(&program);
    Ok(program)
}

fn locate(span: &Span) -> Option<(usize, usize)> {
    let code = span.0.code();
    let offset = (span.1 as usize).min(code.len()) as u32;
    let [loc] = span.0.map_source_locations(&[offset]);
    Some((loc.line, loc.column))
}

enum Binding {
    Slot(usize),
    /// A local function, callable only.
    Func(usize, usize),
    /// A name of the local group being compiled, not yet evaluated at this point.
    Pending,
}

struct Compiler {
    scope: Vec<(IStr, Binding)>,
    slots: usize,
    /// The nearest located node enclosing the expression being compiled.
    near: Option<Span>,
    depth: usize,
    max_depth: usize,
    funcs: Vec<Func>,
}

type Res<T> = Result<T, Unsupported>;

impl Compiler {
    fn unsupported<T>(&self, construct: impl Into<String>) -> Res<T> {
        Err(Unsupported {
            construct: construct.into(),
            location: self.near.as_ref().and_then(locate),
        })
    }

    fn at(&mut self, span: &Span) {
        self.near = Some(span.clone());
    }

    fn new_slot(&mut self) -> usize {
        self.slots += 1;
        self.slots - 1
    }

    fn lookup(&self, name: &str) -> Option<&Binding> {
        self.scope
            .iter()
            .rev()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, b)| b)
    }

    /// The top level: locals, then `function(ctx) body`.
    fn top(&mut self, expr: &Expr) -> Res<Ir> {
        match expr {
            Expr::LocalExpr(binds, rest) => {
                let mark = self.scope.len();
                let bound = self.binds(binds)?;
                let body = self.top(rest)?;
                self.scope.truncate(mark);
                Ok(Ir::Let(bound, Box::new(body)))
            }
            Expr::Function(params, body) => {
                let [param] = params.exprs.as_slice() else {
                    return self.unsupported("a top-level function without exactly one parameter");
                };
                if param.default.is_some() {
                    return self.unsupported("a parameter default value");
                }
                #[allow(irrefutable_let_patterns)]
                let Destruct::Full(name) = &param.destruct
                else {
                    return self.unsupported("a destructuring parameter");
                };
                self.at(&name.span);
                self.scope.push((name.value.clone(), Binding::Slot(0)));
                let body = self.expr(body);
                self.scope.pop();
                body
            }
            _ => self.unsupported("a top level that is not `function(ctx) ...`"),
        }
    }

    fn binds(&mut self, binds: &[BindSpec]) -> Res<Vec<(usize, Ir)>> {
        let mark = self.scope.len();
        for b in binds {
            let name = match b {
                BindSpec::Field { into, .. } => {
                    #[allow(irrefutable_let_patterns)]
                    let Destruct::Full(name) = into
                    else {
                        return self.unsupported("a destructuring local");
                    };
                    name.value.clone()
                }
                BindSpec::Function { name, .. } => name.clone(),
            };
            self.scope.push((name, Binding::Pending));
        }
        let mut out = Vec::with_capacity(binds.len());
        for (i, b) in binds.iter().enumerate() {
            match b {
                BindSpec::Field { into, value } => {
                    #[allow(irrefutable_let_patterns)]
                    if let Destruct::Full(name) = into {
                        self.at(&name.span);
                    }
                    let ir = self.expr(value)?;
                    let slot = self.new_slot();
                    self.scope[mark + i].1 = Binding::Slot(slot);
                    out.push((slot, ir));
                }
                BindSpec::Function {
                    name,
                    params,
                    value,
                } => {
                    let fmark = self.scope.len();
                    let mut slots = Vec::with_capacity(params.exprs.len());
                    for p in &params.exprs {
                        #[allow(irrefutable_let_patterns)]
                        let Destruct::Full(pname) = &p.destruct
                        else {
                            return self.unsupported("a destructuring parameter");
                        };
                        self.at(&pname.span);
                        if p.default.is_some() {
                            return self.unsupported(format!(
                                "a parameter default value (in {})",
                                name.as_str()
                            ));
                        }
                        let slot = self.new_slot();
                        slots.push(slot);
                        self.scope.push((pname.value.clone(), Binding::Slot(slot)));
                    }
                    let body = self.expr(value)?;
                    self.scope.truncate(fmark);
                    self.funcs.push(Func {
                        params: slots,
                        body,
                    });
                    self.scope[mark + i].1 = Binding::Func(self.funcs.len() - 1, params.len());
                }
            }
        }
        Ok(out)
    }

    fn expr(&mut self, expr: &Expr) -> Res<Ir> {
        self.depth += 1;
        self.max_depth = self.max_depth.max(self.depth);
        let near = self.near.clone();
        let result = if self.depth > MAX_DEPTH {
            self.unsupported(format!("nesting deeper than {MAX_DEPTH} levels"))
        } else {
            self.expr_inner(expr)
        };
        self.depth -= 1;
        if result.is_ok() {
            self.near = near;
        }
        result
    }

    fn expr_inner(&mut self, expr: &Expr) -> Res<Ir> {
        Ok(match expr {
            Expr::Literal(LiteralType::Null) => Ir::Null,
            Expr::Literal(LiteralType::True) => Ir::Bool(true),
            Expr::Literal(LiteralType::False) => Ir::Bool(false),
            Expr::Literal(LiteralType::This) => return self.unsupported("self"),
            Expr::Literal(LiteralType::Super) => return self.unsupported("super"),
            Expr::Literal(LiteralType::Dollar) => return self.unsupported("$"),
            Expr::Str(s) => Ir::Str(s.as_str().into()),
            Expr::Num(n) => Ir::Num(**n),
            Expr::Var(name) => {
                self.at(&name.span);
                match self.lookup(name.value.as_str()) {
                    Some(Binding::Slot(slot)) => Ir::Local(*slot),
                    Some(Binding::Func(..)) => {
                        return self.unsupported(format!(
                            "a function used as a value ({})",
                            name.value.as_str()
                        ))
                    }
                    Some(Binding::Pending) => {
                        return self.unsupported(format!(
                            "a local used before its value ({})",
                            name.value.as_str()
                        ))
                    }
                    None if name.value.as_str() == "std" => {
                        return self.unsupported("std used as a value")
                    }
                    None => {
                        return self
                            .unsupported(format!("an unknown name ({})", name.value.as_str()))
                    }
                }
            }
            Expr::Arr(items) => Ir::Arr(items.iter().map(|e| self.expr(e)).collect::<Res<_>>()?),
            Expr::ArrComp(body, specs) => {
                let mark = self.scope.len();
                let mut out = Vec::with_capacity(specs.len());
                for spec in specs {
                    match spec {
                        CompSpec::ForSpec(f) => {
                            #[allow(irrefutable_let_patterns)]
                            let Destruct::Full(name) = &f.destruct
                            else {
                                return self.unsupported("a destructuring `for`");
                            };
                            self.at(&name.span);
                            let over = self.expr(&f.over)?;
                            let slot = self.new_slot();
                            self.scope.push((name.value.clone(), Binding::Slot(slot)));
                            out.push(Spec::For(slot, over));
                        }
                        CompSpec::IfSpec(c) => {
                            self.at(&c.span);
                            out.push(Spec::If(self.expr(&c.cond)?));
                        }
                    }
                }
                let body = self.expr(body)?;
                self.scope.truncate(mark);
                Ir::Comp(out.into_boxed_slice(), Box::new(body))
            }
            Expr::Obj(ObjBody::MemberList(members)) => {
                if !members.asserts.is_empty() {
                    self.at(&members.asserts[0].assertion.span);
                    return self.unsupported("an object assert");
                }
                // Field names are evaluated outside the object: its locals are not in scope.
                let mut names = Vec::with_capacity(members.fields.len());
                for field in &members.fields {
                    self.at(&field.name.span);
                    if field.params.is_some() {
                        return self.unsupported("a method field");
                    }
                    if field.plus {
                        return self.unsupported("a `+:` field");
                    }
                    names.push(match &field.name.value {
                        FieldName::Fixed(name) => Name::Fixed(name.as_str().into()),
                        FieldName::Dyn(e) => Name::Dyn(self.expr(e)?),
                    });
                }
                let mark = self.scope.len();
                let locals = self.binds(&members.locals)?;
                let mut fields = Vec::with_capacity(members.fields.len());
                for (field, name) in members.fields.iter().zip(names) {
                    self.at(&field.name.span);
                    let value = self.expr(&field.value)?;
                    fields.push(FieldIr {
                        name,
                        hidden: field.visibility == Visibility::Hidden,
                        value,
                    });
                }
                self.scope.truncate(mark);
                // Fixed names are put in output order now, so renders need not sort them.
                let sorted = fields.iter().all(|f| matches!(f.name, Name::Fixed(_)));
                if sorted {
                    fields.sort_by(|a, b| fixed(&a.name).as_bytes().cmp(fixed(&b.name).as_bytes()));
                }
                let duplicate = sorted
                    && fields
                        .windows(2)
                        .any(|w| fixed(&w[0].name) == fixed(&w[1].name));
                Ir::Obj(Box::new(ObjIr {
                    locals,
                    fields,
                    sorted,
                    duplicate,
                }))
            }
            Expr::Obj(ObjBody::ObjComp(_)) => return self.unsupported("an object comprehension"),
            Expr::ObjExtend(..) => return self.unsupported("an object extension (`e { ... }`)"),
            Expr::UnaryOp(UnaryOpType::Not, e) => Ir::Not(Box::new(self.expr(e)?)),
            Expr::UnaryOp(UnaryOpType::Minus, e) => Ir::Neg(Box::new(self.expr(e)?)),
            Expr::UnaryOp(op, _) => return self.unsupported(format!("the `{op}` operator")),
            Expr::BinaryOp(op) => {
                let bin = match op.op {
                    BinaryOpType::Add => Bin::Add,
                    BinaryOpType::Eq => Bin::Eq,
                    BinaryOpType::Neq => Bin::Neq,
                    BinaryOpType::And => Bin::And,
                    BinaryOpType::Or => Bin::Or,
                    BinaryOpType::In => Bin::In,
                    BinaryOpType::Lt => Bin::Lt,
                    BinaryOpType::Gt => Bin::Gt,
                    BinaryOpType::Lte => Bin::Lte,
                    BinaryOpType::Gte => Bin::Gte,
                    other => return self.unsupported(format!("the `{other}` operator")),
                };
                let lhs = self.expr(&op.lhs)?;
                let rhs = self.expr(&op.rhs)?;
                Ir::Bin(bin, Box::new(lhs), Box::new(rhs))
            }
            Expr::AssertExpr(a) => {
                self.at(&a.assert.assertion.span);
                let cond = self.expr(&a.assert.assertion)?;
                let rest = self.expr(&a.rest)?;
                Ir::Assert(Box::new(cond), Box::new(rest))
            }
            Expr::LocalExpr(binds, body) => {
                let mark = self.scope.len();
                let bound = self.binds(binds)?;
                let body = self.expr(body)?;
                self.scope.truncate(mark);
                Ir::Let(bound, Box::new(body))
            }
            Expr::Import(kind, _) => {
                self.at(&kind.span);
                return self.unsupported("an import");
            }
            Expr::ErrorStmt(span, _) => {
                self.at(span);
                Ir::Fail
            }
            Expr::Apply(target, args, _) => {
                self.at(&args.span);
                if let Expr::Var(v) = &**target {
                    if let Some(Binding::Pending) = self.lookup(v.value.as_str()) {
                        return self.unsupported(format!(
                            "a local used before its value ({})",
                            v.value.as_str()
                        ));
                    }
                    if let Some(Binding::Func(id, arity)) = self.lookup(v.value.as_str()) {
                        let (id, arity) = (*id, *arity);
                        if !args.names.is_empty() || args.unnamed.len() != arity {
                            return self.unsupported(format!(
                                "a call of {} with named or missing arguments",
                                v.value.as_str()
                            ));
                        }
                        let a = self.exprs(&args.unnamed)?;
                        return Ok(Ir::Call(id, a.into_boxed_slice()));
                    }
                }
                let Some(name) = self.std_member(target) else {
                    return self.unsupported("a function call");
                };
                if !args.names.is_empty() {
                    return self.unsupported(format!("named arguments to std.{name}"));
                }
                let n = args.unnamed.len();
                let mut a = self.exprs(&args.unnamed)?;
                match (name.as_str(), n) {
                    ("get", 2..=4) => Ir::StdGet(a.into_boxed_slice()),
                    ("objectHas" | "objectHasAll", 2) => {
                        let f = a.pop().map(Box::new);
                        let o = a.pop().map(Box::new);
                        match (o, f) {
                            (Some(o), Some(f)) => Ir::Has(o, f, name == "objectHasAll"),
                            _ => return self.unsupported(format!("std.{name}")),
                        }
                    }
                    ("format", 2) => Ir::Std(StdFn::Format, a.into_boxed_slice()),
                    ("strReplace", 3) => Ir::Std(StdFn::StrReplace, a.into_boxed_slice()),
                    ("join", 2) => Ir::Std(StdFn::Join, a.into_boxed_slice()),
                    ("length", 1) => Ir::Std(StdFn::Length, a.into_boxed_slice()),
                    _ => return self.unsupported(format!("std.{name}")),
                }
            }
            Expr::Index { indexable, parts } => {
                if self.std_var(indexable) {
                    if let Some(p) = parts.first() {
                        self.at(&p.span);
                    }
                    return self.unsupported("std used as a value");
                }
                let mut ir = self.expr(indexable)?;
                for part in parts {
                    self.at(&part.span);
                    ir = match &part.value {
                        Expr::Str(s) => Ir::Field(Box::new(ir), s.as_str().into()),
                        other => Ir::Index(Box::new(ir), Box::new(self.expr(other)?)),
                    };
                }
                ir
            }
            Expr::Function(..) => return self.unsupported("a function"),
            Expr::IfElse(ie) => {
                self.at(&ie.cond.span);
                let cond = self.expr(&ie.cond.cond)?;
                let then = self.expr(&ie.cond_then)?;
                let other = match &ie.cond_else {
                    Some(e) => Some(Box::new(self.expr(e)?)),
                    None => None,
                };
                Ir::If(Box::new(cond), Box::new(then), other)
            }
            Expr::Slice(_) => return self.unsupported("a slice"),
        })
    }

    fn exprs(&mut self, exprs: &[Expr]) -> Res<Vec<Ir>> {
        exprs.iter().map(|e| self.expr(e)).collect()
    }

    /// `std` not shadowed by a local.
    fn std_var(&self, expr: &Expr) -> bool {
        matches!(expr, Expr::Var(v) if v.value.as_str() == "std" && self.lookup("std").is_none())
    }

    /// For `std.name` (the target of a call), the name.
    fn std_member(&self, target: &Expr) -> Option<String> {
        let Expr::Index { indexable, parts } = target else {
            return None;
        };
        match parts.as_slice() {
            [part] if self.std_var(indexable) => match &part.value {
                Expr::Str(s) => Some(s.as_str().to_owned()),
                _ => None,
            },
            _ => None,
        }
    }
}
