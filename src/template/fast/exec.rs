//! Runs a compiled [`Program`] over the ctx and writes the payload, with jrsonnet's value rules:
//! keys sorted by bytes, hidden fields left out, `==` deep and type-strict, numbers and strings
//! written by the same code as the evaluator's writer. Anything else is a [`Fallback`].

use std::rc::Rc;

use serde::de::DeserializeSeed as _;

use super::compile::{Bin, Func, Ir, Name, Program, Spec, StdFn};
use super::node::{Node, Seed};
use super::paths::{Memo, Seen};
use super::Fallback;
use crate::template::manifest::{escape_into, write_num, MAX_DEPTH};
use crate::template::{CtxRef, Limits};

type R<T> = Result<T, Fallback>;

/// Comprehension iterations one render may run before declining: nested comprehensions over a
/// large ctx could otherwise take unbounded time on the caller's thread (the evaluator has a
/// timeout).
const MAX_ITERATIONS: usize = 100_000;

/// A string: borrowed from the program or the ctx, or built by `+`.
#[derive(Clone, Debug)]
enum S<'a> {
    B(&'a str),
    O(Rc<str>),
}

impl S<'_> {
    fn as_str(&self) -> &str {
        match self {
            S::B(s) => s,
            S::O(s) => s,
        }
    }
}

/// A value during a render.
#[derive(Clone, Debug)]
enum V<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Str(S<'a>),
    /// An array or object of the ctx, read in place.
    Node(&'a Node<'a>),
    Arr(Rc<Vec<V<'a>>>),
    Obj(Rc<Vec<Member<'a>>>),
}

/// An object field built by the template; objects keep them sorted by key bytes.
#[derive(Debug)]
struct Member<'a> {
    key: S<'a>,
    visible: bool,
    value: V<'a>,
}

#[derive(PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Num,
    Str,
    Arr,
    Obj,
}

impl<'a> V<'a> {
    fn of(node: &'a Node<'a>) -> Self {
        match node {
            Node::Null => V::Null,
            Node::Bool(b) => V::Bool(*b),
            Node::Num(n) => V::Num(*n),
            Node::Str(s) => V::Str(S::B(s)),
            Node::Arr(_) | Node::Obj(_) => V::Node(node),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            V::Null => Kind::Null,
            V::Bool(_) => Kind::Bool,
            V::Num(_) => Kind::Num,
            V::Str(_) => Kind::Str,
            V::Arr(_) | V::Node(Node::Arr(_)) => Kind::Arr,
            V::Obj(_) | V::Node(_) => Kind::Obj,
        }
    }

    fn len(&self) -> R<usize> {
        match self {
            V::Arr(items) => Ok(items.len()),
            V::Node(Node::Arr(items)) => Ok(items.len()),
            _ => Err(Fallback),
        }
    }

