use super::*;

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
        (None, "engine"),
        (None, "engine.bogus"),
        (None, "engine.other"),
        (None, "tiktok.max_batch"),
        (Some("Bad_Id"), "id"),
        (Some("Bad_Id"), "ad_account"),
        (Some("Bad_Id"), "start"),
        (Some("Bad_Id"), "trigger.where[0]"),
        (Some("Bad_Id"), "trigger.where[1]"),
        (Some("Bad_Id"), "trigger.inaction.within"),
        (Some("Bad_Id"), "who.control_group"),
        (Some("Bad_Id"), "who.target_cap"),
        (Some("Bad_Id"), "what.audience.new.description"),
        (Some("Bad_Id"), "what.identifiers"),
        (Some("two"), "extra"),
        (Some("three"), "trigger.unknown"),
        (Some("three"), "trigger.where[0].typo"),
        (Some("three"), "what.audience.new.colour"),
        (Some("three"), "what.identifiers"),
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
