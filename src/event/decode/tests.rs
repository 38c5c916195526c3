use super::*;
use crate::config::Config;
use crate::identity::{hash_email, hash_phone};

pub(super) fn config() -> Config {
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

/// Under campaigns that name no property (a trigger and its inaction alone), an event's
/// properties are checked but none kept, whatever the line's path through the decoder.
#[test]
fn no_event_property_is_kept_when_no_campaign_names_one() {
    let text = r#"
[[campaign]]
id = "c"
name = "C"
ad_account = "1"
start = "2026-01-01T00:00:00Z"
[campaign.trigger]
event = "Added To Cart"
[campaign.trigger.inaction]
event = "Charged"
within = "30m"
[campaign.what]
audience = { existing = "9" }
identifiers = ["email"]
"#;
    let cfg = Config::parse(text, Vec::new()).unwrap();
    assert!(!cfg.schema.reads_props());
    let d = Decoder::new(Format::Native, &cfg.schema);
    for line in [
        r#"{"user_id":"u1","event":"Added To Cart","ts":1,"props":{"price":3,"country":"DE"}}"#,
        r#"{"user_id":"u1","event":"Added To Cart","ts":1,"props":{"price":3e0,"country":"D\u0045"}}"#,
    ] {
        let r = d.decode(line.as_bytes()).unwrap();
        let ev = r.event.as_ref().unwrap();
        assert_eq!(ev.id, cfg.schema.event("Added To Cart"), "{line}");
        assert!(ev.props.is_empty(), "{line}: {:?}", ev.props);
        assert!(r.is_relevant());
    }
    for line in [
        r#"{"user_id":"u1","event":"Added To Cart","ts":1,"props":[1]}"#,
        r#"{"user_id":"u1","event":"Added To Cart","ts":1,"props":"x"}"#,
    ] {
        let got = d.decode(line.as_bytes()).unwrap_err();
        assert_eq!(got, Malformed::InvalidProps, "{line}");
    }
    // A campaign that names one keeps the properties the schema knows.
    let with = text.replace("within = \"30m\"", "within = \"30m\"\nmatch = [\"sku\"]");
    let cfg = Config::parse(&with, Vec::new()).unwrap();
    assert!(cfg.schema.reads_props());
    let d = Decoder::new(Format::Native, &cfg.schema);
    let r = d
        .decode(br#"{"user_id":"u1","event":"Charged","ts":1,"props":{"sku":"a","country":"DE"}}"#)
        .unwrap();
    let props = &r.event.as_ref().unwrap().props;
    assert_eq!(
        prop(&cfg.schema, props, "sku"),
        Some(&Value::Str("a".into()))
    );
    assert_eq!(
        prop(&cfg.schema, props, "country"),
        Some(&Value::Str("DE".into()))
    );
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
            br#"{"user_id":7.5,"event":"x","ts":1}"#,
            Malformed::InvalidUserId,
        ),
        (
            br#"{"user_id":{"id":7},"event":"x","ts":1}"#,
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
        d.decode(br#"{"type":"session","userId":"u","timestamp":"2026-11-28T10:00:00Z"}"#)
            .unwrap_err(),
        Malformed::UnknownType
    );
}

/// A config whose campaigns listen to Segment's page and screen events.
fn segment_config() -> Config {
    let one = |id: &str, event: &str| {
        format!(
            "[[campaign]]\nid = \"{id}\"\nname = \"{id}\"\nad_account = \"1\"\n\
             start = \"2026-01-01T00:00:00Z\"\n[campaign.trigger]\nevent = \"{event}\"\n\
             [campaign.who]\nwhere = [{{ prop = \"country\", op = \"exists\" }}, \
             {{ prop = \"city\", op = \"exists\" }}, {{ prop = \"age\", op = \"exists\" }}, \
             {{ prop = \"os_version\", op = \"exists\" }}]\n\
             [campaign.what]\naudience = {{ existing = \"9\" }}\nidentifiers = [\"email\"]\n"
        )
    };
    let text = [
        one("home", "Viewed Home Page"),
        one("any-page", "Loaded a Page"),
        one("feed", "Viewed Home Screen"),
    ]
    .concat();
    Config::parse(&text, Vec::new()).unwrap()
}

/// Segment's published example payloads (Segment Spec: Page, Screen, Alias, Group and Common
/// Fields, https://www.twilio.com/docs/segment/connections/spec/{page,screen,alias,group,common}),
/// completed with the common fields every call carries.
#[test]
fn segment_page_screen_alias_group_and_context_from_the_spec() {
    let cfg = segment_config();
    let d = Decoder::new(Format::Segment, &cfg.schema);
    let event_name = |r: &Record| {
        r.event
            .as_ref()
            .and_then(|e| e.id)
            .map(|id| cfg.schema.event_name(id).to_owned())
    };
    // Spec: Page — "the payload of a typical Page call".
    let page = d
        .decode(br#"{"type":"page","userId":"97980cfea0067","timestamp":"2015-02-23T22:28:55.111Z","name":"Home","properties":{"title":"Welcome | Initech","url":"http://www.example.com"}}"#)
        .unwrap();
    assert_eq!(event_name(&page).as_deref(), Some("Viewed Home Page"));
    let unnamed = d
        .decode(br#"{"type":"page","anonymousId":"507f191e810c19729de860ea","timestamp":"2015-02-23T22:28:55.111Z","properties":{"url":"http://www.example.com"}}"#)
        .unwrap();
    assert_eq!(event_name(&unnamed).as_deref(), Some("Loaded a Page"));
    // Spec: Screen.
    let screen = d
        .decode(br#"{"type":"screen","userId":"97980cfea0067","timestamp":"2015-02-23T22:28:55.111Z","name":"Home","properties":{"Feed Type":"private"}}"#)
        .unwrap();
    assert_eq!(event_name(&screen).as_deref(), Some("Viewed Home Screen"));
    // Spec: Alias and Group: accepted, neither event nor profile.
    for line in [
        &br#"{"type":"alias","previousId":"jen@email.com","userId":"507f191e81","timestamp":"2015-02-23T22:28:55.111Z"}"#[..],
        br#"{"type":"group","groupId":"0e8c78ea9d97a7b8185e8632","userId":"97980cfea0067","timestamp":"2015-02-23T22:28:55.111Z","traits":{"name":"Initech","industry":"Technology","employees":329,"plan":"enterprise","total billed":830}}"#,
    ] {
        let r = d.decode(line).unwrap();
        assert!(r.event.is_none() && r.profile.is_none(), "{r:?}");
    }
    // Spec: Common Fields — `context.traits` and `context.location` feed the profile; a
    // numeric `userId` is the user id.
    let r = d
        .decode(br#"{"type":"track","userId":507,"event":"Viewed Home Page","timestamp":"2015-02-23T22:28:55.111Z","context":{"active":true,"app":{"name":"InitechGlobal","version":"545","build":"3.0.1.545","namespace":"com.production.segment"},"device":{"id":"B5372DB0-C21E-11E4-8DFC-AA07A5B093DB","manufacturer":"Apple","model":"iPhone7,2","type":"ios"},"ip":"8.8.8.8","library":{"name":"analytics.js","version":"2.11.1"},"locale":"en-US","location":{"city":"San Francisco","country":"United States","latitude":40.2964197,"longitude":-76.9411617,"speed":0},"os":{"name":"iPhone OS","version":"8.1.3"},"traits":{"age":41,"email":"peter@example.com"},"timezone":"Europe/Amsterdam"}}"#)
        .unwrap();
    assert_eq!(r.user, "507");
    let p = r.profile.unwrap();
    assert_eq!(
        prop(&cfg.schema, &p.props, "city"),
        Some(&Value::Str("San Francisco".into()))
    );
    assert_eq!(
        prop(&cfg.schema, &p.props, "country"),
        Some(&Value::Str("United States".into()))
    );
    assert_eq!(prop(&cfg.schema, &p.props, "age"), Some(&Value::Num(41.0)));
    assert_eq!(
        prop(&cfg.schema, &p.props, "os_version"),
        Some(&Value::Str("8.1.3".into()))
    );
    assert_eq!(
        p.email,
        IdUpdate::Set(hash_email("peter@example.com").unwrap())
    );
}

/// CleverTap's upload API identifies a profile by `identity`, `objectId`, `FBID` or `GPID`
/// (CleverTap API: Upload Events / Upload User Profiles,
/// https://developer.clevertap.com/docs/upload-events-api): each is accepted, and `identity`
/// wins over `objectId`, which wins over `FBID`, then `GPID`.
#[test]
fn clevertap_ids_in_order_of_precedence() {
    let cfg = config();
    let d = Decoder::new(Format::Clevertap, &cfg.schema);
    let user = |line: &str| d.decode(line.as_bytes()).map(|r| r.user.to_string());
    let ev = r#""type":"event","evtName":"Added To Cart","ts":1468308340"#;
    assert_eq!(
        user(&format!(r#"{{"FBID":"34322423",{ev}}}"#)),
        Ok("34322423".into())
    );
    assert_eq!(
        user(&format!(r#"{{"GPID":"34322423",{ev}}}"#)),
        Ok("34322423".into())
    );
    assert_eq!(
        user(&format!(r#"{{"objectId":"__g1b2c3",{ev}}}"#)),
        Ok("__g1b2c3".into())
    );
    assert_eq!(
        user(&format!(
            r#"{{"GPID":"g","FBID":"f","objectId":"o","identity":"i",{ev}}}"#
        )),
        Ok("i".into())
    );
    assert_eq!(
        user(&format!(r#"{{"GPID":"g","FBID":"f","objectId":"o",{ev}}}"#)),
        Ok("o".into())
    );
    assert_eq!(
        user(&format!(r#"{{"GPID":"g","FBID":"f",{ev}}}"#)),
        Ok("f".into())
    );
    assert_eq!(
        user(&format!(r#"{{"identity":1189549,{ev}}}"#)),
        Ok("1189549".into())
    );
    assert_eq!(user(&format!(r#"{{{ev}}}"#)), Err(Malformed::MissingUserId));
}

/// A record without its own time takes its Kafka timestamp when it has one (`run`, kcat
/// envelopes); without one it stays `missing_ts`.
#[test]
fn a_record_without_ts_takes_the_kafka_timestamp() {
    let cfg = config();
    for (format, line) in [
        (
            Format::Native,
            &br#"{"user_id":"u","event":"Added To Cart"}"#[..],
        ),
        (
            Format::Segment,
            br#"{"type":"track","userId":"u","event":"Added To Cart"}"#,
        ),
        (
            Format::Clevertap,
            br#"{"identity":"u","type":"event","evtName":"Added To Cart"}"#,
        ),
    ] {
        let d = Decoder::new(format, &cfg.schema);
        assert_eq!(
            d.decode_at(line, Some(1_795_860_000_000)).unwrap().ts,
            1_795_860_000_000
        );
        assert_eq!(
            d.decode(line).unwrap_err(),
            Malformed::MissingTs,
            "{format:?}"
        );
    }
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

/// The upload API's property operations (developer.clevertap.com/docs/upload-user-profiles-api:
/// `{"$incr": n}`, `{"$decr": n}`, `{"$add": [...]}`, `{"$remove": [...]}`, `{"$delete": 1}`).
#[test]
fn clevertap_profile_operations() {
    let cfg = config();
    let d = Decoder::new(Format::Clevertap, &cfg.schema);
    let r = d
        .decode(
            br#"{"type":"profile","identity":"u1","ts":1795860000,"profileData":{"Age":{"$incr":2},"Country":{"$delete":1},"City":{"$decr":1.5},"Email":{"$delete":1},"Region":{"$add":["a","b"]}}}"#,
        )
        .unwrap();
    let p = r.profile.unwrap();
    let get = |name| prop(&cfg.schema, &p.props, name);
    assert_eq!(get("age"), Some(&Value::Add(2.0)));
    assert_eq!(get("country"), Some(&Value::Null), "$delete removes");
    assert_eq!(get("city"), Some(&Value::Add(-1.5)));
    assert_eq!(
        get("region"),
        Some(&Value::Other),
        "$add: a multi-value property exists"
    );
    assert_eq!(p.email, IdUpdate::Cleared, "$delete of Email drops the id");

    // `$remove` leaves the property as it is; an object that is no operation is a value.
    let r = d
        .decode(
            br#"{"type":"profile","identity":"u1","ts":1795860000,"profileData":{"Region":{"$remove":["a"]},"City":{"$incr":"x"},"Country":{"$incr":1,"other":2},"Age":{"name":"x"}}}"#,
        )
        .unwrap();
    let p = r.profile.unwrap();
    let get = |name| prop(&cfg.schema, &p.props, name);
    assert_eq!(get("region"), None);
    assert_eq!(get("city"), None, "a non-numeric $incr changes nothing");
    assert_eq!(get("country"), Some(&Value::Other));
    assert_eq!(get("age"), Some(&Value::Other));

    // Other formats keep such objects as plain values.
    let n = Decoder::new(Format::Native, &cfg.schema)
        .decode(
            br#"{"user_id":"u1","type":"profile","ts":1795860000000,"props":{"age":{"$incr":2}}}"#,
        )
        .unwrap();
    assert_eq!(
        prop(&cfg.schema, &n.profile.unwrap().props, "age"),
        Some(&Value::Other)
    );
}

/// A key twice at the top level is `duplicate_key` — any key, read by the format or not —
/// while syntax errors still come first and property objects keep the last value.
#[test]
fn a_top_level_key_twice_is_duplicate_key() {
    let cfg = config();
    let d = Decoder::new(Format::Native, &cfg.schema);
    for line in [
        &br#"{"user_id":"a","user_id":"b","event":"Added To Cart","ts":1}"#[..],
        br#"{"user_id":"a","event":"Added To Cart","ts":1,"ts":2}"#,
        br#"{"user_id":"a","event":"Added To Cart","ts":1,"x":1,"x":2}"#,
        br#"{"user_id":"a","event":"Added To Cart","ts":1,"\u0078":1,"x":2}"#,
        br#"{"user_id":"a","user_id":null,"event":"Added To Cart","ts":1}"#,
    ] {
        let text = String::from_utf8_lossy(line);
        assert_eq!(
            d.decode(line).unwrap_err(),
            Malformed::DuplicateKey,
            "{text}"
        );
    }
    // 40 keys: past the short list of seen keys.
    let many: String = (0..40).map(|i| format!(r#""k{i}":{i},"#)).collect();
    let line = format!(r#"{{{many}"user_id":"a","event":"Added To Cart","ts":1,"k39":0}}"#);
    assert_eq!(d.decode_str(&line).unwrap_err(), Malformed::DuplicateKey);
    let line = format!(r#"{{{many}"user_id":"a","event":"Added To Cart","ts":1}}"#);
    assert!(d.decode_str(&line).is_ok());
    assert_eq!(
        d.decode(br#"{"user_id":"a","user_id":"b","event":"#)
            .unwrap_err(),
        Malformed::InvalidJson
    );
    let r = d
        .decode(br#"{"user_id":"a","event":"Added To Cart","ts":1,"props":{"price":1,"price":5}}"#)
        .unwrap();
    let props = r.event.unwrap().props;
    assert_eq!(prop(&cfg.schema, &props, "price"), Some(&Value::Num(5.0)));
    assert_eq!(Malformed::DuplicateKey.as_str(), "duplicate_key");
    assert!(Malformed::ALL.contains(&Malformed::DuplicateKey));
}

/// Whether a record is malformed, and why, does not depend on the campaigns: a value no
/// campaign reads is read as strictly as one a campaign reads (numbers out of range, lone
/// surrogates, property objects that are not objects), for every format and place.
#[test]
fn the_verdict_does_not_depend_on_what_campaigns_read() {
    let events = ["Added To Cart", "Viewed Home Page", "Charged"];
    let props = [
        "price",
        "custom",
        "email",
        "phone",
        "age",
        "gender",
        "country",
        "region",
        "city",
        "app_version",
        "os_version",
        "device_make",
        "device_model",
        "sdk_version",
        "email_unsubscribed",
    ];
    let mut everything = Schema::default();
    for e in events {
        everything.intern_event(e);
    }
    for p in props {
        everything.intern_prop(p);
    }
    everything.keep_profile(16);
    let mut only_events = Schema::default();
    for e in events {
        only_events.intern_event(e);
    }
    let cfg = config();
    let schemas = [&Schema::default(), &only_events, &everything, &cfg.schema];

    // Past what fits in an f64, without an exponent.
    let long = "9".repeat(400);
    let long_inside = format!("[{long}]");
    let values = [
        "1",
        r#""text""#,
        long.as_str(),
        long_inside.as_str(),
        "1E400",
        "0.5e-400",
        "2.5e3",
        r#""a\nb""#,
        r#""\u00e9""#,
        r#"["\ud800"]"#,
        "1e400",
        "-1e400",
        r#""\ud800""#,
        r#""x\udc00""#,
        r#"[1e400]"#,
        r#"{"a":1e400}"#,
        r#"{"\ud800":1}"#,
        r#"{"$incr":1e400}"#,
        r#"{"$incr":{"\ud800":1}}"#,
        r#"{"$delete":1}"#,
        "null",
    ];
    let containers = [r#""x""#, "[1]", "3", "true", "null", "{}"];
    let mut lines: Vec<(Format, String)> = Vec::new();
    for v in values {
        for p in props {
            let o = format!(r#"{{"{p}":{v}}}"#);
            for e in events.iter().chain(&["Nobody Listens"]) {
                lines.push((
                    Format::Native,
                    format!(r#"{{"user_id":"u","event":"{e}","ts":1,"props":{o}}}"#),
                ));
                lines.push((
                    Format::Segment,
                    format!(r#"{{"type":"track","userId":"u","event":"{e}","timestamp":1,"properties":{o}}}"#),
                ));
                lines.push((
                    Format::Clevertap,
                    format!(r#"{{"identity":"u","evtName":"{e}","ts":1,"evtData":{o}}}"#),
                ));
            }
            lines.push((
                Format::Native,
                format!(r#"{{"user_id":"u","type":"profile","ts":1,"props":{o}}}"#),
            ));
            lines.push((
                Format::Segment,
                format!(r#"{{"type":"identify","userId":"u","timestamp":1,"traits":{o}}}"#),
            ));
            lines.push((
                Format::Segment,
                format!(
                    r#"{{"type":"identify","userId":"u","timestamp":1,"traits":{{"address":{o}}}}}"#
                ),
            ));
            lines.push((
                Format::Segment,
                format!(
                    r#"{{"type":"identify","userId":"u","timestamp":1,"context":{{"traits":{o}}}}}"#
                ),
            ));
            let ct = p[..1].to_uppercase() + &p[1..];
            lines.push((
                Format::Clevertap,
                format!(
                    r#"{{"identity":"u","type":"profile","ts":1,"profileData":{{"{ct}":{v}}}}}"#
                ),
            ));
        }
        for part in ["app", "os", "library"] {
            lines.push((
                Format::Segment,
                format!(r#"{{"type":"track","userId":"u","event":"Charged","timestamp":1,"context":{{"{part}":{{"version":{v}}}}}}}"#),
            ));
        }
        for field in ["manufacturer", "model"] {
            lines.push((
                Format::Segment,
                format!(r#"{{"type":"track","userId":"u","event":"Charged","timestamp":1,"context":{{"device":{{"{field}":{v}}}}}}}"#),
            ));
        }
        for field in ["country", "region", "city"] {
            lines.push((
                Format::Segment,
                format!(r#"{{"type":"page","userId":"u","timestamp":1,"context":{{"location":{{"{field}":{v}}}}}}}"#),
            ));
        }
    }
    for c in containers {
        for e in events.iter().chain(&["Nobody Listens"]) {
            lines.push((
                Format::Native,
                format!(r#"{{"user_id":"u","event":"{e}","ts":1,"props":{c}}}"#),
            ));
            lines.push((
                Format::Segment,
                format!(r#"{{"type":"track","userId":"u","event":"{e}","timestamp":1,"properties":{c}}}"#),
            ));
            lines.push((
                Format::Clevertap,
                format!(r#"{{"identity":"u","evtName":"{e}","ts":1,"evtData":{c}}}"#),
            ));
        }
    }
    let mut malformed = 0;
    for (format, line) in &lines {
        let verdicts: Vec<Result<(), Malformed>> = schemas
            .iter()
            .map(|s| Decoder::new(*format, s).decode_str(line).map(drop))
            .collect();
        assert!(
            verdicts.iter().all(|v| *v == verdicts[0]),
            "{format:?} {line}: {verdicts:?} (no campaigns, events only, everything, the config)"
        );
        malformed += usize::from(verdicts[0].is_err());
    }
    assert!(
        malformed > 100,
        "the cases include malformed ones: {malformed}"
    );
}

/// The device a record's app fields belong to (DESIGN.md §3a): native `device_id` on a profile
/// update, Segment `context.device.id` (the spec's Common Fields example), CleverTap's
/// `objectId` (the CleverTap ID, a device's id). Records naming none have `None`; a device id
/// that is neither a string nor an integer is `invalid_device_id`.
#[test]
fn records_name_their_device() {
    use crate::event::device_key;
    let cfg = config();
    let native = Decoder::new(Format::Native, &cfg.schema);
    let r = native
        .decode(br#"{"user_id":"u1","type":"profile","ts":1,"device_id":"ios-1","props":{"app_version":"5.10"}}"#)
        .unwrap();
    assert_eq!(r.profile.unwrap().device, Some(device_key("ios-1")));
    let r = native
        .decode(br#"{"user_id":"u1","type":"profile","ts":1,"props":{"app_version":"5.10"}}"#)
        .unwrap();
    assert_eq!(r.profile.unwrap().device, None);
    let r = native
        .decode(br#"{"user_id":"u1","type":"profile","ts":1,"device_id":42,"props":{}}"#)
        .unwrap();
    assert_eq!(r.profile.unwrap().device, Some(device_key("42")));
    assert_eq!(
        native
            .decode(br#"{"user_id":"u1","type":"profile","ts":1,"device_id":{"a":1},"props":{}}"#),
        Err(Malformed::InvalidDeviceId)
    );
    assert_eq!(Malformed::InvalidDeviceId.as_str(), "invalid_device_id");

    let cfg = segment_config();
    let segment = Decoder::new(Format::Segment, &cfg.schema);
    let r = segment
        .decode(br#"{"type":"track","userId":507,"event":"Viewed Home Page","timestamp":"2015-02-23T22:28:55.111Z","context":{"app":{"version":"545"},"device":{"id":"B5372DB0-C21E-11E4-8DFC-AA07A5B093DB","manufacturer":"Apple","model":"iPhone7,2","type":"ios"}}}"#)
        .unwrap();
    assert_eq!(
        r.profile.unwrap().device,
        Some(device_key("B5372DB0-C21E-11E4-8DFC-AA07A5B093DB"))
    );
    assert_eq!(
        segment.decode(br#"{"type":"track","userId":"u","event":"E","timestamp":1,"context":{"device":{"id":true}}}"#),
        Err(Malformed::InvalidDeviceId)
    );

    let cfg = config();
    let clevertap = Decoder::new(Format::Clevertap, &cfg.schema);
    let r = clevertap
        .decode(br#"{"identity":"u1","objectId":"__g1234abcd","type":"profile","ts":1795860000,"profileData":{"Email":"x@y.z"}}"#)
        .unwrap();
    assert_eq!(r.user, "u1");
    assert_eq!(r.profile.unwrap().device, Some(device_key("__g1234abcd")));
}

/// The properties of an event no campaign listens to are not parsed again when nothing in
/// them could be refused ([`plainly_acceptable`]); whatever it lets through, the seed accepts.
#[test]
fn plainly_acceptable_properties_are_the_seeds_accepted_ones() {
    let cfg = config();
    let d = Decoder::new(Format::Native, &cfg.schema);
    let long = format!(r#"{{"a":{}}}"#, "1".repeat(300));
    let plain = [
        r#"{"sku":"SKU-63878","price":9.57,"currency":"USD","page":"/p/63878"}"#,
        "{}",
        r#"{"a":[1,{"b":null}],"c":true,"d":-0.5}"#,
    ];
    let parsed = [
        "[1]",
        r#""x""#,
        "3",
        r#"{"a":"\n"}"#,
        r#"{"a":"\ud800"}"#,
        r#"{"a":1e5}"#,
        r#"{"a":2.5E-3}"#,
        long.as_str(),
    ];
    for t in plain {
        assert!(plainly_acceptable(t), "{t}");
    }
    for t in parsed {
        assert!(!plainly_acceptable(t), "{t}");
    }
    for t in plain.iter().chain(&parsed) {
        let raw: Box<RawValue> = serde_json::from_str(t).unwrap();
        let seed = d.props(Raw::from(&*raw), Keys::Unread, &mut ProfilePatch::default());
        assert!(!plainly_acceptable(t) || seed.is_ok(), "{t}: {seed:?}");
    }
}

/// A string without escapes is read off the line between its quotes; with escapes it is
/// decoded: either way the value serde_json gives (`None` where it refuses one).
#[test]
fn strings_are_what_serde_json_reads() {
    for text in [
        r#""abc""#,
        r#""""#,
        r#""é ü 日本""#,
        r#""a\"b""#,
        r#""\u00e9""#,
        r#""\\""#,
        r#""\ud800""#,
        r#""\ud83d\ude00""#,
        "12",
        "[\"a\"]",
        r#"{"a":"b"}"#,
    ] {
        let raw: Box<RawValue> = serde_json::from_str(text).unwrap();
        let expected = serde_json::from_str::<String>(text).ok();
        assert_eq!(
            string(Raw::from(&*raw)).map(Cow::into_owned),
            expected,
            "{text}"
        );
    }
}