    fn item(&self, i: usize) -> R<V<'a>> {
        match self {
            V::Arr(items) => items.get(i).cloned().ok_or(Fallback),
            V::Node(Node::Arr(items)) => items.get(i).map(V::of).ok_or(Fallback),
            _ => Err(Fallback),
        }
    }

    /// The field `key` (visible or not) and whether it is visible; `Fallback` when `self` is
    /// not an object.
    fn field(&self, key: &str) -> R<Option<(V<'a>, bool)>> {
        match self {
            V::Node(Node::Obj(members)) => Ok(Node::member(members, key).map(|n| (V::of(n), true))),
            V::Obj(members) => Ok(find(members, key).map(|m| (m.value.clone(), m.visible))),
            _ => Err(Fallback),
        }
    }

    /// Visible keys in order.
    fn visible_keys(&self) -> Vec<&str> {
        match self {
            V::Node(Node::Obj(members)) => members.iter().map(|(k, _)| k.as_ref()).collect(),
            V::Obj(members) => members
                .iter()
                .filter(|m| m.visible)
                .map(|m| m.key.as_str())
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn find<'m, 'a>(members: &'m [Member<'a>], key: &str) -> Option<&'m Member<'a>> {
    if members.len() <= LINEAR_MAX {
        return members.iter().find(|m| m.key.as_str() == key);
    }
    members
        .binary_search_by(|m| m.key.as_str().as_bytes().cmp(key.as_bytes()))
        .ok()
        .map(|i| &members[i])
}

/// Objects up to this many members are searched in order: comparing lengths first rejects most
/// keys without looking at their bytes, which beats a binary search over so few.
pub(super) const LINEAR_MAX: usize = 16;

pub(super) fn render(
    program: &Program,
    ctx: CtxRef<'_>,
    out: &mut String,
    limits: &Limits,
) -> R<()> {
    if limits.max_stack < program.min_stack() {
        return Err(Fallback);
    }
    let seed = Seed(&program.need);
    let node = match ctx {
        CtxRef::Json(text) => {
            if let Some(node) = super::scan::parse(text, &program.need) {
                return run(program, &node, out, limits);
            }
            let mut de = serde_json::Deserializer::from_str(text);
            let node = seed.deserialize(&mut de).map_err(|_| Fallback)?;
            de.end().map_err(|_| Fallback)?;
            node
        }
        CtxRef::Value(value) => seed.deserialize(value).map_err(|_| Fallback)?,
    };
    run(program, &node, out, limits)
}

/// Renders over the ctx that `value` serializes to, built without its JSON text (for
/// `walk_unread`, see `build::from_serialize`).
pub(super) fn render_serialize<T: serde::Serialize + ?Sized>(
    program: &Program,
    value: &T,
    walk_unread: bool,
    out: &mut String,
    limits: &Limits,
) -> R<()> {
    if limits.max_stack < program.min_stack() {
        return Err(Fallback);
    }
    let node = super::build::from_serialize(value, &program.need, walk_unread).ok_or(Fallback)?;
    run(program, &node, out, limits)
}

/// Locals and ctx paths up to this many live on the stack during a render, not in a `Vec`.
const INLINE: usize = 16;

fn run(program: &Program, node: &Node<'_>, out: &mut String, limits: &Limits) -> R<()> {
    let (mut env_inline, mut env_heap) = ([const { V::Null }; INLINE], Vec::new());
    let env = if program.slots <= INLINE {
        &mut env_inline[..program.slots]
    } else {
        env_heap.resize(program.slots, V::Null);
        &mut env_heap[..]
    };
    let n = program.paths.len();
    let (mut seen_inline, mut seen_heap) = ([Seen::Unknown; INLINE], Vec::new());
    let seen = if n <= INLINE {
        &mut seen_inline[..n]
    } else {
        seen_heap.resize(n, Seen::Unknown);
        &mut seen_heap[..]
    };
    let mut ex = Exec {
        env,
        funcs: &program.funcs,
        iterations: 0,
        memo: Memo::new(node, &program.paths, seen),
    };
    ex.env[0] = V::of(node);
    let mut w = Out {
        out,
        cap: limits.max_output_bytes,
    };
    ex.emit(&program.root, &mut w, 0)
}

struct Exec<'a, 's> {
    env: &'s mut [V<'a>],
    funcs: &'a [Func],
    iterations: usize,
    memo: Memo<'a, 's>,
}

