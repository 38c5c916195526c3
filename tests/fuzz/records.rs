//! Valid records of each format (DESIGN §2), as the decoders' seeds: each knows the user and
//! time it must decode to, so a generator that stops producing valid records fails loudly.

use proptest::prelude::*;
use remarket::config::Format;

use crate::json::{edge_string, J};

/// A valid record and what it decodes to.
#[derive(Debug, Clone)]
pub struct Seed {
    pub record: J,
    pub user: String,
    pub ts_ms: i64,
}

/// The campaigns the decoder targets decode against: they read the properties and events the
/// seeds carry, so properties are projected (not skipped) and identifiers hashed.
pub fn config(format: Format) -> String {
    let format = match format {
        Format::Native => "native",
        Format::Segment => "segment",
        Format::Clevertap => "clevertap",
    };
    format!(
        r#"
[source]
format = "{format}"
[engine]
allowed_lateness = "1s"
max_custom_props = 4
[[campaign]]
id = "pair"
name = "pair"
ad_account = "1"
start = "2026-01-01T00:00:00Z"
[campaign.trigger]
event = "Added To Cart"
where = [{{ prop = "price", op = ">=", value = 10 }}]
[campaign.trigger.inaction]
event = "Charged"
within = "1h"
[campaign.who]
where = [{{ prop = "blocked", op = "not_exists" }}]
control_group = 10
target_cap = 50
[campaign.what]
audience = {{ existing = "5" }}
identifiers = ["email", "phone"]
remove_on_goal = true
[campaign.goal]
event = "Charged"
within = "1d"
[[campaign]]
id = "filtered"
name = "filtered"
ad_account = "1"
start = "2026-01-01T00:00:00Z"
[campaign.trigger]
event = "Product Viewed"
where = [{{ prop = "sku", op = "exists" }}]
[campaign.who]
where = [{{ prop = "country", op = "in", value = ["DE", "FR"] }}, {{ prop = "app_version", op = ">=", value = "5.10" }}, {{ prop = "email", op = "exists" }}, {{ prop = "has_email", op = "=", value = true }}]
[campaign.what]
audience = {{ existing = "7" }}
identifiers = ["email"]
[[campaign]]
id = "pages"
name = "pages"
ad_account = "1"
start = "2026-01-01T00:00:00Z"
[campaign.trigger]
event = "Viewed Home Page"
[campaign.what]
audience = {{ existing = "6" }}
identifiers = ["phone"]
"#
    )
}

/// 2026-11-01T00:00:00Z plus up to a day.
fn ts_ms() -> impl Strategy<Value = i64> {
    (0i64..86_400_000).prop_map(|d| 1_793_491_200_000 + d)
}

/// Mostly a few users, so that their events and profiles meet.
fn user() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => proptest::sample::select(&["u1", "u2", "u3"][..]).prop_map(str::to_owned),
        1 => "[a-z0-9]{1,12}",
    ]
}

/// A property value: mostly sensible, sometimes an edge (numbers past f64 are left to the
/// mutations: a seed must decode).
fn prop_value() -> impl Strategy<Value = J> {
    prop_oneof![
        4 => (0u32..1000).prop_map(J::num),
        2 => "[A-Z]{2}".prop_map(J::Str),
        1 => any::<bool>().prop_map(J::Bool),
        1 => Just(J::Null),
        1 => any::<i64>().prop_map(J::num),
        1 => edge_string(),
    ]
}

fn email() -> impl Strategy<Value = J> {
    prop_oneof![
        "[a-z]{1,8}@[a-z]{1,8}\\.com".prop_map(J::Str),
        edge_string(),
        Just(J::Null)
    ]
}

fn phone() -> impl Strategy<Value = J> {
    prop_oneof![
        "\\+1555[0-9]{7}".prop_map(J::Str),
        edge_string(),
        (0u64..100_000_000_000).prop_map(J::num)
    ]
}

fn event_name() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(
        &[
            "Added To Cart",
            "Charged",
            "Product Viewed",
            "Viewed Home Page",
            "Other",
        ][..],
    )
}

pub fn seed(format: Format) -> BoxedStrategy<Seed> {
    match format {
        Format::Native => native().boxed(),
        Format::Segment => segment().boxed(),
        Format::Clevertap => clevertap().boxed(),
    }
}

