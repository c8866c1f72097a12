//! Numbers the ctx paths a template reads (`ctx.a.b`), once at compile time, so that a render
//! looks each one up at most once however often the template reads or tests it.
//!
//! Templates test and read the same few paths over and over: the shipped default evaluates
//! `"TemplateData" in ctx` and `ctx.TemplateData` some twenty times per render, each a member
//! search with key compares. Here every distinct path gets a number (its parent's before its
//! own), `ctx.a.b` becomes [`Ir::Ctx`] and `"k" in ctx.a` (or `std.objectHas(ctx.a, "k")`)
//! becomes [`Ir::CtxHas`] of the path `ctx.a.k`; the render keeps one [`Seen`] per number.

use super::compile::{Bin, Ir, Name, Program, Spec};
use super::node::Node;

/// A numbered path: its parent's number (`None` for a member of the ctx itself) and the key.
pub(super) type Path = (Option<usize>, Box<str>);

/// Rewrites `program`'s ctx reads into numbered paths, filling `program.paths`.
pub(super) fn number(program: &mut Program) {
    let mut paths = Vec::new();
    rewrite(&mut program.root, &mut paths);
    for f in &mut program.funcs {
        rewrite(&mut f.body, &mut paths);
    }
    program.paths = paths;
}

/// The number of `ir` as a ctx path (`None` for the ctx itself), numbering it if new; `Err`
/// when `ir` is not a pure ctx path.
fn of(ir: &Ir, paths: &mut Vec<Path>) -> Result<Option<usize>, ()> {
    match ir {
        Ir::Local(0) => Ok(None),
        Ir::Ctx(i) => Ok(Some(*i)),
        Ir::Field(e, key) => {
            let parent = of(e, paths)?;
            Ok(Some(child(parent, key, paths)))
        }
        _ => Err(()),
    }
}

fn child(parent: Option<usize>, key: &str, paths: &mut Vec<Path>) -> usize {
    match paths.iter().position(|(p, k)| *p == parent && &**k == key) {
        Some(i) => i,
        None => {
            paths.push((parent, key.into()));
            paths.len() - 1
        }
    }
}

fn rewrite(ir: &mut Ir, paths: &mut Vec<Path>) {
    if let Ir::Field(..) = ir {
        if let Ok(Some(i)) = of(ir, paths) {
            *ir = Ir::Ctx(i);
            return;
        }
    }
    let has = match &*ir {
        Ir::Bin(Bin::In, key, obj) => Some((key, obj)),
        Ir::Has(obj, key, _) => Some((key, obj)),
        _ => None,
    };
    if let Some((Ir::Str(k), obj)) = has.map(|(k, o)| (&**k, &**o)) {
        // Ctx nodes are all visible: `objectHas` and `objectHasAll` agree on them.
        if let Ok(parent) = of(obj, paths) {
            *ir = Ir::CtxHas(child(parent, k, paths));
            return;
        }
    }
    match ir {
        Ir::Null
        | Ir::Bool(_)
        | Ir::Num(_)
        | Ir::Str(_)
        | Ir::Local(_)
        | Ir::Fail
        | Ir::Ctx(_)
        | Ir::CtxHas(_) => {}
        Ir::Arr(items) => items.iter_mut().for_each(|e| rewrite(e, paths)),
        Ir::Obj(obj) => {
            for (_, e) in &mut obj.locals {
                rewrite(e, paths);
            }
            for f in &mut obj.fields {
                if let Name::Dyn(e) = &mut f.name {
                    rewrite(e, paths);
                }
                rewrite(&mut f.value, paths);
            }
        }
        Ir::Field(e, _) | Ir::Not(e) | Ir::Neg(e) => rewrite(e, paths),
        Ir::Index(a, b) | Ir::Bin(_, a, b) | Ir::Assert(a, b) | Ir::Has(a, b, _) => {
            rewrite(a, paths);
            rewrite(b, paths);
        }
        Ir::If(c, t, e) => {
            rewrite(c, paths);
            rewrite(t, paths);
            if let Some(e) = e {
                rewrite(e, paths);
            }
        }
        Ir::Let(binds, body) => {
            for (_, e) in binds {
                rewrite(e, paths);
            }
            rewrite(body, paths);
        }
        Ir::StdGet(args) | Ir::Call(_, args) | Ir::Std(_, args) => {
            args.iter_mut().for_each(|e| rewrite(e, paths))
        }
        Ir::Comp(specs, body) => {
            for s in specs.iter_mut() {
                match s {
                    Spec::For(_, e) | Spec::If(e) => rewrite(e, paths),
                }
            }
            rewrite(body, paths);
        }
    }
}

/// What a render found at a numbered path.
#[derive(Clone, Copy)]
pub(super) enum Seen<'a> {
    /// Not looked up yet.
    Unknown,
    Node(&'a Node<'a>),
    /// The parent is an object without this key.
    Absent,
    /// The parent is not there or not an object: reading or testing the path is an error.
    Bad,
}

/// Looks up numbered paths over one ctx, each at most once.
pub(super) struct Memo<'a, 's> {
    root: &'a Node<'a>,
    paths: &'a [Path],
    /// One per path, all [`Seen::Unknown`] to begin with.
    seen: &'s mut [Seen<'a>],
}

impl<'a, 's> Memo<'a, 's> {
    pub(super) fn new(root: &'a Node<'a>, paths: &'a [Path], seen: &'s mut [Seen<'a>]) -> Self {
        debug_assert_eq!(seen.len(), paths.len());
        Memo { root, paths, seen }
    }

    pub(super) fn get(&mut self, i: usize) -> Seen<'a> {
        let seen = self.seen[i];
        if !matches!(seen, Seen::Unknown) {
            return seen;
        }
        let (parent, key) = &self.paths[i];
        let parent = match parent {
            Some(p) => match self.get(*p) {
                Seen::Node(n) => n,
                _ => {
                    self.seen[i] = Seen::Bad;
                    return Seen::Bad;
                }
            },
            None => self.root,
        };
        let seen = match parent {
            Node::Obj(members) => match Node::member(members, key) {
                Some(n) => Seen::Node(n),
                None => Seen::Absent,
            },
            _ => Seen::Bad,
        };
        self.seen[i] = seen;
        seen
    }
}
