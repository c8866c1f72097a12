//! One compiled Go template (text/template or html/template through `gotmpl`), shared across
//! threads, and the function sets installed into it.

use std::path::Path;

use gotmpl::parse::ListNode;
use gotmpl::{FuncMap, Value};

/// Which functions a template gets, as the reference decides: its built-in templates get every
/// Sprig function, custom ones (config URIs and the override folder) only the hermetic set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Funcs {
    /// Built-in text template.
    BuiltinText,
    /// Built-in HTML template.
    BuiltinHtml,
    /// Custom text template: hermetic functions only.
    CustomText,
    /// Custom HTML template: hermetic functions only.
    CustomHtml,
}

impl Funcs {
    /// The set for a built-in (`custom == false`) or custom template, HTML or text.
    pub fn of(custom: bool, html: bool) -> Self {
        match (custom, html) {
            (false, false) => Self::BuiltinText,
            (false, true) => Self::BuiltinHtml,
            (true, false) => Self::CustomText,
            (true, true) => Self::CustomHtml,
        }
    }
}

/// The functions installed into a template on top of Go's builtins (`printf`, `index`, `eq`...):
/// Sprig's. This is the one place they enter message templates.
pub fn funcs(kind: Funcs) -> FuncMap {
    match kind {
        Funcs::BuiltinText | Funcs::BuiltinHtml => courier_sprig::txt_funcs(),
        Funcs::CustomText => courier_sprig::hermetic_txt_funcs(),
        Funcs::CustomHtml => courier_sprig::hermetic_html_funcs(),
    }
}

/// A template that failed to parse or render. The text names the template and, where the
/// engine knows it, `line:col` (parse errors always; render errors carry no position).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GoTemplateError(pub String);

#[derive(Clone)]
enum Kind {
    Text(gotmpl::Template),
    Html(gotmpl::html::Template),
}

/// A parsed Go template: cheap to clone (`Arc` inside), `Send + Sync`, no per-render parse.
#[derive(Clone)]
pub struct GoTemplate {
    name: String,
    kind: Kind,
}

impl std::fmt::Debug for GoTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoTemplate")
            .field("name", &self.name)
            .field("html", &matches!(self.kind, Kind::Html(_)))
            .finish()
    }
}

fn err(name: &str, e: &gotmpl::TemplateError) -> GoTemplateError {
    let text = e.to_string();
    // Parse and escape errors already name the template as Go does (`template: NAME:3:7: ...`).
    if text.starts_with("template: ") || text.starts_with("html/template") {
        GoTemplateError(text)
    } else {
        GoTemplateError(format!("template: {name}: {text}"))
    }
}

impl GoTemplate {
    /// Parses `source` as template `name`, with html/template escaping when `html`.
    ///
    /// # Errors
    /// The first syntax error, or an HTML escaping error, with `name:line:col`.
    pub fn parse(
        name: &str,
        source: &str,
        html: bool,
        funcs: Funcs,
    ) -> Result<Self, GoTemplateError> {
        let kind = if html {
            let t = gotmpl::html::Template::new(name)
                .funcs(self::funcs(funcs))
                .parse(source)
                .map_err(|e| err(name, &e))?;
            Kind::Html(t)
        } else {
            let t = gotmpl::Template::new(name)
                .funcs(self::funcs(funcs))
                .parse(source)
                .map_err(|e| err(name, &e))?;
            Kind::Text(t)
        };
        Self::ready(name.to_owned(), kind, funcs)
    }

    /// Parses `files` together, as Go's `ParseFiles`: the template is the file whose base name is
    /// `main`, and every file's `define`s are visible to it (a later file's wins).
    ///
    /// # Errors
    /// As [`Self::parse`], or an unreadable file.
    pub fn parse_files(
        main: &str,
        files: &[&Path],
        html: bool,
        funcs: Funcs,
    ) -> Result<Self, GoTemplateError> {
        let paths: Vec<&str> = files.iter().filter_map(|p| p.to_str()).collect();
        if paths.len() != files.len() {
            return Err(GoTemplateError(format!(
                "template: {main}: a file name is not UTF-8"
            )));
        }
        let kind = if html {
            Kind::Html(
                gotmpl::html::Template::new(main)
                    .funcs(self::funcs(funcs))
                    .parse_files(&paths)
                    .map_err(|e| err(main, &e))?,
            )
        } else {
            Kind::Text(
                gotmpl::Template::new(main)
                    .funcs(self::funcs(funcs))
                    .parse_files(&paths)
                    .map_err(|e| err(main, &e))?,
            )
        };
        Self::ready(main.to_owned(), kind, funcs)
    }

