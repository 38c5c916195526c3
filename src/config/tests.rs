use super::*;
use crate::event::MAX_NAMES;

const GOOD: &str = r#"
[source]
format = "segment"
[engine]
allowed_lateness = "2s"
[tiktok]
access_token_env = "TIKTOK_ACCESS_TOKEN"
qps = 5
[[campaign]]
id = "cart-abandoners"
name = "Cart abandoners"
ad_account = "7178918106775994370"
start = "2026-11-01T00:00:00Z"
end = "2026-12-01T00:00:00Z"
[campaign.trigger]
event = "Added To Cart"
where = [{ prop = "price", op = ">=", value = 10 }]
[campaign.trigger.inaction]
event = "Charged"
within = "30m"
[campaign.who]
where = [{ prop = "app_version", op = ">=", value = "5.10" }, { prop = "age", op = "between", value = [21, 65] }]
control_group = 10
target_cap = 10000
[campaign.what]
audience = { new = { name = "Cart abandoners", description = "added to cart, no purchase" } }
identifiers = ["email", "phone"]
remove_on_goal = true
[campaign.goal]
event = "Charged"
within = "5d"
"#;

#[test]
fn parses_a_full_config() {
    let c = Config::parse(GOOD, Vec::new()).unwrap();
    assert_eq!(c.source.format, Format::Segment);
    assert_eq!(c.engine.allowed_lateness.as_millis(), 2000);
    assert_eq!(c.engine.idle_timeout.as_millis(), 30_000);
    assert_eq!(c.tiktok.max_batch, 10_000);
    assert_eq!(
        c.tiktok.token,
        TokenSource::Env("TIKTOK_ACCESS_TOKEN".into())
    );
    let k = &c.campaigns[0];
    assert_eq!(k.within_ms(), 30 * 60 * 1000);
    assert_eq!(k.who.control_group, 10);
    assert_eq!(k.who.target_cap, Some(10_000));
    assert!(k.what.identifiers.email && k.what.identifiers.phone);
    assert_eq!(k.goal.as_ref().unwrap().within.as_millis(), 5 * 86_400_000);
    assert!(c.schema.wants_email && c.schema.wants_phone);
}

#[test]
fn env_overrides_service_sections() {
    let env = vec![
        ("REMARKET__TIKTOK__QPS".to_string(), "20".to_string()),
        (
            "REMARKET__ENGINE__ALLOWED_LATENESS".to_string(),
            "1s".to_string(),
        ),
        ("UNRELATED".to_string(), "x".to_string()),
    ];
    let c = Config::parse(GOOD, env).unwrap();
    assert_eq!(c.tiktok.qps, 20.0);
    assert_eq!(c.engine.allowed_lateness.as_millis(), 1000);
}

#[test]
fn an_override_that_does_not_parse_names_its_variable_and_key() {
    for (var, value) in [
        ("REMARKET__ENGINE__SHARDS", "many"),
        ("REMARKET__ENGINE__SHARDS", "5000"),
        ("REMARKET__TIKTOK__QPS", "fast"),
    ] {
        let problems = Config::parse(GOOD, vec![(var.to_string(), value.to_string())])
            .expect_err("a bad override is a problem");
        let text = problems.to_string();
        let key = var.rsplit("__").next().unwrap().to_lowercase();
        assert!(
            text.contains(&format!("(set by {var})")) && text.contains(&key),
            "{var}={value}: {text}"
        );
    }
}

