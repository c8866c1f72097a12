//! The reference's typed template-data model per template type and message kind (spec section 3):
//! which fields a template always sees, which are left out when empty, and the reference's two
//! quirks (SMS recovery codes under `verification_code`, SMS registration traits under
//! `identity`).

use super::keys::DataKey::{self, *};
use super::{MessageType, TemplateType};

/// One field of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelField {
    /// The key.
    pub key: DataKey,
    /// Left out when empty (the spec's `?`), instead of given its zero value.
    pub optional: bool,
    /// Where the value comes from when the producer left this key out but sent that one.
    pub fallback: Option<DataKey>,
}

const fn f(key: DataKey) -> ModelField {
    ModelField {
        key,
        optional: false,
        fallback: None,
    }
}

const fn opt(key: DataKey) -> ModelField {
    ModelField {
        key,
        optional: true,
        fallback: None,
    }
}

const fn from(key: DataKey, fallback: DataKey) -> ModelField {
    ModelField {
        key,
        optional: false,
        fallback: Some(fallback),
    }
}

/// A template type's fields, and the same as a key set.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// The fields, in the order the reference writes them.
    pub fields: &'static [ModelField],
    /// One bit per key in `fields` (see [`DataKey::bit`]).
    pub keys: u32,
}

const fn model(fields: &'static [ModelField]) -> Model {
    let mut keys = 0;
    let mut i = 0;
    while i < fields.len() {
        keys |= fields[i].key.bit();
        i += 1;
    }
    Model { fields, keys }
}

const INVALID: Model = model(&[f(To), f(RequestUrl), f(TransientPayload)]);
const RECOVERY_VALID: Model = model(&[
    f(To),
    f(RecoveryUrl),
    f(Identity),
    f(RequestUrl),
    f(TransientPayload),
    f(ExpiresInMinutes),
]);
const RECOVERY_CODE_VALID: Model = model(&[
    f(To),
    f(RecoveryCode),
    f(Identity),
    f(RequestUrl),
    f(TransientPayload),
    f(ExpiresInMinutes),
]);
const VERIFICATION_VALID: Model = model(&[
    f(To),
    f(VerificationUrl),
    f(Identity),
    f(RequestUrl),
    f(TransientPayload),
    f(ExpiresInMinutes),
    opt(OAuth2LoginRequest),
]);
const VERIFICATION_CODE_VALID: Model = model(&[
    f(To),
    f(VerificationUrl),
    f(VerificationCode),
    f(Identity),
    f(RequestUrl),
    f(TransientPayload),
    f(ExpiresInMinutes),
    opt(OAuth2LoginRequest),
]);
const LOGIN_CODE_VALID: Model = model(&[
    f(To),
    f(LoginCode),
    f(Identity),
    f(RequestUrl),
    f(TransientPayload),
    f(ExpiresInMinutes),
    opt(OAuth2LoginRequest),
]);
const REGISTRATION_CODE_VALID: Model = model(&[
    f(To),
    f(Traits),
    f(RegistrationCode),
    f(RequestUrl),
    f(TransientPayload),
    f(ExpiresInMinutes),
    opt(OAuth2LoginRequest),
]);
const ADDRESS_CHANGED: Model = model(&[f(To), f(Identity), f(ChangedAt), f(TransientPayload)]);
const KEY_ADDED: Model = model(&[f(To), f(Identity), f(AddedAt), f(TransientPayload)]);
const STUB: Model = model(&[f(To), f(Subject), f(Body), opt(HtmlBody)]);

const SMS_RECOVERY_CODE_VALID: Model = model(&[
    f(To),
    from(VerificationCode, RecoveryCode),
    f(Identity),
    f(RequestUrl),
    f(RequestUrlDomain),
    f(TransientPayload),
    f(ExpiresInMinutes),
]);
const SMS_VERIFICATION_CODE_VALID: Model = model(&[
    f(To),
    f(VerificationCode),
    f(Identity),
    f(RequestUrl),
    f(RequestUrlDomain),
    f(TransientPayload),
    f(ExpiresInMinutes),
    opt(OAuth2LoginRequest),
]);
const SMS_LOGIN_CODE_VALID: Model = model(&[
    f(To),
    f(LoginCode),
    f(Identity),
    f(RequestUrl),
    f(RequestUrlDomain),
    f(TransientPayload),
    f(ExpiresInMinutes),
    opt(OAuth2LoginRequest),
]);
const SMS_REGISTRATION_CODE_VALID: Model = model(&[
    f(To),
    f(RegistrationCode),
    from(Identity, Traits),
    f(RequestUrl),
    f(RequestUrlDomain),
    f(TransientPayload),
    f(ExpiresInMinutes),
    opt(OAuth2LoginRequest),
]);
const SMS_STUB: Model = model(&[f(To), f(Body), f(Identity)]);

/// No model: template data as sent (what the typed model is measured against).
pub(crate) const AS_SENT: Model = model(&[]);

/// The model of `template_type` sent as `kind`. Types the reference sends only by email use the
/// email model whatever the kind.
pub fn of(template_type: TemplateType, kind: MessageType) -> Model {
    use TemplateType as T;
    match (template_type, kind) {
        (T::RecoveryCodeValid, MessageType::Sms) => SMS_RECOVERY_CODE_VALID,
        (T::VerificationCodeValid, MessageType::Sms) => SMS_VERIFICATION_CODE_VALID,
        (T::LoginCodeValid, MessageType::Sms) => SMS_LOGIN_CODE_VALID,
        (T::RegistrationCodeValid, MessageType::Sms) => SMS_REGISTRATION_CODE_VALID,
        (T::Stub, MessageType::Sms) => SMS_STUB,
        (T::RecoveryInvalid | T::RecoveryCodeInvalid, _) => INVALID,
        (T::VerificationInvalid | T::VerificationCodeInvalid, _) => INVALID,
        (T::RecoveryValid, _) => RECOVERY_VALID,
        (T::RecoveryCodeValid, _) => RECOVERY_CODE_VALID,
        (T::VerificationValid, _) => VERIFICATION_VALID,
        (T::VerificationCodeValid, _) => VERIFICATION_CODE_VALID,
        (T::LoginCodeValid, _) => LOGIN_CODE_VALID,
        (T::RegistrationCodeValid, _) => REGISTRATION_CODE_VALID,
        (T::VerifiableAddressChanged, _) => ADDRESS_CHANGED,
        (T::AuthenticatorKeyAdded, _) => KEY_ADDED,
        (T::Stub, _) => STUB,
    }
}
