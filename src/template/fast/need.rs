//! Which parts of the ctx a compiled template can read, so that rendering builds only those.
//!
//! A ctx carries far more than a template reads (the whole identity, request headers, both
//! bodies). Paths the template reads by name (`ctx.a.b`, `"k" in ctx.a`, `std.get(ctx.a, "k")`)
//! are kept; anything the ctx flows into otherwise (output, `==`, a local, a loop) keeps that
//! whole subtree. The rest of the text is still parsed and validated by serde_json, exactly as
//! for the evaluator, but nothing is built for it.

use super::compile::{Ir, Name, Program, Spec};
use super::paths::Path;

/// What to build of a ctx value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Need {
    /// The whole value.
    Full,
    /// For an object, only these members (each with its own need); other values whole.
    Keys(Vec<(Box<str>, Need)>),
}

impl Need {
    fn add(&mut self, path: &[&str], leaf: Need) {
        let Need::Keys(keys) = self else {
            return;
        };
        let Some((first, rest)) = path.split_first() else {
            match leaf {
                Need::Full => *self = Need::Full,
                Need::Keys(more) => {
                    for (k, n) in more {
                        self.add(&[&k], n);
                    }
                }
            }
            return;
        };
        let i = match keys.iter().position(|(k, _)| &**k == *first) {
            Some(i) => i,
            None => {
                keys.push(((*first).into(), Need::Keys(Vec::new())));
                keys.len() - 1
            }
        };
        keys[i].1.add(rest, leaf);
    }

    /// The need of member `key`, if it is to be built.
    pub(super) fn member(&self, key: &str) -> Option<&Need> {
        match self {
            Need::Full => Some(self),
            Need::Keys(keys) => keys.iter().find(|(k, _)| &**k == key).map(|(_, n)| n),
        }
    }
}

/// The ctx need of `program`.
pub(super) fn of(program: &Program) -> Need {
    let mut need = Need::Keys(Vec::new());
    let mut w = Walk {
        paths: &program.paths,
        need: &mut need,
    };
    w.walk(&program.root);
    for f in &program.funcs {
        w.walk(&f.body);
    }
    need
}

struct Walk<'p, 'n> {
    /// The program's numbered ctx paths.
    paths: &'p [Path],
    need: &'n mut Need,
}

impl<'p> Walk<'p, '_> {
    /// The keys of numbered path `i`.
    fn numbered(&self, i: usize) -> Vec<&'p str> {
        let (parent, key) = &self.paths[i];
        let mut p = parent.map_or_else(Vec::new, |j| self.numbered(j));
        p.push(key);
        p
    }

    /// The ctx itself as `[]`, a numbered ctx path (`ctx.a.b`, see `paths.rs`) as `["a", "b"]`.
    /// Every pure ctx path was numbered before this walk, and so was every `"k" in` or
    /// `std.objectHas` test of one ([`Ir::CtxHas`]).
    fn path<'i>(&self, ir: &'i Ir) -> Option<Vec<&'i str>>
    where
        'p: 'i,
    {
        match ir {
            Ir::Local(0) => Some(Vec::new()),
            Ir::Ctx(i) => Some(self.numbered(*i)),
            _ => None,
        }
    }

    fn walk(&mut self, ir: &Ir) {
        if let Some(p) = self.path(ir) {
            self.need.add(&p, Need::Full);
            return;
        }
        if let Ir::CtxHas(i) = ir {
            let p = self.numbered(*i);
            self.need.add(&p, Need::Keys(Vec::new()));
            return;
        }
        walk(ir, self);
    }
}

fn walk(ir: &Ir, w: &mut Walk<'_, '_>) {
    match ir {
        Ir::Null
        | Ir::Bool(_)
        | Ir::Num(_)
        | Ir::Str(_)
        | Ir::Local(_)
        | Ir::Fail
        | Ir::Ctx(_)
        | Ir::CtxHas(_) => {}
        Ir::StdGet(args) => {
            match (w.path(&args[0]), &args[1]) {
                (Some(mut p), Ir::Str(k)) => {
                    p.push(k);
                    w.need.add(&p, Need::Full);
                }
                _ => {
                    w.walk(&args[0]);
                    w.walk(&args[1]);
                }
            }
            for a in &args[2..] {
                w.walk(a);
            }
        }
        Ir::Arr(items) => items.iter().for_each(|e| w.walk(e)),
        Ir::Obj(obj) => {
            for (_, e) in &obj.locals {
                w.walk(e);
            }
            for f in &obj.fields {
                if let Name::Dyn(e) = &f.name {
                    w.walk(e);
                }
                w.walk(&f.value);
            }
        }
        Ir::Field(e, _) | Ir::Not(e) | Ir::Neg(e) => w.walk(e),
        Ir::Index(a, b) | Ir::Bin(_, a, b) | Ir::Assert(a, b) | Ir::Has(a, b, _) => {
            w.walk(a);
            w.walk(b);
        }
        Ir::If(c, t, e) => {
            w.walk(c);
            w.walk(t);
            if let Some(e) = e {
                w.walk(e);
            }
        }
        Ir::Let(binds, body) => {
            for (_, e) in binds {
                w.walk(e);
            }
            w.walk(body);
        }
        Ir::Call(_, args) | Ir::Std(_, args) => args.iter().for_each(|e| w.walk(e)),
        Ir::Comp(specs, body) => {
            for s in specs.iter() {
                match s {
                    Spec::For(_, e) | Spec::If(e) => w.walk(e),
                }
            }
            w.walk(body);
        }
    }
}