#[test]
fn lists_every_problem_with_campaign_and_field() {
    let bad = r#"
[engine]
allowed_lateness = "soon"
bogus = 1
other = 2
[tiktok]
max_batch = 20000
[[campaign]]
id = "Bad_Id"
name = "x"
ad_account = "abc"
start = "yesterday"
[campaign.trigger]
event = "A"
where = [{ prop = "price", op = "~", value = 1 }, { prop = "x", op = "in", value = 3 }]
[campaign.trigger.inaction]
event = "B"
within = "0s"
[campaign.who]
control_group = 100
target_cap = 0
[campaign.what]
audience = { new = { name = "n", description = "DESCRIPTION" } }
identifiers = []
[[campaign]]
id = "two"
name = "two"
ad_account = "1"
start = "2026-01-01T00:00:00Z"
extra = true
[[campaign]]
id = "three"
name = "three"
ad_account = "1"
start = "2026-01-01T00:00:00Z"
[campaign.trigger]
event = "A"
unknown = 1
where = [{ prop = "p", op = "=", value = 1, typo = 2 }]
[campaign.what]
audience = { new = { name = "n", colour = "red" } }
identifiers = ["email", "fax"]
"#
    .replace("DESCRIPTION", &"d".repeat(201));
    let problems = Config::parse(&bad, Vec::new()).unwrap_err();
    let got: Vec<(Option<&str>, &str)> = problems
        .0
        .iter()
        .map(|e| (e.campaign.as_deref(), e.field.as_str()))
        .collect();
    for want in [
        (None, "engine.allowed_lateness"),
        (None, "engine.bogus"),
        (None, "engine.other"),
        (None, "tiktok.max_batch"),
        (Some("Bad_Id"), "id"),
        (Some("Bad_Id"), "ad_account"),
        (Some("Bad_Id"), "start"),
        (Some("Bad_Id"), "trigger.where[0].op"),
        (Some("Bad_Id"), "trigger.where[1].value"),
        (Some("Bad_Id"), "trigger.inaction.within"),
        (Some("Bad_Id"), "who.control_group"),
        (Some("Bad_Id"), "who.target_cap"),
        (Some("Bad_Id"), "what.audience.new.description"),
        (Some("Bad_Id"), "what.identifiers"),
        (Some("two"), "extra"),
        (Some("three"), "trigger.unknown"),
        (Some("three"), "trigger.where[0].typo"),
        (Some("three"), "what.audience.new.colour"),
        (Some("three"), "what.identifiers[1]"),
    ] {
        assert!(got.contains(&want), "missing {want:?} in {problems}");
    }
    let text = problems.to_string();
    assert!(
        text.contains("campaign Bad_Id: who.control_group"),
        "{text}"
    );
}

#[test]
fn requires_a_campaign_and_unique_ids() {
    let p = Config::parse("[engine]\nshards = 2\n", Vec::new()).unwrap_err();
    assert_eq!(p.0[0].field, "campaign");
    // Found by the config fuzz target: an empty list was accepted.
    let p = Config::parse("campaign = []\n", Vec::new()).unwrap_err();
    assert_eq!(
        p.to_string(),
        "1 configuration problem(s):\n  - campaign: at least one [[campaign]] is required\n"
    );
    let two = format!("{GOOD}\n{}", &GOOD[GOOD.find("[[campaign]]").unwrap()..]);
    let p = Config::parse(&two, Vec::new()).unwrap_err();
    assert!(p.to_string().contains("duplicate campaign id"), "{p}");
}

#[test]
fn kafka_client_values_come_from_the_config_a_file_or_the_environment_and_stay_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "s3cret-from-file\n").unwrap();
    let text = format!(
        "{GOOD}\n[kafka]\nbrokers = \"b:9092\"\n[kafka.client]\n\
         \"security.protocol\" = \"sasl_ssl\"\n\"sasl.username\" = {{ env = \"KAFKA_USER\" }}\n\
         \"sasl.password\" = {{ file = {:?} }}\n\"ssl.key.password\" = \"inline-secret\"\n\
         \"socket.keepalive.enable\" = true\n",
        password.display().to_string()
    );
    let env = vec![("KAFKA_USER".to_string(), "user-from-env".to_string())];
    let c = Config::parse(&text, env).unwrap();
    let k = c.kafka.unwrap();
    let got: Vec<(&str, &str)> = k
        .client
        .iter()
        .map(|(key, v)| (key.as_str(), v.expose()))
        .collect();
    assert_eq!(
        got,
        [
            ("sasl.password", "s3cret-from-file"),
            ("sasl.username", "user-from-env"),
            ("security.protocol", "sasl_ssl"),
            ("socket.keepalive.enable", "true"),
            ("ssl.key.password", "inline-secret"),
        ]
    );
    let shown = format!("{k:?}");
    for secret in ["s3cret-from-file", "user-from-env", "inline-secret"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(
        shown.contains("sasl_ssl"),
        "plain values are shown: {shown}"
    );
}

