//! Sprig's template functions for the `gotmpl` engine, with Go's semantics.
//!
//! [`hermetic_txt_funcs`] and [`hermetic_html_funcs`] hold the functions of
//! Sprig 3.2.3's `HermeticTxtFuncMap` / `HermeticHtmlFuncMap` (what custom
//! templates may call); [`txt_funcs`] is the set for built-in templates.
//! Functions in [`OMITTED`] are registered but fail when called, naming
//! themselves; non-hermetic functions (`now`, `env`, `randAlpha`, ...) are not
//! registered at all, and [`check_functions`] reports any call to an undefined
//! function at parse time, as Go does (gotmpl itself only notices when the
//! call executes).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, OnceLock};

use gotmpl::parse::{Expr, ListNode, Node, PipeNode};
use gotmpl::{FuncMap, Result, TemplateError, Value};

mod case;
mod dicts;
mod durations;
mod encoding;
mod lists;
mod math;
mod misc;
mod regex_fns;
mod semver;
mod strings;
mod url;
mod value;

/// One function: its template name and implementation.
pub(crate) type Entry = (&'static str, fn(&[Value]) -> Result<Value>);

/// Sprig functions deliberately left out, with the reason; calling one is an
/// error naming it.
pub const OMITTED: &[(&str, &str)] = &[
    (
        "bcrypt",
        "password hashing is not a message-template concern",
    ),
    (
        "htpasswd",
        "password hashing is not a message-template concern",
    ),
    (
        "derivePassword",
        "password derivation is not a message-template concern",
    ),
    ("genPrivateKey", "cryptographic key generation"),
    ("genCA", "certificate generation"),
    ("genCAWithKey", "certificate generation"),
    ("genSelfSignedCert", "certificate generation"),
    ("genSelfSignedCertWithKey", "certificate generation"),
    ("genSignedCert", "certificate generation"),
    ("genSignedCertWithKey", "certificate generation"),
    ("buildCustomCert", "certificate generation"),
    ("encryptAES", "encryption"),
    ("decryptAES", "encryption"),
    (
        "ago",
        "date/time values: template data carries no Go time.Time",
    ),
    (
        "toDate",
        "date/time values: template data carries no Go time.Time",
    ),
    (
        "mustToDate",
        "date/time values: template data carries no Go time.Time",
    ),
    (
        "unixEpoch",
        "date/time values: template data carries no Go time.Time",
    ),
    (
        "mustDateModify",
        "date/time values: template data carries no Go time.Time",
    ),
    (
        "must_date_modify",
        "date/time values: template data carries no Go time.Time",
    ),
];

/// Sprig's non-hermetic functions: absent from the hermetic maps (and from
/// [`txt_funcs`]), so templates calling them fail to parse.
pub const NON_HERMETIC: &[&str] = &[
    "date",
    "date_in_zone",
    "date_modify",
    "now",
    "htmlDate",
    "htmlDateInZone",
    "dateInZone",
    "dateModify",
    "randAlphaNum",
    "randAlpha",
    "randAscii",
    "randNumeric",
    "randBytes",
    "uuidv4",
    "env",
    "expandenv",
    "getHostByName",
];

const GROUPS: &[&[Entry]] = &[
    strings::FUNCS,
    lists::FUNCS,
    dicts::FUNCS,
    durations::FUNCS,
    math::FUNCS,
    encoding::FUNCS,
    regex_fns::FUNCS,
    semver::FUNCS,
    misc::FUNCS,
    url::FUNCS,
];

/// The registered set, built once (cloning shares the function `Arc`s).
fn build() -> FuncMap {
    static FUNCS: OnceLock<FuncMap> = OnceLock::new();
    FUNCS.get_or_init(build_uncached).clone()
}

fn build_uncached() -> FuncMap {
    let mut m = FuncMap::new();
    for group in GROUPS {
        for (name, f) in group.iter() {
            let f = *f;
            m.insert((*name).to_string(), Arc::new(f));
        }
    }
    for (name, why) in OMITTED {
        let msg =
            format!("error calling {name}: {name} is not available in courier templates ({why})");
        m.insert(
            (*name).to_string(),
            Arc::new(move |_: &[Value]| -> Result<Value> { Err(TemplateError::Exec(msg.clone())) }),
        );
    }
    m
}

/// Sprig's `HermeticTxtFuncMap`: the functions custom text templates may call.
pub fn hermetic_txt_funcs() -> FuncMap {
    build()
}

/// Sprig's `HermeticHtmlFuncMap` (the same functions; html/template escapes
/// their results by context).
pub fn hermetic_html_funcs() -> FuncMap {
    build()
}

/// The functions for built-in templates: the hermetic set (the non-hermetic
/// ones are not implemented).
pub fn txt_funcs() -> FuncMap {
    build()
}

/// Names gotmpl defines itself (Go's text/template builtins).
const BUILTINS: &[&str] = &[
    "and", "call", "eq", "ge", "gt", "html", "index", "js", "le", "len", "lt", "ne", "not", "or",
    "print", "printf", "println", "slice", "urlquery",
];

/// A template calls a function that is neither a builtin nor registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndefinedFunction {
    /// The template (or `define`) holding the call.
    pub template: String,
    /// The function's name.
    pub function: String,
    /// 1-based line of the call.
    pub line: usize,
    /// Byte offset of the call in the template source.
    pub offset: usize,
}