impl<'a> Exec<'a, '_> {
    fn eval(&mut self, ir: &'a Ir) -> R<V<'a>> {
        Ok(match ir {
            Ir::Null => V::Null,
            Ir::Bool(b) => V::Bool(*b),
            Ir::Num(n) => V::Num(*n),
            Ir::Str(s) => V::Str(S::B(s)),
            Ir::Local(slot) => self.env[*slot].clone(),
            Ir::Arr(items) => V::Arr(Rc::new(
                items.iter().map(|e| self.eval(e)).collect::<R<_>>()?,
            )),
            Ir::Obj(obj) => {
                if obj.duplicate {
                    // The evaluator reports the duplicate field.
                    return Err(Fallback);
                }
                self.bind(&obj.locals)?;
                let mut members = Vec::with_capacity(obj.fields.len());
                for f in &obj.fields {
                    let key = match &f.name {
                        Name::Fixed(k) => S::B(k),
                        Name::Dyn(e) => match self.eval(e)? {
                            V::Str(s) => s,
                            V::Null => continue,
                            _ => return Err(Fallback),
                        },
                    };
                    members.push(Member {
                        key,
                        visible: !f.hidden,
                        value: self.eval(&f.value)?,
                    });
                }
                // Fixed names were sorted and checked for duplicates when compiled.
                if !obj.sorted {
                    members.sort_unstable_by(|a, b| {
                        a.key.as_str().as_bytes().cmp(b.key.as_str().as_bytes())
                    });
                    if members
                        .windows(2)
                        .any(|w| w[0].key.as_str() == w[1].key.as_str())
                    {
                        return Err(Fallback);
                    }
                }
                V::Obj(Rc::new(members))
            }
            Ir::Field(e, key) => match self.eval(e)?.field(key)? {
                Some((v, _)) => v,
                None => return Err(Fallback),
            },
            Ir::Index(e, i) => {
                let target = self.eval(e)?;
                match (target.kind(), self.eval(i)?) {
                    (Kind::Arr, V::Num(n)) if n >= 0.0 && n.fract() == 0.0 => {
                        target.item(n as usize)?
                    }
                    (Kind::Obj, V::Str(key)) => match target.field(key.as_str())? {
                        Some((v, _)) => v,
                        None => return Err(Fallback),
                    },
                    _ => return Err(Fallback),
                }
            }
            Ir::If(cond, then, other) => match self.eval(cond)? {
                V::Bool(true) => self.eval(then)?,
                V::Bool(false) => match other {
                    Some(e) => self.eval(e)?,
                    None => V::Null,
                },
                _ => return Err(Fallback),
            },
            Ir::Not(e) => match self.eval(e)? {
                V::Bool(b) => V::Bool(!b),
                _ => return Err(Fallback),
            },
            Ir::Neg(e) => match self.eval(e)? {
                V::Num(n) => V::Num(-n),
                _ => return Err(Fallback),
            },
            Ir::Bin(op, lhs, rhs) => self.binary(*op, lhs, rhs)?,
            Ir::Let(binds, body) => {
                self.bind(binds)?;
                self.eval(body)?
            }
            Ir::StdGet(args) => {
                let obj = self.eval(&args[0])?;
                let V::Str(key) = self.eval(&args[1])? else {
                    return Err(Fallback);
                };
                let hidden_too = match args.get(3) {
                    Some(e) => match self.eval(e)? {
                        V::Bool(b) => b,
                        _ => return Err(Fallback),
                    },
                    None => true,
                };
                match obj.field(key.as_str())? {
                    Some((v, visible)) if visible || hidden_too => v,
                    _ => match args.get(2) {
                        Some(default) => self.eval(default)?,
                        None => V::Null,
                    },
                }
            }
            Ir::Has(obj, key, hidden_too) => {
                let obj = self.eval(obj)?;
                let V::Str(key) = self.eval(key)? else {
                    return Err(Fallback);
                };
                V::Bool(has(&obj, key.as_str(), *hidden_too)?)
            }
            Ir::Assert(cond, rest) => match self.eval(cond)? {
                V::Bool(true) => self.eval(rest)?,
                _ => return Err(Fallback),
            },
            Ir::Fail => return Err(Fallback),
            Ir::Call(id, args) => {
                let func = self.funcs.get(*id).ok_or(Fallback)?;
                let values = args.iter().map(|e| self.eval(e)).collect::<R<Vec<_>>>()?;
                for (slot, v) in func.params.iter().zip(values) {
                    self.env[*slot] = v;
                }
                self.eval(&func.body)?
            }
            Ir::Comp(specs, body) => {
                let mut items = Vec::new();
                self.comp(specs, body, &mut items)?;
                V::Arr(Rc::new(items))
            }
            Ir::Std(f, args) => {
                let args = args.iter().map(|e| self.eval(e)).collect::<R<Vec<_>>>()?;
                std_fn(*f, &args)?
            }
            Ir::Ctx(i) => match self.memo.get(*i) {
                Seen::Node(n) => V::of(n),
                _ => return Err(Fallback),
            },
            Ir::CtxHas(i) => match self.memo.get(*i) {
                Seen::Node(_) => V::Bool(true),
                Seen::Absent => V::Bool(false),
                _ => return Err(Fallback),
            },
        })
    }

    /// Evaluates `ir` and writes its value at `depth`, as `w.value(&self.eval(ir)?, depth)`
    /// would (the same evaluations in the same order, the same bytes), but writes objects
    /// with fixed names as their fields come instead of building them first.
    fn emit(&mut self, ir: &'a Ir, w: &mut Out<'_>, depth: usize) -> R<()> {
        match ir {
            Ir::Obj(obj) if obj.sorted && !obj.duplicate => {
                if depth >= MAX_DEPTH {
                    return Err(Fallback);
                }
                self.bind(&obj.locals)?;
                w.out.push('{');
                let mut first = true;
                for f in &obj.fields {
                    let Name::Fixed(key) = &f.name else {
                        return Err(Fallback);
                    };
                    if f.hidden {
                        // Evaluated all the same: its errors are the evaluator's to judge.
                        self.eval(&f.value)?;
                        continue;
                    }
                    if !first {
                        w.out.push(',');
                    }
                    first = false;
                    w.string(key)?;
                    w.out.push(':');
                    self.emit(&f.value, w, depth + 1)?;
                }
                w.out.push('}');
                w.fits()
            }
            Ir::Let(binds, body) => {
                self.bind(binds)?;
                self.emit(body, w, depth)
            }
            Ir::If(cond, then, other) => match self.eval(cond)? {
                V::Bool(true) => self.emit(then, w, depth),
                V::Bool(false) => match other {
                    Some(e) => self.emit(e, w, depth),
                    None => w.value(&V::Null, depth),
                },
                _ => Err(Fallback),
            },
            Ir::Ctx(i) => match self.memo.get(*i) {
                Seen::Node(n) => w.node(n, depth),
                _ => Err(Fallback),
            },
            _ => {
                let value = self.eval(ir)?;
                w.value(&value, depth)
            }
        }
    }

    fn comp(&mut self, specs: &'a [Spec], body: &'a Ir, out: &mut Vec<V<'a>>) -> R<()> {
        match specs.split_first() {
            None => out.push(self.eval(body)?),
            Some((Spec::For(slot, over), rest)) => {
                let items = self.eval(over)?;
                for i in 0..items.len()? {
                    self.iterations += 1;
                    if self.iterations > MAX_ITERATIONS {
                        return Err(Fallback);
                    }
                    self.env[*slot] = items.item(i)?;
                    self.comp(rest, body, out)?;
                }
            }
            Some((Spec::If(cond), rest)) => match self.eval(cond)? {
                V::Bool(true) => self.comp(rest, body, out)?,
                V::Bool(false) => {}
                _ => return Err(Fallback),
            },
        }
        Ok(())
    }

    fn bind(&mut self, binds: &'a [(usize, Ir)]) -> R<()> {
        for (slot, e) in binds {
            let v = self.eval(e)?;
            self.env[*slot] = v;
        }
        Ok(())
    }

    fn binary(&mut self, op: Bin, lhs: &'a Ir, rhs: &'a Ir) -> R<V<'a>> {
        let a = self.eval(lhs)?;
        // `&&` and `||` decide on the left operand alone when they can.
        match (op, &a) {
            (Bin::And, V::Bool(false)) => return Ok(V::Bool(false)),
            (Bin::Or, V::Bool(true)) => return Ok(V::Bool(true)),
            (Bin::And | Bin::Or, V::Bool(_)) => {
                return match self.eval(rhs)? {
                    V::Bool(b) => Ok(V::Bool(b)),
                    _ => Err(Fallback),
                }
            }
            (Bin::And | Bin::Or, _) => return Err(Fallback),
            _ => {}
        }
        let b = self.eval(rhs)?;
        Ok(match op {
            Bin::Eq => V::Bool(equals(&a, &b, 0)?),
            Bin::Neq => V::Bool(!equals(&a, &b, 0)?),
            Bin::In => match &a {
                V::Str(key) => V::Bool(has(&b, key.as_str(), true)?),
                _ => return Err(Fallback),
            },
            Bin::Add => match (&a, &b) {
                (V::Str(x), V::Str(y)) => {
                    let mut s = String::with_capacity(x.as_str().len() + y.as_str().len());
                    s.push_str(x.as_str());
                    s.push_str(y.as_str());
                    V::Str(S::O(s.into()))
                }
                (V::Num(x), V::Num(y)) if (x + y).is_finite() => V::Num(x + y),
                _ if a.kind() == Kind::Arr && b.kind() == Kind::Arr => {
                    let (n, m) = (a.len()?, b.len()?);
                    let mut items = Vec::with_capacity(n + m);
                    for i in 0..n {
                        items.push(a.item(i)?);
                    }
                    for i in 0..m {
                        items.push(b.item(i)?);
                    }
                    V::Arr(Rc::new(items))
                }
                _ => return Err(Fallback),
            },
            Bin::Lt | Bin::Gt | Bin::Lte | Bin::Gte => match (&a, &b) {
                (V::Num(x), V::Num(y)) => V::Bool(match op {
                    Bin::Lt => x < y,
                    Bin::Gt => x > y,
                    Bin::Lte => x <= y,
                    _ => x >= y,
                }),
                _ => return Err(Fallback),
            },
            Bin::And | Bin::Or => return Err(Fallback),
        })
    }
}