#[test]
fn an_unreadable_kafka_client_source_is_a_problem_naming_the_key() {
    let text = format!(
        "{GOOD}\n[kafka]\nbrokers = \"b:9092\"\n[kafka.client]\n\
         \"sasl.password\" = {{ file = \"/nonexistent/password\" }}\n\
         \"sasl.username\" = {{ env = \"NOT_SET_ANYWHERE\" }}\n\
         \"sasl.mechanism\" = {{ path = \"x\" }}\n"
    );
    let text = Config::parse(&text, Vec::new()).unwrap_err().to_string();
    for want in [
        "kafka.client.\"sasl.password\": cannot read /nonexistent/password",
        "kafka.client.\"sasl.username\": environment variable NOT_SET_ANYWHERE is not set",
        "kafka.client.\"sasl.mechanism\": a table must be { file = PATH } or { env = NAME }",
    ] {
        assert!(text.contains(want), "{want:?} in {text}");
    }
}

// === every problem, each with its campaign and full path ===

/// The problems of `text` as `campaign: field: message` lines, sorted.
fn problems_of(text: &str) -> Vec<String> {
    let mut got: Vec<String> = Config::parse(text, Vec::new())
        .expect_err("the config has problems")
        .0
        .iter()
        .map(ToString::to_string)
        .collect();
    got.sort();
    got
}

/// `GOOD` with `edits` applied: each `(line, replacement)` replaces a whole line.
fn good_with(edits: &[(&str, &str)]) -> String {
    let mut text = GOOD.to_owned();
    for (line, new) in edits {
        let at = text
            .lines()
            .position(|l| l == *line)
            .unwrap_or_else(|| panic!("no line {line:?} in GOOD"));
        let mut lines: Vec<&str> = text.lines().collect();
        lines[at] = new;
        text = lines.join("\n") + "\n";
    }
    text
}

#[test]
fn a_type_error_hides_no_other_problem_and_duplicate_ids_are_found_whatever_else_is_wrong() {
    let text = r#"
[[campaign]]
id = "cart"
name = 5
ad_account = "1"
start = "2026-01-01T00:00:00Z"
[campaign.trigger]
event = "A"
where = [{ prop = "price", op = ">=", value = 10 }, { prop = "sku", op = "~", value = "x" }]
[campaign.who]
control_group = "ten"
where = [{ prop = "age", op = ">", value = 20 }, { prop = "country", op = "~", value = "DE" }]
[campaign.what]
audience = { existing = "5" }
identifiers = ["email"]

[[campaign]]
id = "cart"
name = "Cart again"
ad_account = "x"
start = "2026-01-01T00:00:00Z"
[campaign.trigger]
event = "A"
[campaign.what]
audience = { existing = "5" }
identifiers = ["email"]

[[campaign]]
id = "fine"
name = "Fine"
ad_account = "1"
start = "2026-01-01T00:00:00Z"
[campaign.trigger]
event = "A"
[campaign.what]
audience = { existing = "5" }
identifiers = ["phone"]
"#;
    assert_eq!(
        problems_of(text),
        [
            "campaign cart (#1): name: invalid type: integer 5, expected a string",
            "campaign cart (#1): trigger.where[1].op: unknown operator \"~\"",
            "campaign cart (#1): who.control_group: invalid type: string \"ten\", expected an integer",
            "campaign cart (#1): who.where[1].op: unknown operator \"~\"",
            "campaign cart (#2): ad_account: must be a TikTok advertiser id (digits)",
            "campaign cart (#2): id: duplicate campaign id: [[campaign]] #1 has it too",
        ]
    );
}

