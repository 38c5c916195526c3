//! remarket: live remarketing. User events and profile updates go in; per-user event-time
//! state machines detect campaign triggers and event/inaction pairs; qualified users go out to
//! ad audiences (TikTok) as hashed identifiers.
//!
//! # Layout
//!
//! - [`model`]: the stages' shared vocabulary (qualifications, decisions, audience ops).
//! - [`config`]: the TOML config (DESIGN §3), env overrides, validation listing every problem
//!   ([`problems`]); [`duration`]: durations as humantime text.
//! - [`campaign`]: campaign definitions and their [`campaign::condition`]s (13 operators).
//! - [`event`]: the projected record model; [`event::decode`] (native, segment, clevertap) and
//!   [`event::recording`] (plain JSON lines and `kcat -J` envelopes, in memory or read as they
//!   are merged: [`event::recording::stream`], gzip, zstd, stdin).
//! - [`identity`]: email/phone normalisation and SHA-256, the only place raw PII is touched.
//! - [`source`]: the `Source` trait; [`source::replay`] merges recorded partitions.
//! - [`detect`]: sharded per-user state machines: [`detect::state`] (pure transitions),
//!   [`detect::shard`] (reorder buffer, timers), [`detect::watermark`].
//! - [`activate`]: once-per-user, reachability, control group, target cap, goals → decisions;
//!   [`activate::Holdback`] orders qualifications by `(at, user_id)` in both runtimes.
//! - [`report`]: a campaign's report (rates, revenue, lift with its Katz interval).
//! - [`store`]: the campaign store (definitions with their event-time lifecycle, §9's edit
//!   rules) and the engine config it makes with the config file.
//! - [`sink`]: the `AudienceSink` trait and its implementations.
//! - [`output`]: `decisions.jsonl`, `summary.json`, `dead-letter.jsonl`; [`output::dir`]
//!   locks `--out` and writes them as one set (temporary files, renamed at the end).
//! - [`app`]: wiring of the stages and the replay lifecycle.
//! - [`kafka`]: `run` over Kafka: topics, the detect and activate consumer groups, both on one
//!   consumer-group runner ([`kafka::stage`]).
//! - [`run`]: the `run` lifecycle: stages, sink, shutdown; its surroundings (listener,
//!   shutdown future, TikTok client, clock) are injected ([`run::Env`]).
//! - [`admin`]: the admin HTTP server: `/metrics` (one registry), `/healthz`, `/readyz`;
//!   [`api`]: the admin API under `/api/v1`; [`campaigns_cli`]: `remarket campaigns …`.
//! - [`publish`]: recorded topics into a Kafka topic (keys, partitions, timestamps kept).
//! - [`generate`]: synthetic recordings for samples, tests and benches.
//! - [`tiktok_sim`]: the TikTok Marketing API simulator (`remarket tiktok-sim`).

pub mod activate;
pub mod admin;
pub mod api;
pub mod app;
pub mod campaign;
pub mod campaigns_cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod detect;
pub mod duration;
pub mod event;
pub mod generate;
pub mod identity;
pub mod kafka;
pub mod model;
pub mod output;
pub mod preview;
pub mod problems;
pub mod publish;
pub mod record;
pub mod report;
pub mod run;
pub mod sink;
pub mod source;
pub mod store;
pub mod tiktok_sim;