/// The standard library functions of the subset, on strings and arrays only.
fn std_fn<'a>(f: StdFn, args: &[V<'a>]) -> R<V<'a>> {
    let text = |v: &V<'a>| match v {
        V::Str(s) => Ok(s.as_str().to_owned()),
        _ => Err(Fallback),
    };
    Ok(match (f, args) {
        (StdFn::Length, [v]) => V::Num(match v {
            V::Str(s) => s.as_str().chars().count(),
            _ if v.kind() == Kind::Arr => v.len()?,
            _ if v.kind() == Kind::Obj => v.visible_keys().len(),
            _ => return Err(Fallback),
        } as f64),
        (StdFn::StrReplace, [V::Str(s), V::Str(from), V::Str(to)]) if !from.as_str().is_empty() => {
            V::Str(S::O(s.as_str().replace(from.as_str(), to.as_str()).into()))
        }
        (StdFn::Join, [V::Str(sep), items]) => {
            let mut out = String::new();
            for i in 0..items.len()? {
                if i > 0 {
                    out.push_str(sep.as_str());
                }
                out.push_str(&text(&items.item(i)?)?);
            }
            V::Str(S::O(out.into()))
        }
        (StdFn::Format, [V::Str(fmt), values]) => {
            let values: Vec<V<'a>> = if values.kind() == Kind::Arr {
                (0..values.len()?)
                    .map(|i| values.item(i))
                    .collect::<R<_>>()?
            } else {
                vec![values.clone()]
            };
            let mut next = values.iter();
            let mut out = String::new();
            let mut chars = fmt.as_str().chars();
            while let Some(c) = chars.next() {
                if c != '%' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('%') => out.push('%'),
                    Some('s') => out.push_str(&text(next.next().ok_or(Fallback)?)?),
                    _ => return Err(Fallback),
                }
            }
            if next.next().is_some() {
                return Err(Fallback);
            }
            V::Str(S::O(out.into()))
        }
        _ => return Err(Fallback),
    })
}