fn native() -> impl Strategy<Value = Seed> {
    let event = (user(), ts_ms(), event_name(), prop_value(), prop_value()).prop_map(
        |(u, ts, e, price, sku)| Seed {
            record: J::obj(vec![
                ("user_id", J::str(&u)),
                ("event", J::str(e)),
                ("ts", J::num(ts)),
                ("props", J::obj(vec![("price", price), ("sku", sku)])),
            ]),
            user: u,
            ts_ms: ts,
        },
    );
    let profile = (user(), ts_ms(), email(), phone(), prop_value()).prop_map(
        |(u, ts, email, phone, country)| Seed {
            record: J::obj(vec![
                ("type", J::str("profile")),
                ("user_id", J::str(&u)),
                ("ts", J::str(&rfc3339(ts))),
                (
                    "props",
                    J::obj(vec![
                        ("email", email),
                        ("phone", phone),
                        ("country", country),
                        ("age", J::num(30)),
                        ("loyalty", J::str("gold")),
                    ]),
                ),
                ("device_id", J::str("d1")),
            ]),
            user: u,
            ts_ms: ts,
        },
    );
    prop_oneof![event, profile]
}

fn segment() -> impl Strategy<Value = Seed> {
    let context = || {
        (prop_value(), email()).prop_map(|(country, email)| {
            J::obj(vec![
                ("app", J::obj(vec![("version", J::str("5.10.1"))])),
                ("os", J::obj(vec![("version", J::str("17.2"))])),
                (
                    "device",
                    J::obj(vec![
                        ("id", J::str("d1")),
                        ("manufacturer", J::str("Apple")),
                        ("model", J::str("iPhone15,2")),
                    ]),
                ),
                ("library", J::obj(vec![("version", J::str("4.1"))])),
                ("location", J::obj(vec![("country", country)])),
                ("traits", J::obj(vec![("email", email)])),
            ])
        })
    };
    let track = (user(), ts_ms(), event_name(), prop_value(), context()).prop_map(
        |(u, ts, e, price, ctx)| Seed {
            record: J::obj(vec![
                ("type", J::str("track")),
                ("userId", J::str(&u)),
                ("event", J::str(e)),
                ("timestamp", J::str(&rfc3339(ts))),
                ("properties", J::obj(vec![("price", price)])),
                ("context", ctx),
            ]),
            user: u,
            ts_ms: ts,
        },
    );
    let identify = (user(), ts_ms(), email(), phone(), prop_value()).prop_map(
        |(u, ts, email, phone, country)| Seed {
            record: J::obj(vec![
                ("type", J::str("identify")),
                ("anonymousId", J::str(&u)),
                ("timestamp", J::str(&rfc3339(ts))),
                (
                    "traits",
                    J::obj(vec![
                        ("email", email),
                        ("phone", phone),
                        (
                            "address",
                            J::obj(vec![("country", country), ("state", J::str("BY"))]),
                        ),
                    ]),
                ),
            ]),
            user: u,
            ts_ms: ts,
        },
    );
    let page = (
        user(),
        ts_ms(),
        prop_oneof![Just("page"), Just("screen")],
        context(),
    )
        .prop_map(|(u, ts, kind, ctx)| Seed {
            record: J::obj(vec![
                ("type", J::str(kind)),
                ("userId", J::str(&u)),
                ("name", J::str("Home")),
                ("timestamp", J::str(&rfc3339(ts))),
                ("context", ctx),
            ]),
            user: u,
            ts_ms: ts,
        });
    prop_oneof![track, identify, page]
}

fn clevertap() -> impl Strategy<Value = Seed> {
    let secs = || ts_ms().prop_map(|ms| ms / 1000);
    let event = (user(), secs(), event_name(), prop_value()).prop_map(|(u, s, e, price)| Seed {
        record: J::obj(vec![
            ("identity", J::str(&u)),
            ("ts", J::num(s)),
            ("type", J::str("event")),
            ("evtName", J::str(e)),
            (
                "evtData",
                J::obj(vec![("price", price), ("sku", J::str("x"))]),
            ),
        ]),
        user: u,
        ts_ms: s * 1000,
    });
    let profile = (user(), secs(), email(), phone(), any::<bool>()).prop_map(
        |(u, s, email, phone, opt_in)| Seed {
            record: J::obj(vec![
                ("objectId", J::str(&u)),
                ("ts", J::num(s)),
                ("type", J::str("profile")),
                (
                    "profileData",
                    J::obj(vec![
                        ("Email", email),
                        ("Phone", phone),
                        ("MSG-email", J::Bool(opt_in)),
                        ("Gender", J::str("F")),
                        ("Points", J::obj(vec![("$incr", J::num(5))])),
                        ("Tags", J::obj(vec![("$add", J::Arr(vec![J::str("a")]))])),
                    ]),
                ),
            ]),
            user: u,
            ts_ms: s * 1000,
        },
    );
    prop_oneof![event, profile]
}

pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .expect("in range");
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("formats")
}