#[test]
fn every_wrong_field_of_a_condition_is_reported_at_its_path() {
    let text = good_with(&[(
        "where = [{ prop = \"price\", op = \">=\", value = 10 }]",
        "where = [{ prop = 1, op = \"in\", value = [1, \"a\", nan] }, \"x\", { op = \"between\", value = [3, 1] }]",
    )]);
    assert_eq!(
        problems_of(&text),
        [
            "campaign cart-abandoners: trigger.where[0].prop: invalid type: integer 1, expected a string",
            "campaign cart-abandoners: trigger.where[0].value[2]: must be a finite number",
            "campaign cart-abandoners: trigger.where[1]: invalid type: string \"x\", expected a table",
            "campaign cart-abandoners: trigger.where[2].prop: missing",
            "campaign cart-abandoners: trigger.where[2].value: between needs [low, high] with low <= high",
        ]
    );
}

#[test]
fn dates_nan_and_infinities_are_not_condition_values() {
    for value in [
        "2026-01-01T00:00:00Z",
        "1979-05-27",
        "07:32:00",
        "nan",
        "inf",
        "-inf",
        "[1, nan]",
        "[2026-01-01, 2027-01-01]",
    ] {
        let op = if value.starts_with('[') {
            "between"
        } else {
            ">="
        };
        let text = good_with(&[(
            "where = [{ prop = \"price\", op = \">=\", value = 10 }]",
            &format!("where = [{{ prop = \"price\", op = \"{op}\", value = {value} }}]"),
        )]);
        let got = problems_of(&text);
        assert!(!got.is_empty());
        for p in &got {
            assert!(
                p.starts_with("campaign cart-abandoners: trigger.where[0].value")
                    && (p.contains("finite") || p.contains("date-time")),
                "{value}: {got:?}"
            );
        }
    }
}

#[test]
fn condition_values_are_never_repeated_in_messages() {
    let text = good_with(&[(
        "where = [{ prop = \"price\", op = \">=\", value = 10 }]",
        "where = [{ prop = \"email\", op = \"in\", value = [[\"alice@example.com\"]] }, \
         { prop = \"phone\", op = \">\", value = [\"+15551234567\"] }]",
    )]);
    let text = problems_of(&text).join("\n");
    assert!(text.contains("trigger.where[0].value[0]"), "{text}");
    assert!(text.contains("trigger.where[1].value"), "{text}");
    assert!(
        !text.contains("alice") && !text.contains("5551234567"),
        "{text}"
    );
}

#[test]
fn an_inaction_on_the_trigger_event_is_refused() {
    let text = good_with(&[("event = \"Charged\"", "event = \"Added To Cart\"")]);
    assert_eq!(
        problems_of(&text),
        [
            "campaign cart-abandoners: trigger.inaction.event: must differ from trigger.event \
          (the trigger would close its own window)"
        ]
    );
}