fn has(obj: &V<'_>, key: &str, hidden_too: bool) -> R<bool> {
    Ok(match obj.field(key)? {
        Some((_, visible)) => visible || hidden_too,
        None => false,
    })
}

/// jrsonnet's `==`: false across types, deep on arrays and on objects' visible fields.
fn equals(a: &V<'_>, b: &V<'_>, depth: usize) -> R<bool> {
    if depth > MAX_DEPTH {
        return Err(Fallback);
    }
    if a.kind() != b.kind() {
        return Ok(false);
    }
    Ok(match (a, b) {
        (V::Null, V::Null) => true,
        (V::Bool(x), V::Bool(y)) => x == y,
        (V::Num(x), V::Num(y)) => x == y,
        (V::Str(x), V::Str(y)) => x.as_str() == y.as_str(),
        _ if a.kind() == Kind::Arr => {
            let n = a.len()?;
            if n != b.len()? {
                return Ok(false);
            }
            for i in 0..n {
                if !equals(&a.item(i)?, &b.item(i)?, depth + 1)? {
                    return Ok(false);
                }
            }
            true
        }
        _ => {
            let keys = a.visible_keys();
            if keys != b.visible_keys() {
                return Ok(false);
            }
            for key in keys {
                let (Some((x, _)), Some((y, _))) = (a.field(key)?, b.field(key)?) else {
                    return Err(Fallback);
                };
                if !equals(&x, &y, depth + 1)? {
                    return Ok(false);
                }
            }
            true
        }
    })
}