impl fmt::Display for UndefinedFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "template: {}:{}: function {:?} not defined",
            self.template, self.line, self.function
        )
    }
}

impl std::error::Error for UndefinedFunction {}

/// Go's parse-time check that every called function exists, over the parsed
/// trees of a template set (e.g. `t.templates()` with `t.lookup(name)`).
pub fn check_functions<'a>(
    trees: impl IntoIterator<Item = (&'a str, &'a ListNode)>,
    funcs: &FuncMap,
) -> std::result::Result<(), UndefinedFunction> {
    let builtins: BTreeSet<&str> = BUILTINS.iter().copied().collect();
    let defined = |name: &str| builtins.contains(name) || funcs.contains_key(name);
    for (template, tree) in trees {
        let mut found = None;
        walk_list(tree, &defined, &mut found);
        if let Some((function, pos)) = found {
            return Err(UndefinedFunction {
                template: template.to_string(),
                function,
                line: pos.line,
                offset: pos.offset,
            });
        }
    }
    Ok(())
}

type Found = Option<(String, gotmpl::parse::Pos)>;

fn walk_list(l: &ListNode, defined: &dyn Fn(&str) -> bool, found: &mut Found) {
    for n in &l.nodes {
        if found.is_some() {
            return;
        }
        match n {
            Node::List(inner) => walk_list(inner, defined, found),
            Node::Action(a) => walk_pipe(&a.pipe, defined, found),
            Node::If(b) | Node::Range(b) | Node::With(b) => {
                walk_pipe(&b.pipe, defined, found);
                walk_list(&b.body, defined, found);
                if let Some(e) = &b.else_body {
                    walk_list(e, defined, found);
                }
            }
            Node::Template(t) => {
                if let Some(p) = &t.pipe {
                    walk_pipe(p, defined, found);
                }
            }
            Node::Define(d) => walk_list(&d.body, defined, found),
            Node::Text(_) | Node::Break(_) | Node::Continue(_) => {}
        }
    }
}

fn walk_pipe(p: &PipeNode, defined: &dyn Fn(&str) -> bool, found: &mut Found) {
    for cmd in &p.commands {
        for e in &cmd.args {
            walk_expr(e, defined, found);
        }
    }
}

