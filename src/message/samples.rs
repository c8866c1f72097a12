//! Realistic sample messages, one per template type for email (13) and SMS (7), embedded in the
//! binary so that `courier render --type ...` and `courier check` work with no files at hand.
//! The sources are `testdata/messages/{email,sms}/<template_type>.json`.

use super::{Message, MessageType, TemplateType};

macro_rules! samples {
    ($dir:literal: $($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../testdata/messages/", $dir, "/", $name, ".json")))),*]
    };
}

const EMAIL: &[(&str, &str)] = samples!("email":
    "recovery_invalid", "recovery_valid", "recovery_code_invalid", "recovery_code_valid",
    "verification_invalid", "verification_valid", "verification_code_invalid",
    "verification_code_valid", "login_code_valid", "registration_code_valid",
    "verifiable_address_changed", "authenticator_key_added", "stub",
);

const SMS: &[(&str, &str)] = samples!("sms":
    "recovery_code_valid", "verification_code_valid", "login_code_valid",
    "registration_code_valid", "verifiable_address_changed", "authenticator_key_added", "stub",
);

/// The raw JSON of the sample for `template_type` and `kind`, or `None` when the reference never
/// sends that type by that kind (e.g. `recovery_valid` by SMS).
pub fn json(template_type: TemplateType, kind: MessageType) -> Option<&'static str> {
    let table = match kind {
        MessageType::Email => EMAIL,
        MessageType::Sms => SMS,
    };
    table
        .iter()
        .find(|(name, _)| *name == template_type.as_str())
        .map(|(_, json)| *json)
}

/// The sample message for `template_type` and `kind`, parsed.
pub fn message(template_type: TemplateType, kind: MessageType) -> Option<Message> {
    // The samples are checked by a test below, so a parse failure here is a build defect.
    json(template_type, kind)
        .map(|j| Message::from_json(j.as_bytes()).expect("embedded sample parses"))
}

/// Every sample: all email types, then the SMS ones.
pub fn all() -> impl Iterator<Item = (TemplateType, MessageType, Message)> {
    let email = TemplateType::ALL
        .into_iter()
        .map(|t| (t, MessageType::Email));
    let sms = TemplateType::SMS.into_iter().map(|t| (t, MessageType::Sms));
    email
        .chain(sms)
        .filter_map(|(t, k)| message(t, k).map(|m| (t, k, m)))
}

/// Message `i` of a benchmark run over `samples`: sample `i` (cycling) with its own recipient
/// (`bench-{i}@example.com`, or a phone number for SMS) and its own code `i` in every code the
/// sample carries, so that no cache keyed on the message can help.
pub fn distinct(samples: &[Message], i: u64) -> Message {
    let mut m = samples[(i as usize) % samples.len()].clone();
    distinct_into(&mut m, i);
    m
}

/// [`distinct`] into `out`, a copy of sample `i` (cycling) that earlier calls for the same
/// sample may have changed: only the recipient and the codes are written again, in the strings
/// `out` already has. A load generator that keeps one copy of each sample per worker makes each
/// message distinct this way without cloning and dropping a whole message per delivery.
pub fn distinct_into(out: &mut Message, i: u64) {
    use std::fmt::Write as _;
    let rewrite = |s: &mut String, args: std::fmt::Arguments<'_>| {
        s.clear();
        // Writing into a String cannot fail.
        let _ = s.write_fmt(args);
    };
    let sms = out.message_type == MessageType::Sms;
    let to = |s: &mut String| {
        if sms {
            rewrite(s, format_args!("+1555{:07}", i % 10_000_000));
        } else {
            rewrite(s, format_args!("bench-{i}@example.com"));
        }
    };
    let data = &mut out.template_data;
    for slot in [
        &mut data.recovery_code,
        &mut data.verification_code,
        &mut data.login_code,
        &mut data.registration_code,
    ] {
        if let Some(Some(value)) = slot {
            rewrite(value, format_args!("{:08}", i % 100_000_000));
        }
    }
    if let Some(Some(value)) = &mut data.to {
        to(value);
    }
    to(&mut out.recipient);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_into_a_reused_copy_is_distinct() {
        let samples: Vec<Message> = all().map(|(_, _, m)| m).collect();
        let mut copies = samples.clone();
        for i in [
            0,
            1,
            7,
            19,
            20,
            21,
            12_345,
            99_999_999,
            100_000_003,
            u64::MAX,
        ] {
            let n = samples.len() as u64;
            let copy = &mut copies[(i % n) as usize];
            distinct_into(copy, i);
            // A copy written before holds nothing of its earlier message: it equals a fresh one.
            assert_eq!(
                serde_json::to_value(&*copy).unwrap(),
                serde_json::to_value(distinct(&samples, i)).unwrap(),
                "message {i}"
            );
            let to = if copy.message_type == MessageType::Sms {
                format!("+1555{:07}", i % 10_000_000)
            } else {
                format!("bench-{i}@example.com")
            };
            assert_eq!(copy.recipient, to, "message {i}");
            let code = format!("{:08}", i % 100_000_000);
            let data = serde_json::to_string(&copy.template_data).unwrap();
            let d = &samples[(i % n) as usize].template_data;
            let has_code = [
                &d.recovery_code,
                &d.verification_code,
                &d.login_code,
                &d.registration_code,
            ]
            .iter()
            .any(|code| matches!(code, Some(Some(_))));
            assert_eq!(data.contains(&code), has_code, "message {i}: {data}");
        }
    }

    #[test]
    fn every_sample_parses_and_matches_its_slot() {
        let mut count = 0;
        for (t, kind) in TemplateType::ALL
            .into_iter()
            .map(|t| (t, MessageType::Email))
            .chain(TemplateType::SMS.into_iter().map(|t| (t, MessageType::Sms)))
        {
            let raw = json(t, kind).unwrap_or_else(|| panic!("no sample for {t} {kind:?}"));
            let msg = Message::from_json(raw.as_bytes()).unwrap_or_else(|e| panic!("{t}: {e}"));
            assert_eq!(msg.template_type, t);
            assert_eq!(msg.message_type, kind);
            assert!(!msg.recipient.is_empty());
            count += 1;
        }
        assert_eq!(count, 20);
        assert_eq!(all().count(), 20);
        assert!(json(TemplateType::RecoveryValid, MessageType::Sms).is_none());
    }
}