/// The payload writer: the evaluator's layout, declining past the output cap or the nesting
/// limit (the evaluator reports those).
struct Out<'o> {
    out: &'o mut String,
    cap: usize,
}

impl Out<'_> {
    fn fits(&self) -> R<()> {
        if self.out.len() > self.cap {
            Err(Fallback)
        } else {
            Ok(())
        }
    }

    fn string(&mut self, s: &str) -> R<()> {
        self.out.push('"');
        escape_into(s, self.out);
        self.out.push('"');
        self.fits()
    }

    fn value(&mut self, v: &V<'_>, depth: usize) -> R<()> {
        if depth >= MAX_DEPTH {
            return Err(Fallback);
        }
        match v {
            V::Null => self.out.push_str("null"),
            V::Bool(true) => self.out.push_str("true"),
            V::Bool(false) => self.out.push_str("false"),
            V::Num(n) => write_num(*n, self.out),
            V::Str(s) => self.string(s.as_str())?,
            V::Node(node) => self.node(node, depth)?,
            V::Arr(items) => {
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.value(item, depth + 1)?;
                }
                self.out.push(']');
            }
            V::Obj(members) => {
                self.out.push('{');
                let mut first = true;
                for m in members.iter().filter(|m| m.visible) {
                    if !first {
                        self.out.push(',');
                    }
                    first = false;
                    self.string(m.key.as_str())?;
                    self.out.push(':');
                    self.value(&m.value, depth + 1)?;
                }
                self.out.push('}');
            }
        }
        self.fits()
    }

    fn node(&mut self, node: &Node<'_>, depth: usize) -> R<()> {
        if depth >= MAX_DEPTH {
            return Err(Fallback);
        }
        match node {
            Node::Null => self.out.push_str("null"),
            Node::Bool(true) => self.out.push_str("true"),
            Node::Bool(false) => self.out.push_str("false"),
            Node::Num(n) => write_num(*n, self.out),
            Node::Str(s) => self.string(s)?,
            Node::Arr(items) => {
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.node(item, depth + 1)?;
                }
                self.out.push(']');
            }
            Node::Obj(members) => {
                self.out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.string(key)?;
                    self.out.push(':');
                    self.node(value, depth + 1)?;
                }
                self.out.push('}');
            }
        }
        self.fits()
    }
}