#[test]
fn durations_past_their_range_are_refused_with_the_range() {
    for (line, new, want) in [
        (
            "allowed_lateness = \"2s\"",
            "allowed_lateness = \"100y\"",
            "engine.allowed_lateness: must be from 0s to 1d, not \"100y\"",
        ),
        (
            "allowed_lateness = \"2s\"",
            "idle_timeout = \"0s\"",
            "engine.idle_timeout: must be from 1ms to 1d, not \"0s\"",
        ),
        (
            "allowed_lateness = \"2s\"",
            "max_future = \"31d\"",
            "engine.max_future: must be from 1ms to 30d, not \"31d\"",
        ),
        (
            "qps = 5",
            "linger = \"2h\"",
            "tiktok.linger: must be from 1ms to 1h, not \"2h\"",
        ),
        (
            "qps = 5",
            "drain_grace = \"500us\"",
            "tiktok.drain_grace: must be from 1ms to 1h, not \"500us\"",
        ),
        (
            "within = \"30m\"",
            "within = \"366d\"",
            "campaign cart-abandoners: trigger.inaction.within: must be from 1ms to 365d, not \"366d\"",
        ),
        (
            "within = \"5d\"",
            "within = \"0s\"",
            "campaign cart-abandoners: goal.within: must be from 1ms to 365d, not \"0s\"",
        ),
    ] {
        assert_eq!(problems_of(&good_with(&[(line, new)])), [want], "{new}");
    }
    let text = format!("{GOOD}\n[kafka]\nbrokers = \"b:9092\"\ncommit_interval = \"1d\"\n");
    assert_eq!(
        problems_of(&text),
        ["kafka.commit_interval: must be from 1ms to 1h, not \"1d\""]
    );
    // The ends of each range are accepted.
    let edge = good_with(&[
        (
            "allowed_lateness = \"2s\"",
            "allowed_lateness = \"1d\"\nmax_future = \"30d\"",
        ),
        ("within = \"30m\"", "within = \"365d\""),
        ("qps = 5", "linger = \"1h\"\ndrain_grace = \"1ms\""),
    ]);
    Config::parse(&edge, Vec::new()).expect("the ends of every range are valid");
}

#[test]
fn a_rate_the_limiter_cannot_keep_is_refused() {
    for qps in ["1e-300", "0.00001", "0", "-1", "nan", "inf", "10001", "1e9"] {
        let text = good_with(&[("qps = 5", &format!("qps = {qps}"))]);
        assert_eq!(
            problems_of(&text),
            ["tiktok.qps: must be from 0.01 to 10000 requests per second"],
            "{qps}"
        );
    }
    for qps in ["0.01", "10000", "1", "2.5"] {
        let text = good_with(&[("qps = 5", &format!("qps = {qps}"))]);
        let c = Config::parse(&text, Vec::new()).expect(qps);
        // What the sink builds from it must not panic.
        crate::sink::ratelimit::RateLimiter::new(c.tiktok.qps);
    }
}

#[test]
fn a_base_url_must_be_an_absolute_http_url_and_is_not_repeated() {
    for url in [
        "business-api.tiktok.com",
        "ftp://business-api.tiktok.com",
        "http://",
        "https://user:secret@[::1",
        "https://business-api.tiktok.com/?a=1",
        "https://business-api.tiktok.com/#x",
        "",
    ] {
        let text = good_with(&[("qps = 5", &format!("base_url = {url:?}"))]);
        let got = problems_of(&text);
        assert_eq!(got.len(), 1, "{url}: {got:?}");
        assert!(got[0].starts_with("tiktok.base_url: "), "{url}: {got:?}");
        assert!(url.is_empty() || !got[0].contains(url), "{url}: {got:?}");
        assert!(!got[0].contains("secret"), "{got:?}");
    }
    for url in [
        "http://127.0.0.1:8099",
        "https://business-api.tiktok.com/",
        "https://proxy.internal/tiktok",
    ] {
        let text = good_with(&[("qps = 5", &format!("base_url = {url:?}"))]);
        Config::parse(&text, Vec::new()).expect(url);
    }
}

#[test]
fn an_empty_token_source_is_refused() {
    for (line, field) in [
        ("access_token_env = \"\"", "tiktok.access_token_env"),
        ("access_token_env = \"A=B\"", "tiktok.access_token_env"),
        ("access_token_file = \"\"", "tiktok.access_token_file"),
    ] {
        let text = good_with(&[("access_token_env = \"TIKTOK_ACCESS_TOKEN\"", line)]);
        let got = problems_of(&text);
        assert_eq!(got.len(), 1, "{line}: {got:?}");
        assert!(got[0].starts_with(&format!("{field}: ")), "{line}: {got:?}");
    }
}

