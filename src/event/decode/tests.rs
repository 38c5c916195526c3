use super::*;
use crate::config::Config;
use crate::identity::{hash_email, hash_phone};

fn config() -> Config {
    let text = r#"
[[campaign]]
id = "c"
name = "C"
ad_account = "1"
start = "2026-01-01T00:00:00Z"
[campaign.trigger]
event = "Added To Cart"
where = [{ prop = "price", op = ">", value = 1 }]
[campaign.who]
where = [
  { prop = "country", op = "exists" },
  { prop = "region", op = "exists" },
  { prop = "city", op = "exists" },
  { prop = "age", op = "exists" },
  { prop = "gender", op = "exists" },
  { prop = "app_version", op = "exists" },
  { prop = "device_make", op = "exists" },
  { prop = "email_unsubscribed", op = "exists" },
]
[campaign.what]
audience = { existing = "9" }
identifiers = ["email", "phone"]
"#;
    Config::parse(text, Vec::new()).unwrap()
}

fn prop<'a>(schema: &Schema, props: &'a Props, name: &str) -> Option<&'a Value> {
    let id = schema.prop(name)?;
    props.iter().find(|(p, _)| *p == id).map(|(_, v)| v)
}

#[test]
fn native_event_and_profile() {
    let cfg = config();
    let d = Decoder::new(Format::Native, &cfg.schema);
    let r = d
        .decode(br#"{"user_id":"u1","event":"Added To Cart","ts":1795860000000,"props":{"price":12.5,"other":{"x":[1]}}}"#)
        .unwrap();
    assert_eq!(r.user, "u1");
    assert_eq!(r.ts, 1_795_860_000_000);
    let ev = r.event.unwrap();
    assert_eq!(ev.id, cfg.schema.event("Added To Cart"));
    assert_eq!(ev.props.len(), 1, "unreferenced props are not kept");
    assert_eq!(
        prop(&cfg.schema, &ev.props, "price"),
        Some(&Value::Num(12.5))
    );

    let r = d
        .decode(r#"{"user_id":"u1","type":"profile","ts":"2026-11-28T10:00:00Z","props":{"email":" A@B.co ","phone":null,"country":"Deutschland","age":30}}"#.as_bytes())
        .unwrap();
    assert_eq!(r.ts, 1_795_860_000_000);
    let p = r.profile.unwrap();
    assert_eq!(p.email, IdUpdate::Set(hash_email("a@b.co").unwrap()));
    assert_eq!(p.phone, IdUpdate::Cleared);
    assert_eq!(
        prop(&cfg.schema, &p.props, "country"),
        Some(&Value::Str("Deutschland".into()))
    );
    assert_eq!(prop(&cfg.schema, &p.props, "age"), Some(&Value::Num(30.0)));
}

#[test]
fn events_no_campaign_uses_are_kept_as_irrelevant() {
    let cfg = config();
    let d = Decoder::new(Format::Native, &cfg.schema);
    let r = d
        .decode(br#"{"user_id":"u1","event":"App Launched","ts":1,"props":{"price":3}}"#)
        .unwrap();
    assert_eq!(r.event.as_ref().unwrap().id, None);
    assert!(!r.is_relevant());
}

#[test]
fn escaped_strings_decode() {
    let cfg = config();
    let d = Decoder::new(Format::Native, &cfg.schema);
    let r = d
        .decode(br#"{"user_id":"u\"1","event":"Added\u0020To Cart","ts":1,"props":{}}"#)
        .unwrap();
    assert_eq!(r.user, "u\"1");
    assert!(r.event.unwrap().id.is_some());
}

#[test]
fn malformed_lines_have_reasons() {
    let cfg = config();
    let d = Decoder::new(Format::Native, &cfg.schema);
    let cases: &[(&[u8], Malformed)] = &[
        (b"{\"user_id\":\"u1\",", Malformed::InvalidJson),
        (b"[1,2]", Malformed::NotAnObject),
        (b"\"str\"", Malformed::NotAnObject),
        (
            b"{\"user_id\":\"\xff\xfe\",\"event\":\"x\",\"ts\":1}",
            Malformed::InvalidUtf8,
        ),
        (br#"{"event":"x","ts":1}"#, Malformed::MissingUserId),
        (
            br#"{"user_id":"","event":"x","ts":1}"#,
            Malformed::MissingUserId,
        ),
        (
            br#"{"user_id":7,"event":"x","ts":1}"#,
            Malformed::InvalidUserId,
        ),
        (br#"{"user_id":"u","ts":1}"#, Malformed::MissingEvent),
        (
            br#"{"user_id":"u","event":3,"ts":1}"#,
            Malformed::InvalidEvent,
        ),
        (br#"{"user_id":"u","event":"x"}"#, Malformed::MissingTs),
        (
            br#"{"user_id":"u","event":"x","ts":"yesterday"}"#,
            Malformed::InvalidTs,
        ),
        (
            br#"{"user_id":"u","event":"x","ts":1.5}"#,
            Malformed::InvalidTs,
        ),
        (
            br#"{"user_id":"u","event":"Added To Cart","ts":1,"props":[1]}"#,
            Malformed::InvalidProps,
        ),
        (
            br#"{"user_id":"u","type":"alias","ts":1}"#,
            Malformed::UnknownType,
        ),
    ];
    for (line, want) in cases {
        assert_eq!(
            d.decode(line).unwrap_err(),
            *want,
            "{}",
            String::from_utf8_lossy(line)
        );
    }
    let mut big = br#"{"user_id":"u","event":"x","ts":1,"props":{"p":""#.to_vec();
    big.resize(MAX_RECORD_BYTES + 1, b'a');
    assert_eq!(d.decode(&big).unwrap_err(), Malformed::Oversize);
}

#[test]
fn segment_track_identify_and_context() {
    let cfg = config();
    let d = Decoder::new(Format::Segment, &cfg.schema);
    let r = d
        .decode(r#"{"type":"track","userId":"u1","event":"Added To Cart","timestamp":"2026-11-28T10:00:00.123Z","properties":{"price":20},"context":{"app":{"version":"5.9.0"},"device":{"manufacturer":"Apple","model":"iPhone"}}}"#.as_bytes())
        .unwrap();
    assert_eq!(r.ts, 1_795_860_000_123);
    assert!(r.event.unwrap().id.is_some());
    let p = r.profile.unwrap();
    assert_eq!(
        prop(&cfg.schema, &p.props, "app_version"),
        Some(&Value::Str("5.9.0".into()))
    );
    assert_eq!(
        prop(&cfg.schema, &p.props, "device_make"),
        Some(&Value::Str("Apple".into()))
    );

    let r = d
        .decode(r#"{"type":"identify","userId":"u1","timestamp":"2026-11-28T10:00:00Z","traits":{"email":"x@y.z","phone":"+44 20 7946 0958","address":{"country":"United Kingdom","state":"England","city":"London"}}}"#.as_bytes())
        .unwrap();
    let p = r.profile.unwrap();
    assert_eq!(p.phone, IdUpdate::Set(hash_phone("+442079460958").unwrap()));
    assert_eq!(
        prop(&cfg.schema, &p.props, "region"),
        Some(&Value::Str("England".into()))
    );
    assert_eq!(
        prop(&cfg.schema, &p.props, "city"),
        Some(&Value::Str("London".into()))
    );

    let anon = d
        .decode(br#"{"type":"track","anonymousId":"a1","event":"x","timestamp":"2026-11-28T10:00:00Z"}"#)
        .unwrap();
    assert_eq!(anon.user, "a1");
    assert_eq!(
        d.decode(br#"{"type":"page","userId":"u","timestamp":"2026-11-28T10:00:00Z"}"#)
            .unwrap_err(),
        Malformed::UnknownType
    );
}

#[test]
fn clevertap_events_and_profiles() {
    let cfg = config();
    let d = Decoder::new(Format::Clevertap, &cfg.schema);
    let r = d
        .decode(
            br#"{"identity":"u1","evtName":"Added To Cart","evtData":{"price":5},"ts":1795860000}"#,
        )
        .unwrap();
    assert_eq!(r.ts, 1_795_860_000_000, "epoch seconds");
    assert!(r.event.unwrap().id.is_some());
    let r = d
        .decode(r#"{"identity":"u1","type":"profile","ts":1795860000,"profileData":{"Email":"X@Y.Z","Gender":"F","City":"Köln","MSG-email":false}}"#.as_bytes())
        .unwrap();
    let p = r.profile.unwrap();
    assert_eq!(p.email, IdUpdate::Set(hash_email("x@y.z").unwrap()));
    assert_eq!(
        prop(&cfg.schema, &p.props, "gender"),
        Some(&Value::Str("female".into()))
    );
    assert_eq!(
        prop(&cfg.schema, &p.props, "city"),
        Some(&Value::Str("Köln".into()))
    );
    assert_eq!(
        prop(&cfg.schema, &p.props, "email_unsubscribed"),
        Some(&Value::Bool(true)),
        "MSG-email=false means unsubscribed"
    );
}
