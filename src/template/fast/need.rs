//! Which parts of the ctx a compiled template can read, so that rendering builds only those.
//!
//! A ctx carries far more than a template reads (the whole identity, request headers, both
//! bodies). Paths the template reads by name (`ctx.a.b`, `"k" in ctx.a`, `std.get(ctx.a, "k")`)
//! are kept; anything the ctx flows into otherwise (output, `==`, a local, a loop) keeps that
//! whole subtree. The rest of the text is still parsed and validated by serde_json, exactly as
//! for the evaluator, but nothing is built for it.

use super::compile::{Ir, Name, Program, Spec};

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
    walk(&program.root, &mut need);
    for f in &program.funcs {
        walk(&f.body, &mut need);
    }
    need
}

/// `ctx.a.b` as `["a", "b"]`.
fn path(ir: &Ir) -> Option<Vec<&str>> {
    match ir {
        Ir::Local(0) => Some(Vec::new()),
        Ir::Field(e, key) => {
            let mut p = path(e)?;
            p.push(key);
            Some(p)
        }
        _ => None,
    }
}

fn walk(ir: &Ir, need: &mut Need) {
    if let Some(p) = path(ir) {
        need.add(&p, Need::Full);
        return;
    }
    match ir {
        Ir::Null | Ir::Bool(_) | Ir::Num(_) | Ir::Str(_) | Ir::Local(_) | Ir::Fail => {}
        Ir::Bin(super::compile::Bin::In, key, obj) => match (&**key, path(obj)) {
            (Ir::Str(k), Some(mut p)) => {
                p.push(k);
                need.add(&p, Need::Keys(Vec::new()));
            }
            _ => {
                walk(key, need);
                walk(obj, need);
            }
        },
        Ir::Has(obj, key, _) => match (&**key, path(obj)) {
            (Ir::Str(k), Some(mut p)) => {
                p.push(k);
                need.add(&p, Need::Keys(Vec::new()));
            }
            _ => {
                walk(obj, need);
                walk(key, need);
            }
        },
        Ir::StdGet(args) => {
            match (path(&args[0]), &args[1]) {
                (Some(mut p), Ir::Str(k)) => {
                    p.push(k);
                    need.add(&p, Need::Full);
                }
                _ => {
                    walk(&args[0], need);
                    walk(&args[1], need);
                }
            }
            for a in &args[2..] {
                walk(a, need);
            }
        }
        Ir::Arr(items) => items.iter().for_each(|e| walk(e, need)),
        Ir::Obj(obj) => {
            for (_, e) in &obj.locals {
                walk(e, need);
            }
            for f in &obj.fields {
                if let Name::Dyn(e) = &f.name {
                    walk(e, need);
                }
                walk(&f.value, need);
            }
        }
        Ir::Field(e, _) | Ir::Not(e) | Ir::Neg(e) => walk(e, need),
        Ir::Index(a, b) | Ir::Bin(_, a, b) | Ir::Assert(a, b) => {
            walk(a, need);
            walk(b, need);
        }
        Ir::If(c, t, e) => {
            walk(c, need);
            walk(t, need);
            if let Some(e) = e {
                walk(e, need);
            }
        }
        Ir::Let(binds, body) => {
            for (_, e) in binds {
                walk(e, need);
            }
            walk(body, need);
        }
        Ir::Call(_, args) | Ir::Std(_, args) => args.iter().for_each(|e| walk(e, need)),
        Ir::Comp(specs, body) => {
            for s in specs.iter() {
                match s {
                    Spec::For(_, e) | Spec::If(e) => walk(e, need),
                }
            }
            walk(body, need);
        }
    }
}