    /// Checks that every function named exists, as Go's parser does (`gotmpl` alone would only
    /// fail at render), and runs html/template's escaping pass now (it is lazy in `gotmpl`), so escaping
    /// errors are load errors and every clone shares the escaped set.
    fn ready(name: String, kind: Kind, funcs: Funcs) -> Result<Self, GoTemplateError> {
        let trees: Vec<(&str, &ListNode)> = match &kind {
            Kind::Text(t) => t
                .templates()
                .into_iter()
                .filter_map(|n| t.lookup(n).map(|tree| (n, tree)))
                .collect(),
            Kind::Html(t) => t
                .templates()
                .into_iter()
                .filter_map(|n| t.lookup(n).map(|tree| (n, tree)))
                .collect(),
        };
        courier_sprig::check_functions(trees, &self::funcs(funcs))
            .map_err(|e| GoTemplateError(e.to_string()))?;
        if let Kind::Html(t) = &kind {
            if let Err(e @ gotmpl::TemplateError::Escape { .. }) = t.execute_to_string(&Value::Nil)
            {
                return Err(err(&name, &e));
            }
        }
        Ok(Self { name, kind })
    }

    /// The template's name (a file name, path or config key).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether output is HTML-escaped.
    pub fn is_html(&self) -> bool {
        matches!(self.kind, Kind::Html(_))
    }

    /// Renders over `data`.
    ///
    /// # Errors
    /// A render error naming the template.
    pub fn render(&self, data: &Value) -> Result<String, GoTemplateError> {
        match &self.kind {
            Kind::Text(t) => t.execute_to_string(data),
            Kind::Html(t) => t.execute_to_string(data),
        }
        .map_err(|e| err(&self.name, &e))
    }

    /// Renders the associated template `define`d as `name`.
    ///
    /// # Errors
    /// As [`Self::render`], or an undefined name.
    pub fn render_define(&self, name: &str, data: &Value) -> Result<String, GoTemplateError> {
        match &self.kind {
            Kind::Text(t) => t.execute_template_to_string(name, data),
            Kind::Html(t) => t.execute_template_to_string(name, data),
        }
        .map_err(|e| err(&format!("{} ({name})", self.name), &e))
    }

    /// The names `define`d in the set, without the templates that are whole files (those end in
    /// `.gotmpl`) or the template itself: for i18n sets, the languages.
    pub fn defines(&self) -> Vec<String> {
        let names = match &self.kind {
            Kind::Text(t) => t.templates(),
            Kind::Html(t) => t.templates(),
        };
        names
            .into_iter()
            .filter(|n| *n != self.name && !n.ends_with(".gotmpl"))
            .map(str::to_owned)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::model::from_json;

    fn data(json: &str) -> Value {
        from_json(&serde_json::from_str(json).unwrap(), false)
    }

    #[test]
    fn text_and_html_follow_go() {
        let d = data(r#"{"To":"<a@b.c>","U":"javascript:alert(1)"}"#);
        let t =
            GoTemplate::parse("t", "{{ .To }} {{ .Missing }}", false, Funcs::CustomText).unwrap();
        assert_eq!(t.render(&d).unwrap(), "<a@b.c> <no value>");
        let h = GoTemplate::parse(
            "h",
            r#"<p>{{ .To }}{{ .Missing }}</p><a href="{{ .U }}">x</a>"#,
            true,
            Funcs::CustomHtml,
        )
        .unwrap();
        assert_eq!(
            h.render(&d).unwrap(),
            r##"<p>&lt;a@b.c&gt;</p><a href="#ZgotmplZ">x</a>"##
        );
    }

    #[test]
    fn nil_payload_lookups_compare_false_as_in_go() {
        // index of a missing key is nil; eq nil "foo" is false in Go, not an error.
        let d = data(r#"{"TransientPayload":{"a":"b"},"Identity":null}"#);
        let t = GoTemplate::parse(
            "t",
            r#"{{ if eq (index .TransientPayload "lang") "foo" }}FOO{{ else }}BAR{{ end }}|{{ if eq .Identity.traits.lang "fr" }}fr{{ else }}en{{ end }}"#,
            false,
            Funcs::CustomText,
        )
        .unwrap();
        assert_eq!(t.render(&d).unwrap(), "BAR|en");
    }

    #[test]
    fn errors_name_template_and_position() {
        let e = GoTemplate::parse("email.body.gotmpl", "a\n{{ if }", false, Funcs::CustomText)
            .unwrap_err();
        assert!(e.0.starts_with("template: email.body.gotmpl:2:"), "{e}");
        let e = GoTemplate::parse("s", "{{ nosuchfunc . }}", false, Funcs::CustomText).unwrap_err();
        assert!(e.0.contains("nosuchfunc"), "{e}");
        let t = GoTemplate::parse("r", "{{ index .L 5 }}", false, Funcs::CustomText).unwrap();
        let e = t.render(&data(r#"{"L":[1]}"#)).unwrap_err();
        assert!(e.0.starts_with("template: r: "), "{e}");
    }

    #[test]
    fn defines_lists_languages() {
        let t = GoTemplate::parse(
            "email.body.gotmpl",
            r#"{{define "en"}}hi{{end}}{{define "fr"}}salut{{end}}{{ template "en" . }}"#,
            true,
            Funcs::CustomHtml,
        )
        .unwrap();
        assert_eq!(t.defines(), vec!["en", "fr"]);
        assert_eq!(t.render_define("fr", &Value::Nil).unwrap(), "salut");
    }
}
