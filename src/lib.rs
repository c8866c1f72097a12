//! # jsonnet-courier
//!
//! Delivery for identity-server courier messages (the reference is the Ory Kratos courier): a
//! [`message::Message`] gets its subject and bodies from Go message templates ([`compose`]) when it
//! carries none, becomes a `ctx` object, a cached, sandboxed Jsonnet template turns the ctx into a
//! payload, and the payload is posted to the configured endpoint; or the mail goes out over SMTP
//! ([`smtp`]).
//!
//! ```
//! use jsonnet_courier::message::{samples, CtxStyle, MessageType, TemplateType};
//! use jsonnet_courier::template::{default_template, Engine, Limits};
//!
//! let message = samples::message(TemplateType::RecoveryCodeValid, MessageType::Email).unwrap();
//! let ctx = jsonnet_courier::message::ctx::build(&message, CtxStyle::Pascal);
//! let mut engine = Engine::new(Limits::default()).unwrap();
//! let payload = engine.render(&default_template(CtxStyle::Pascal), &ctx).unwrap();
//! assert!(payload.contains(r#""template_type":"recovery_code_valid""#));
//! ```
//!
//! Modules, one concern each: [`message`] (messages and ctx), [`compose`] (subject and bodies
//! from Go templates), [`template`] (Jsonnet: sources, engine, fast path, pool, errors),
//! [`encode`] (JSON and form bodies), [`delivery`] (an attempt's phases: route, render, send,
//! record; the one retry decision), [`http`] (the pooled client, SSRF guard), [`smtp`] (SMTP
//! transport), [`store`] (durable messages), [`service`] (`courier serve`), [`dashboard`] (its web
//! pages).
#![warn(missing_docs)]

pub mod compose;
pub mod config;
pub mod dashboard;
pub mod delivery;
pub mod encode;
pub mod http;
pub mod message;
pub mod metrics;
pub mod service;
pub mod smtp;
pub mod store;
pub mod template;
pub mod webhook;

#[cfg(test)]
mod fuzz;
