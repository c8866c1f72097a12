//! Message composition: subject + plain-text body + HTML body of the built-in
//! `recovery_code_valid` templates per message, next to the Jsonnet render of the same message.
//!
//! Run with `cargo bench --bench compose`. Target: under 20 µs per message for `compose`.

use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{black_box, Criterion, Throughput};

use jsonnet_courier::compose::{model, Composer, Part};
use jsonnet_courier::message::{ctx, samples, CtxStyle, MessageType, TemplateType};
use jsonnet_courier::template::{default_template, CtxRef, Engine, Limits};

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let t = TemplateType::RecoveryCodeValid;
    let message = samples::message(t, MessageType::Email).expect("sample");
    let composer = Composer::builtin();
    let mut g = c.benchmark_group("compose");
    g.throughput(Throughput::Elements(1));
    // The whole composition: the model built from the message, then the three parts.
    g.bench_function("recovery_code_valid_message", |b| {
        b.iter(|| black_box(composer.compose(&message).expect("composes")))
    });
    // The three renders alone, over data built once.
    let data = model::data(&message).expect("model");
    g.bench_function("recovery_code_valid_parts_only", |b| {
        b.iter(|| {
            for part in Part::EMAIL {
                black_box(composer.render_part(t, part, &data).expect("renders"));
            }
        })
    });
    // For scale: the Jsonnet payload render of the same message (default template, cached).
    let mut engine = Engine::new(Limits::default()).expect("engine");
    let template = default_template(CtxStyle::Pascal);
    let json = ctx::to_json(&message, CtxStyle::Pascal);
    let mut out = String::new();
    g.bench_function("jsonnet_default_template_same_message", |b| {
        b.iter(|| {
            engine
                .render_into(&template, CtxRef::Json(&json), &mut out)
                .expect("renders");
            black_box(out.len())
        })
    });
    g.finish();
    c.final_summary();
}