#[test]
fn audience_names_longer_than_tiktok_keeps_are_refused() {
    let line = "audience = { new = { name = \"Cart abandoners\", description = \"added to cart, no purchase\" } }";
    let named = |name: &str| {
        good_with(&[(
            line,
            &format!("audience = {{ new = {{ name = {name:?} }} }}"),
        )])
    };
    assert_eq!(
        problems_of(&named(&"n".repeat(71))),
        [
            "campaign cart-abandoners: what.audience.new.name: 71 characters, at most 70 \
          (TikTok cuts longer audience names)"
        ]
    );
    // Characters, not bytes; and what is accepted is what TikTok keeps.
    let longest = "é".repeat(70);
    let c = Config::parse(&named(&longest), Vec::new()).unwrap();
    let campaign::Audience::New { name, .. } = &c.campaigns[0].what.audience else {
        panic!("a new audience");
    };
    assert_eq!(crate::sink::audiences::tiktok_name(name), longest);
}

#[test]
fn names_past_what_ids_can_hold_are_one_problem_not_a_panic() {
    let mut schema = Schema::default();
    for i in 0..MAX_NAMES {
        assert_eq!(schema.intern_prop(&format!("p{i}")), Some(i));
        assert_eq!(schema.intern_event(&format!("e{i}")), Some(i));
    }
    assert_eq!(
        schema.intern_prop("p0"),
        Some(0),
        "known names still resolve"
    );
    assert_eq!(schema.intern_prop("one more"), None);
    assert_eq!(schema.intern_event("one more"), None);

    // 65,535 property names in all, with the 12 canonical ones: the next one is refused.
    let wanted = usize::from(MAX_NAMES) - crate::event::CANONICAL_PROPS.len() + 1;
    let conds: Vec<String> = (0..wanted)
        .map(|i| format!("{{ prop = \"p{i}\", op = \"exists\" }}"))
        .collect();
    let text = good_with(&[(
        "where = [{ prop = \"price\", op = \">=\", value = 10 }]",
        &format!("where = [{}]", conds.join(", ")),
    )]);
    let got = problems_of(&text);
    assert_eq!(
        got,
        [format!(
            "campaign cart-abandoners: trigger.where[{}].prop: more than 65535 distinct property \
             names in the config (the 12 canonical profile properties included)",
            wanted - 1
        )]
    );
}

const PAST: &str = r#"
[[segment]]
id = "engaged"
where = [{ prop = "country", op = "=", value = "DE" }]
past = [{ did = "App Launched", in_last = "30d" }]

[[campaign]]
id = "viewed-not-bought"
name = "Viewed, no purchase"
ad_account = "7178918106775994370"
start = "2026-12-01T00:00:00Z"
end = "2027-03-01T00:00:00Z"
[campaign.schedule]
timezone = "America/New_York"
repeat = { every = 1, unit = "week", weekdays = ["mon", "thu"], time = "18:30" }
runs = 10
[campaign.who]
segment = "engaged"
where = [{ prop = "has_email", op = "=", value = true }]
past = [
  { did = "Viewed Product", where = [{ prop = "category", op = "=", value = "shoes" }], in_last = "30d" },
  { did_not = "Charged", in_last = "30d" },
  { did = "Charged", agg = "sum", prop = "amount", op = ">", value = 100, between = ["90d", "31d"] },
  { did = "App Launched", agg = "count", op = ">=", value = 3, in_last = "7d" },
  { did = "Charged", agg = "avg", prop = "amount", op = "between", value = [20, 80], in_last = "all" },
]
[campaign.what]
audience = { new = { name = "Viewed not bought" } }
identifiers = ["email"]
"#;

