//! Integration tests: one binary. A real HTTP server on 127.0.0.1 stands in for every remote
//! endpoint; the CLI tests run the real `courier` binary.

mod abuse;
mod backend;
mod browser;
mod cli;
mod compose_cli;
mod compose_deliver;
mod dashboard;
mod deliver;
mod engine;
mod guard;
mod hardening;
mod isolation;
mod proof;
mod reference;
mod remote;
mod send;
mod serve;
mod smtp;
mod store;
mod support;
mod tls;
mod webhook;
