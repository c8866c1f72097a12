//! The built-in message templates (the top-level `templates/` folder, compiled into the binary) and
//! the reference's layout of template files: which folder and file name each type and part uses.

use crate::message::{MessageType, TemplateType};

/// One rendered part of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    /// The email subject (text/template, trimmed).
    Subject,
    /// The email's HTML body (html/template).
    Html,
    /// The email's plain-text body (text/template).
    Text,
    /// The SMS text (text/template).
    Sms,
}

impl Part {
    /// The email parts, in rendering order.
    pub const EMAIL: [Part; 3] = [Part::Subject, Part::Text, Part::Html];

    /// The parts of a message of `kind`.
    pub fn of(kind: MessageType) -> &'static [Part] {
        match kind {
            MessageType::Email => &Self::EMAIL,
            MessageType::Sms => &[Part::Sms],
        }
    }

    /// The file name in a template folder, e.g. `email.body.plaintext.gotmpl`.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Subject => "email.subject.gotmpl",
            Self::Html => "email.body.gotmpl",
            Self::Text => "email.body.plaintext.gotmpl",
            Self::Sms => "sms.body.gotmpl",
        }
    }

    /// The prefix of the files parsed together with [`Self::file_name`] in an override folder
    /// (the reference's glob is this prefix followed by `*`).
    pub fn glob_prefix(self) -> &'static str {
        match self {
            Self::Subject => "email.subject",
            Self::Html => "email.body",
            Self::Text => "email.body.plaintext",
            Self::Sms => "sms.body",
        }
    }

    /// Whether the part is rendered with html/template's contextual escaping.
    pub fn is_html(self) -> bool {
        self == Self::Html
    }

    /// A short name for tables and notes: `subject`, `html`, `text`, `sms`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subject => "subject",
            Self::Html => "html",
            Self::Text => "text",
            Self::Sms => "sms",
        }
    }
}

/// The folder of `t`'s templates, e.g. `recovery_code/valid`; `None` for `stub`, which the
/// reference delivers from its data without templates.
pub fn folder(t: TemplateType) -> Option<&'static str> {
    use TemplateType as T;
    Some(match t {
        T::RecoveryInvalid => "recovery/invalid",
        T::RecoveryValid => "recovery/valid",
        T::RecoveryCodeInvalid => "recovery_code/invalid",
        T::RecoveryCodeValid => "recovery_code/valid",
        T::VerificationInvalid => "verification/invalid",
        T::VerificationValid => "verification/valid",
        T::VerificationCodeInvalid => "verification_code/invalid",
        T::VerificationCodeValid => "verification_code/valid",
        T::LoginCodeValid => "login_code/valid",
        T::RegistrationCodeValid => "registration_code/valid",
        T::VerifiableAddressChanged => "verifiable_address_changed",
        T::AuthenticatorKeyAdded => "authenticator_key_added",
        T::Stub => return None,
    })
}

macro_rules! email_set {
    ($dir:literal) => {
        [
            Some(include_str!(concat!(
                "../../templates/",
                $dir,
                "/email.subject.gotmpl"
            ))),
            Some(include_str!(concat!(
                "../../templates/",
                $dir,
                "/email.body.gotmpl"
            ))),
            Some(include_str!(concat!(
                "../../templates/",
                $dir,
                "/email.body.plaintext.gotmpl"
            ))),
            None,
        ]
    };
    ($dir:literal, sms) => {
        [
            Some(include_str!(concat!(
                "../../templates/",
                $dir,
                "/email.subject.gotmpl"
            ))),
            Some(include_str!(concat!(
                "../../templates/",
                $dir,
                "/email.body.gotmpl"
            ))),
            Some(include_str!(concat!(
                "../../templates/",
                $dir,
                "/email.body.plaintext.gotmpl"
            ))),
            Some(include_str!(concat!(
                "../../templates/",
                $dir,
                "/sms.body.gotmpl"
            ))),
        ]
    };
}

/// Sources by type, indexed by [`Part`] in declaration order (subject, html, text, sms).
type Sources = [Option<&'static str>; 4];

fn sources(t: TemplateType) -> Sources {
    use TemplateType as T;
    match t {
        T::RecoveryInvalid => email_set!("recovery/invalid"),
        T::RecoveryValid => email_set!("recovery/valid"),
        T::RecoveryCodeInvalid => email_set!("recovery_code/invalid"),
        T::RecoveryCodeValid => email_set!("recovery_code/valid", sms),
        T::VerificationInvalid => email_set!("verification/invalid"),
        T::VerificationValid => email_set!("verification/valid"),
        T::VerificationCodeInvalid => email_set!("verification_code/invalid"),
        T::VerificationCodeValid => email_set!("verification_code/valid", sms),
        T::LoginCodeValid => email_set!("login_code/valid", sms),
        T::RegistrationCodeValid => email_set!("registration_code/valid", sms),
        T::VerifiableAddressChanged => email_set!("verifiable_address_changed", sms),
        T::AuthenticatorKeyAdded => email_set!("authenticator_key_added", sms),
        T::Stub => [None; 4],
    }
}

/// The built-in source of `t`'s `part`, if it has one.
pub fn source(t: TemplateType, part: Part) -> Option<&'static str> {
    let i = match part {
        Part::Subject => 0,
        Part::Html => 1,
        Part::Text => 2,
        Part::Sms => 3,
    };
    sources(t)[i]
}

/// The path of a template file below a template root, e.g. `recovery_code/valid/sms.body.gotmpl`.
pub fn path(t: TemplateType, part: Part) -> Option<String> {
    folder(t).map(|d| format!("{d}/{}", part.file_name()))
}