#[test]
fn past_behaviour_campaigns_segments_and_schedules_parse() {
    use crate::campaign::past::{Agg, Range};
    let c = Config::parse(PAST, Vec::new()).unwrap();
    let k = &c.campaigns[0];
    assert!(k.trigger.is_none());
    let s = k.schedule.as_ref().unwrap();
    assert_eq!(s.runs, Some(10));
    // The campaign's own where and the segment's, as one list; its rules and the segment's.
    assert_eq!(k.who.conditions.len(), 2);
    assert_eq!(k.who.past.len(), 6);
    let ranges: Vec<Range> = k.who.past.iter().map(|p| p.range).collect();
    assert_eq!(
        ranges,
        [
            Range::Last(30),
            Range::Last(30),
            Range::Between(90, 31),
            Range::Last(7),
            Range::All,
            Range::Last(30),
        ]
    );
    assert!(k.who.past[1].negated);
    assert_eq!(k.who.past[2].agg.as_ref().map(|a| a.0), Some(Agg::Sum));
    let rules = crate::detect::Rules::compile(&c.campaigns, &c.schema);
    assert_eq!(rules.past.len(), 6);
    assert!(rules.rules[0].schedule.is_some());
}

#[test]
fn every_past_behaviour_problem_is_reported_with_its_field() {
    let edit = |from: &str, to: &str| {
        assert!(PAST.contains(from), "{from}");
        PAST.replace(from, to)
    };
    let cases = [
        (edit("America/New_York", "Mars/Olympus"), "schedule.timezone: unknown time zone"),
        (
            edit("[campaign.schedule]", "[campaign.trigger]\nevent = \"X\"\n[campaign.schedule]"),
            "not both",
        ),
        (
            edit("unit = \"week\", weekdays", "unit = \"day\", weekdays"),
            "schedule.repeat.weekdays: only with unit = \"week\"",
        ),
        (
            edit("agg = \"sum\", prop = \"amount\",", "agg = \"sum\","),
            "who.past[2].prop: sum needs prop",
        ),
        (edit("segment = \"engaged\"", "segment = \"nope\""), "who.segment: unknown segment"),
        (edit("in_last = \"7d\"", "in_last = \"7h\""), "who.past[3].in_last"),
        (edit("in_last = \"7d\"", "in_last = \"401d\""), "at most 400"),
        (edit("[\"90d\", \"31d\"]", "[\"31d\", \"90d\"]"), "who.past[2].between"),
        (edit("{ did_not = \"Charged\", in_last = \"30d\" }", "{ did_not = \"Charged\", agg = \"count\", op = \"=\", value = 0, in_last = \"30d\" }"), "who.past[1].agg: did_not takes no agg"),
        (edit("identifiers = [\"email\"]", "identifiers = [\"email\"]\nsync = \"mirrored\""), "what.sync: unknown sync"),
        (edit("runs = 10", "runs = 10\nuntil = \"2027-01-01T00:00:00Z\""), "until or runs"),
    ];
    for (text, want) in cases {
        let got = problems_of(&text);
        assert!(
            got.iter().any(|p| p.contains(want)),
            "{want:?} not in {got:#?}"
        );
        assert!(
            got.iter().any(|p| p.contains("viewed-not-bought")),
            "{got:#?}"
        );
    }
    // Neither a trigger nor a schedule.
    let got = problems_of(&edit(
        "[campaign.schedule]\ntimezone = \"America/New_York\"\nrepeat = { every = 1, unit = \"week\", weekdays = [\"mon\", \"thu\"], time = \"18:30\" }\nruns = 10\n",
        "",
    ));
    assert!(
        got.iter().any(|p| p.contains("needs [campaign.trigger]")),
        "{got:#?}"
    );
}