fn walk_expr(e: &Expr, defined: &dyn Fn(&str) -> bool, found: &mut Found) {
    if found.is_some() {
        return;
    }
    match e {
        Expr::Identifier(pos, name) if !defined(name) => *found = Some((name.to_string(), *pos)),
        Expr::Pipe(_, p) => walk_pipe(p, defined, found),
        Expr::Chain(_, inner, _) => walk_expr(inner, defined, found),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str) -> std::result::Result<String, String> {
        let t = gotmpl::Template::new("t")
            .funcs(hermetic_txt_funcs())
            .parse(src)
            .map_err(|e| e.to_string())?;
        let trees = t
            .templates()
            .into_iter()
            .filter_map(|n| t.lookup(n).map(|l| (n, l)));
        check_functions(trees, &hermetic_txt_funcs()).map_err(|e| e.to_string())?;
        t.execute_to_string(&Value::Nil).map_err(|e| e.to_string())
    }

    #[test]
    fn non_hermetic_functions_fail_at_parse_naming_the_function() {
        let funcs = hermetic_txt_funcs();
        for name in NON_HERMETIC {
            assert!(!funcs.contains_key(*name), "{name} is registered");
        }
        let err = render(
            "line one\n{{if false}}{{define \"x\"}}{{end}}{{end}}{{if false}}\n{{now}}{{end}}",
        )
        .expect_err("now is undefined");
        assert_eq!(err, "template: t:3: function \"now\" not defined");
        let err = render("{{define \"fr\"}}{{ env \"HOME\" | upper }}{{end}}ok").expect_err("env");
        assert_eq!(err, "template: fr:1: function \"env\" not defined");
        assert_eq!(
            render("{{ upper (lower \"A\") | printf \"%s!\" }}").as_deref(),
            Ok("A!")
        );
    }

    #[test]
    fn omitted_functions_error_naming_themselves() {
        for (name, why) in OMITTED {
            let err = render(&format!("{{{{ {name} \"x\" }}}}")).expect_err(name);
            assert!(err.contains(name) && err.contains(why), "{name}: {err}");
        }
    }

    #[test]
    fn txt_and_html_sets_hold_the_same_functions() {
        let txt: Vec<String> = hermetic_txt_funcs().into_keys().collect();
        let html: Vec<String> = hermetic_html_funcs().into_keys().collect();
        let all: Vec<String> = txt_funcs().into_keys().collect();
        assert_eq!(txt, html);
        assert_eq!(txt, all);
        assert!(
            txt.len() - OMITTED.len() >= 150,
            "{} implemented",
            txt.len() - OMITTED.len()
        );
    }

    #[test]
    fn bad_arguments_are_errors_not_panics() {
        for src in [
            "{{ split }}",
            "{{ split \"a\" }}",
            "{{ repeat 100000000000 \"ab\" }}",
            "{{ indent 100000000000 \"a\" }}",
            "{{ until 100000000000 }}",
            "{{ seq 9223372036854775807 }}",
            "{{ substr 3 1 \"hello\" }}",
            "{{ dig }}",
            "{{ upper }}",
            "{{ chunk -1 (list 1) }}",
            "{{ div 1 0 }}",
            "{{ divf 1 0 }}",
            "{{ regexFind \"(\" \"x\" }}",
        ] {
            assert!(render(src).is_err(), "{src} should fail");
        }
        assert_eq!(
            render("{{ mod -9223372036854775807 -1 }}").as_deref(),
            Ok("0")
        );
        assert_eq!(
            render("{{ add 9223372036854775807 1 }}").as_deref(),
            Ok("-9223372036854775808")
        );
    }

    #[test]
    fn random_functions_stay_in_bounds() {
        for _ in 0..200 {
            let n: i64 = render("{{ randInt 3 6 }}")
                .expect("randInt")
                .parse()
                .expect("int");
            assert!((3..6).contains(&n), "{n}");
        }
        assert!(render("{{ randInt 5 5 }}").is_err());
        let shuffled = render("{{ shuffle \"héllo wörld\" }}").expect("shuffle");
        let mut a: Vec<char> = shuffled.chars().collect();
        let mut b: Vec<char> = "héllo wörld".chars().collect();
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b);
    }
}