/// Found by the config fuzz target: a wrong `control_group` hid a wrong `target_cap`.
#[test]
fn every_wrong_field_of_one_table_is_reported() {
    let text = good_with(&[
        ("control_group = 10", "control_group = nan"),
        ("target_cap = 10000", "target_cap = []"),
    ]);
    assert_eq!(
        problems_of(&text),
        [
            "campaign cart-abandoners: who.control_group: invalid type: float nan, expected an integer",
            "campaign cart-abandoners: who.target_cap: invalid type: an array, expected an integer",
        ]
    );
}

/// `once_per_user = false` (a decision per run) and `sync = "mirror"` are for scheduled
/// campaigns; on a live one each is a problem naming the field.
#[test]
fn once_per_user_false_and_mirror_need_a_schedule() {
    let per_run = PAST.replace(
        "id = \"viewed-not-bought\"\n",
        "id = \"viewed-not-bought\"\nonce_per_user = false\n",
    );
    assert_ne!(per_run, PAST);
    let c = Config::parse(&per_run, Vec::new()).unwrap();
    assert!(!c.campaigns[0].once_per_user);
    assert!(Config::parse(PAST, Vec::new()).unwrap().campaigns[0].once_per_user);
    let live = r#"
[[campaign]]
id = "live"
name = "Live"
ad_account = "1"
start = "2026-11-01T00:00:00Z"
once_per_user = false
[campaign.trigger]
event = "Added To Cart"
[campaign.what]
audience = { existing = "9" }
identifiers = ["email"]
"#;
    let got = problems_of(live);
    assert!(
        got.iter()
            .any(|p| p.contains("live") && p.contains("once_per_user") && p.contains("schedule")),
        "{got:#?}"
    );
    // Mirror, too, is for scheduled campaigns.
    let mirror = PAST.replace(
        "identifiers = [\"email\"]",
        "identifiers = [\"email\"]\nsync = \"mirror\"",
    );
    assert!(
        Config::parse(&mirror, Vec::new()).unwrap().campaigns[0]
            .what
            .mirror
    );
    let live_mirror = live.replace("once_per_user = false\n", "").replace(
        "identifiers = [\"email\"]",
        "identifiers = [\"email\"]\nsync = \"mirror\"",
    );
    let got = problems_of(&live_mirror);
    assert!(
        got.iter()
            .any(|p| p.contains("what.sync") && p.contains("schedule")),
        "{got:#?}"
    );
}

#[test]
fn ad_accounts_need_a_digit_id_once_and_a_token() {
    let text = good_with(&[(
        "qps = 5",
        "qps = 5\n\
         [[tiktok.account]]\nadvertiser_id = \"71\"\nname = \"Brand\"\naccess_token_file = \"/run/b\"\n\
         [[tiktok.account]]\nadvertiser_id = \"71\"\naccess_token_env = \"B\"\n\
         [[tiktok.account]]\nadvertiser_id = \"x1\"\n\
         [[tiktok.account]]\nadvertiser_id = \"72\"\naccess_token_env = \"B\"\ncolour = 1",
    )]);
    let got = problems_of(&text);
    assert_eq!(
        got,
        [
            "tiktok.account[1].advertiser_id: 71 is listed twice",
            "tiktok.account[2].access_token_file: missing (an account's token: access_token_file or access_token_env)",
            "tiktok.account[2].advertiser_id: must be a TikTok advertiser id (digits)",
            "tiktok.account[3].colour: unknown field",
        ]
    );
    let ok = good_with(&[(
        "qps = 5",
        "qps = 5\n[[tiktok.account]]\nadvertiser_id = \"71\"\nname = \"Brand\"\naccess_token_file = \"/run/b\"",
    )]);
    let config = Config::parse(&ok, Vec::new()).unwrap();
    assert_eq!(
        config.tiktok.accounts,
        [Account {
            advertiser_id: "71".into(),
            name: Some("Brand".into()),
            token: TokenSource::File("/run/b".into()),
        }]
    );
}
