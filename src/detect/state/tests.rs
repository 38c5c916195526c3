//! Unit tests of the detect state machine (DESIGN §4), driven through a synchronous shard so
//! that buffering, watermarks and timers are exercised exactly as in production.

use std::sync::Arc;

use super::{Interner, Prop};
use crate::config::Config;
use crate::detect::shard::Shard;
use crate::detect::{CampaignIdx, Output, Rules};
use crate::event::{Event, IdUpdate, ProfilePatch, Record, Value, ValueRef};
use crate::identity::hash_email;

const BASE: &str = r#"
[[campaign]]
id = "c"
name = "C"
ad_account = "1"
start = "1970-01-01T00:00:00Z"
end = "1970-01-02T00:00:00Z"
[campaign.what]
audience = { existing = "9" }
identifiers = ["email"]
"#;

fn config(extra: &str) -> Config {
    Config::parse(&format!("{BASE}{extra}"), Vec::new()).expect("valid test config")
}

struct T {
    cfg: Config,
    shard: Shard,
    seq: u64,
}

impl T {
    fn new(extra: &str) -> T {
        let cfg = config(extra);
        let rules = Arc::new(Rules::compile(&cfg.campaigns, &cfg.schema));
        T {
            shard: Shard::new(rules),
            cfg,
            seq: 0,
        }
    }

    fn push(&mut self, rec: Record) -> &mut Self {
        self.seq += 1;
        self.shard.push(self.seq, rec);
        self
    }

    fn ev(&mut self, user: &str, ts: i64, name: &str, props: &[(&str, Value)]) -> &mut Self {
        let schema = &self.cfg.schema;
        let rec = Record {
            user: user.into(),
            ts,
            event: Some(Event {
                id: schema.event(name),
                props: props
                    .iter()
                    .filter_map(|(k, v)| schema.prop(k).map(|p| (p, v.clone())))
                    .collect(),
            }),
            profile: None,
            erase: false,
        };
        self.push(rec)
    }

    fn profile(&mut self, user: &str, ts: i64, props: &[(&str, Value)]) -> &mut Self {
        self.profile_on(user, ts, None, props)
    }

    /// A profile update from device `device` (`None`: a record naming no device).
    fn profile_on(
        &mut self,
        user: &str,
        ts: i64,
        device: Option<&str>,
        props: &[(&str, Value)],
    ) -> &mut Self {
        let schema = &self.cfg.schema;
        let mut patch = ProfilePatch {
            device: device.map(crate::event::device_key),
            ..ProfilePatch::default()
        };
        for (k, v) in props {
            if *k == "email" {
                patch.email = match v {
                    Value::Str(s) => hash_email(s).map_or(IdUpdate::Cleared, IdUpdate::Set),
                    _ => IdUpdate::Cleared,
                };
            } else if let Some(p) = schema.prop(k) {
                patch.props.push((p, v.clone()));
            }
        }
        self.push(Record {
            user: user.into(),
            ts,
            event: None,
            profile: Some(Box::new(patch)),
            erase: false,
        })
    }

    fn advance(&mut self, wm: i64) -> Output {
        self.shard.advance(wm);
        self.shard.take_output()
    }

    /// `(user, at)` of each qualification.
    fn quals(&mut self, wm: i64) -> Vec<(String, i64)> {
        let out = self.advance(wm);
        out.qualifications
            .iter()
            .map(|q| (q.user.to_string(), q.at))
            .collect()
    }
}

fn s(x: &str) -> Value {
    Value::Str(x.into())
}

const LIVE: &str = r#"
[campaign.trigger]
event = "Added To Cart"
where = [{ prop = "price", op = ">=", value = 10 }]
"#;

const PAIR: &str = r#"
[campaign.trigger]
event = "Added To Cart"
[campaign.trigger.inaction]
event = "Charged"
within = "30ms"
"#;

#[test]
fn live_trigger_qualifies_at_event_time_when_where_holds() {
    let mut t = T::new(LIVE);
    t.ev("a", 100, "Added To Cart", &[("price", Value::Num(10.0))]);
    t.ev("b", 100, "Added To Cart", &[("price", Value::Num(9.99))]);
    t.ev("c", 101, "Added To Cart", &[]);
    t.ev("d", 102, "Added To Cart", &[("price", s("10"))]);
    assert_eq!(t.quals(1000), vec![("a".into(), 100)]);
}

#[test]
fn nothing_fires_before_the_watermark_reaches_it() {
    let mut t = T::new(LIVE);
    t.ev("a", 100, "Added To Cart", &[("price", Value::Num(50.0))]);
    assert!(t.quals(99).is_empty());
    assert_eq!(t.shard.buffered(), 1);
    assert_eq!(t.quals(100), vec![("a".into(), 100)]);
}

#[test]
fn campaign_window_is_start_inclusive_end_exclusive() {
    let extra = LIVE.replace(
        "where = [{ prop = \"price\", op = \">=\", value = 10 }]",
        "",
    );
    let cfg = BASE
        .replace("1970-01-01T00:00:00Z", "1970-01-01T00:00:01Z")
        .replace("1970-01-02T00:00:00Z", "1970-01-01T00:00:02Z");
    let cfg = Config::parse(&format!("{cfg}{extra}"), Vec::new()).unwrap();
    let mut t = T {
        shard: Shard::new(Arc::new(Rules::compile(&cfg.campaigns, &cfg.schema))),
        cfg,
        seq: 0,
    };
    t.ev("before", 999, "Added To Cart", &[]);
    t.ev("start", 1000, "Added To Cart", &[]);
    t.ev("last", 1999, "Added To Cart", &[]);
    t.ev("end", 2000, "Added To Cart", &[]);
    assert_eq!(
        t.quals(5000),
        vec![("start".into(), 1000), ("last".into(), 1999)]
    );
}

#[test]
fn inaction_window_qualifies_at_ta_plus_within() {
    let mut t = T::new(PAIR);
    t.ev("a", 100, "Added To Cart", &[]);
    assert!(t.quals(129).is_empty(), "window still open");
    assert_eq!(t.quals(130), vec![("a".into(), 130)]);
}

#[test]
fn inaction_bounds_are_inclusive() {
    let mut t = T::new(PAIR);
    t.ev("closed-at-end", 100, "Added To Cart", &[]);
    t.ev("closed-at-end", 130, "Charged", &[]);
    t.ev("too-late", 100, "Added To Cart", &[]);
    t.ev("too-late", 131, "Charged", &[]);
    assert_eq!(t.quals(1000), vec![("too-late".into(), 130)]);
}

#[test]
fn inaction_at_the_same_ts_as_the_trigger_closes_it_in_either_order() {
    let mut t = T::new(PAIR);
    t.ev("a-then-b", 100, "Added To Cart", &[]);
    t.ev("a-then-b", 100, "Charged", &[]);
    t.ev("b-then-a", 100, "Charged", &[]);
    t.ev("b-then-a", 100, "Added To Cart", &[]);
    t.ev("b-before", 99, "Charged", &[]);
    t.ev("b-before", 100, "Added To Cart", &[]);
    assert_eq!(t.quals(1000), vec![("b-before".into(), 130)]);
}

#[test]
fn one_inaction_closes_every_open_window() {
    let mut t = T::new(PAIR);
    t.ev("u", 100, "Added To Cart", &[]);
    t.ev("u", 110, "Added To Cart", &[]);
    t.ev("u", 120, "Charged", &[]);
    assert!(t.quals(200).is_empty());
    t.ev("u", 250, "Added To Cart", &[]);
    assert_eq!(
        t.quals(1000),
        vec![("u".into(), 280)],
        "a later window is independent"
    );
}

#[test]
fn earliest_window_qualifies_before_a_later_inaction() {
    let mut t = T::new(PAIR);
    t.ev("u", 100, "Added To Cart", &[]);
    t.ev("u", 110, "Added To Cart", &[]);
    t.ev("u", 135, "Charged", &[]);
    assert_eq!(t.quals(1000), vec![("u".into(), 130)]);
}

#[test]
fn records_apply_before_timers_at_equal_ts() {
    let mut t = T::new(&format!(
        "{PAIR}[campaign.who]\nwhere = [{{ prop = \"country\", op = \"=\", value = \"DE\" }}]\n"
    ));
    t.ev("u", 100, "Added To Cart", &[]);
    t.profile("u", 130, &[("country", s("DE"))]);
    assert_eq!(t.quals(1000), vec![("u".into(), 130)]);
}

#[test]
fn who_is_evaluated_on_the_profile_as_of_at() {
    let who = "[campaign.who]\nwhere = [{ prop = \"country\", op = \"=\", value = \"DE\" }]\n";
    let mut t = T::new(&format!("{PAIR}{who}"));
    // Profile set before `at` and changed after it: only the value as of `at` counts, even
    // though the later update arrives before the window's timer fires.
    t.profile("before", 50, &[("country", s("DE"))]);
    t.ev("before", 100, "Added To Cart", &[]);
    t.profile("before", 131, &[("country", s("FR"))]);
    t.profile("after", 50, &[("country", s("FR"))]);
    t.ev("after", 100, "Added To Cart", &[]);
    t.profile("after", 131, &[("country", s("DE"))]);
    assert_eq!(t.quals(1000), vec![("before".into(), 130)]);
}

#[test]
fn who_failure_gives_no_decision_and_a_later_window_may_qualify() {
    let who = "[campaign.who]\nwhere = [{ prop = \"age\", op = \">\", value = 20 }]\n";
    let mut t = T::new(&format!("{PAIR}{who}"));
    t.profile("u", 0, &[("age", Value::Num(18.0))]);
    t.ev("u", 100, "Added To Cart", &[]);
    assert!(t.quals(500).is_empty());
    t.profile("u", 600, &[("age", Value::Num(21.0))]);
    t.ev("u", 700, "Added To Cart", &[]);
    assert_eq!(t.quals(1000), vec![("u".into(), 730)]);
}

#[test]
fn profile_null_removes_a_property() {
    let who = "[campaign.who]\nwhere = [{ prop = \"city\", op = \"not_exists\" }]\n";
    let mut t = T::new(&format!("{LIVE}{who}"));
    t.profile("u", 0, &[("city", s("Berlin"))]);
    t.ev("u", 10, "Added To Cart", &[("price", Value::Num(20.0))]);
    t.profile("u", 20, &[("city", Value::Null)]);
    t.ev("u", 30, "Added To Cart", &[("price", Value::Num(20.0))]);
    assert_eq!(t.quals(1000), vec![("u".into(), 30)]);
}

#[test]
fn once_per_user() {
    let mut t = T::new(LIVE);
    for ts in [10, 20, 30] {
        t.ev("u", ts, "Added To Cart", &[("price", Value::Num(20.0))]);
    }
    assert_eq!(t.quals(1000), vec![("u".into(), 10)]);
}

#[test]
fn identifiers_as_of_at_and_has_email() {
    let who = "[campaign.who]\nwhere = [{ prop = \"has_email\", op = \"=\", value = true }]\n";
    let mut t = T::new(&format!("{LIVE}{who}"));
    t.profile("u", 0, &[("email", s(" U@X.io "))]);
    t.ev("u", 10, "Added To Cart", &[("price", Value::Num(20.0))]);
    t.ev("v", 10, "Added To Cart", &[("price", Value::Num(20.0))]);
    let out = t.advance(1000);
    assert_eq!(out.qualifications.len(), 1);
    assert_eq!(out.qualifications[0].ids.email, hash_email("u@x.io"));
    assert_eq!(out.qualifications[0].ids.phone, None);
}

#[test]
fn goal_counts_strictly_after_at_and_up_to_the_window() {
    let goal = "[campaign.goal]\nevent = \"Charged\"\nwithin = \"100ms\"\n";
    let mut t = T::new(&format!("{LIVE}{goal}"));
    let buy = [("price", Value::Num(20.0))];
    for u in ["same-ts", "in", "edge", "after"] {
        t.ev(u, 10, "Added To Cart", &buy);
    }
    t.ev("same-ts", 10, "Charged", &[]);
    t.ev("in", 50, "Charged", &[]);
    t.ev("in", 60, "Charged", &[]);
    t.ev("edge", 110, "Charged", &[]);
    t.ev("after", 111, "Charged", &[]);
    let out = t.advance(1000);
    assert_eq!(out.qualifications.len(), 4);
    let conv: Vec<_> = out
        .conversions
        .iter()
        .map(|c| (c.user.as_str(), c.ts))
        .collect();
    assert_eq!(conv, vec![("in", 50), ("edge", 110)], "once per user");
}

/// `goal.where` skips goal events that fail it (a later one still converts), and
/// `goal.revenue_prop` is the converting event's number (0 when missing or not a number).
#[test]
fn goal_where_filters_goal_events_and_revenue_is_the_converting_events() {
    let goal = "[campaign.goal]\nevent = \"Charged\"\nwithin = \"100ms\"\n\
                where = [{ prop = \"currency\", op = \"=\", value = \"USD\" }]\n\
                revenue_prop = \"amount\"\n";
    let mut t = T::new(&format!("{LIVE}{goal}"));
    let buy = [("price", Value::Num(20.0))];
    for u in ["eur-then-usd", "eur-only", "text-amount"] {
        t.ev(u, 10, "Added To Cart", &buy);
    }
    let charged = |cur: &str, amount: Value| [("currency", s(cur)), ("amount", amount)];
    t.ev(
        "eur-then-usd",
        20,
        "Charged",
        &charged("EUR", Value::Num(5.0)),
    );
    t.ev(
        "eur-then-usd",
        30,
        "Charged",
        &charged("USD", Value::Num(7.5)),
    );
    t.ev("eur-only", 20, "Charged", &charged("EUR", Value::Num(5.0)));
    t.ev("text-amount", 20, "Charged", &charged("USD", s("12")));
    let out = t.advance(1000);
    let conv: Vec<_> = (out.conversions.iter())
        .map(|c| (c.user.as_str(), c.ts, c.revenue))
        .collect();
    assert_eq!(
        conv,
        vec![("text-amount", 20, 0.0), ("eur-then-usd", 30, 7.5)],
        "in time order"
    );
}

#[test]
fn records_of_one_user_at_equal_ts_keep_stream_order() {
    let who = "[campaign.who]\nwhere = [{ prop = \"city\", op = \"=\", value = \"B\" }]\n";
    let mut t = T::new(&format!("{LIVE}{who}"));
    t.profile("u", 10, &[("city", s("A"))]);
    t.profile("u", 10, &[("city", s("B"))]);
    t.ev("u", 10, "Added To Cart", &[("price", Value::Num(20.0))]);
    t.profile("v", 10, &[("city", s("B"))]);
    t.profile("v", 10, &[("city", s("A"))]);
    t.ev("v", 10, "Added To Cart", &[("price", Value::Num(20.0))]);
    assert_eq!(t.quals(1000), vec![("u".into(), 10)]);
}

#[test]
fn pending_counts_open_windows_without_decision() {
    let mut t = T::new(PAIR);
    t.ev("open", 100, "Added To Cart", &[]);
    t.ev("closed", 100, "Added To Cart", &[]);
    t.ev("closed", 110, "Charged", &[]);
    t.advance(120);
    assert_eq!(t.shard.pending(), vec![1]);
    t.advance(130);
    assert_eq!(t.shard.pending(), vec![0]);
    assert!(t
        .shard
        .user("closed")
        .is_some_and(|u| u.campaign(0).is_none()));
}

/// Layout budget: every tracked user has a `UserState`, every buffered record a `Record`.
/// (80: 72 before behaviour rules' buckets and devices, one thin pointer, `None` for most
/// users; the profile device's key took the 8 bytes a boxed campaign slice saved. A record:
/// 128, 120 before the erasure flag — records are buffered only within the lateness window.)
#[test]
fn per_user_and_per_record_sizes_stay_within_budget() {
    assert!(std::mem::size_of::<super::UserState>() <= 80);
    assert!(std::mem::size_of::<Record>() <= 128);
    assert!(std::mem::size_of::<Value>() <= 24);
}

#[test]
fn profile_numbers_round_trip_exactly_in_eight_bytes() {
    assert_eq!(std::mem::size_of::<Prop>(), 8);
    let mut strings = Interner::default();
    let values = [
        0.0,
        -0.0,
        25.0,
        0.1,
        -3.75,
        1e300,
        f64::MAX,
        f64::MIN_POSITIVE,
        123_456_789.123,
        16_777_217.0,
    ];
    for n in values {
        let p = Prop::new(7, &Value::Num(n), &mut strings).expect("a number is kept");
        match p.get(&strings) {
            ValueRef::Num(m) => assert_eq!(m.to_bits(), n.to_bits(), "{n} came back as {m}"),
            other => panic!("{n} came back as {other:?}"),
        }
    }
    // Inexact ones are interned once per value.
    let a = Prop::new(1, &Value::Num(0.1), &mut strings).unwrap();
    let b = Prop::new(1, &Value::Num(0.1), &mut strings).unwrap();
    assert_eq!(a, b);
}

/// A window timer that comes earlier than one already queued (a restored user's, whose
/// snapshot is ahead of the restored watermark) still fires at its deadline, in order.
#[test]
fn an_earlier_deadline_after_a_later_one_fires_in_order() {
    let mut t = T::new(PAIR);
    t.ev("a", 100, "Added To Cart", &[]);
    assert!(t.quals(110).is_empty());
    let snapshots = t.shard.snapshot();
    let mut restored = T::new(PAIR);
    restored.shard.restore(&snapshots, 50);
    restored.ev("b", 90, "Added To Cart", &[]);
    assert_eq!(restored.quals(125), vec![("b".into(), 120)]);
    assert_eq!(restored.quals(200), vec![("a".into(), 130)]);
}

/// CleverTap's `$incr`/`$decr` apply to the value the user has when the record is applied
/// (in event-time order), and `$delete` removes it: decoded from the upload API's own shapes
/// (developer.clevertap.com/docs/upload-user-profiles-api).
#[test]
fn clevertap_increments_apply_to_the_current_value_in_event_time_order() {
    use crate::event::{decode::Decoder, Format};
    let mut t = T::new(&format!(
        "{LIVE}[campaign.who]\nwhere = [{{ prop = \"Points\", op = \">=\", value = 15 }}]\n"
    ));
    let lines = [
        // Out of arrival order: the `$decr` at ts 3 is applied after the `$incr` at ts 2.
        r#"{"type":"profile","identity":"a","ts":1,"profileData":{"Points":10}}"#,
        r#"{"type":"profile","identity":"a","ts":3,"profileData":{"Points":{"$decr":2}}}"#,
        r#"{"type":"profile","identity":"a","ts":2,"profileData":{"Points":{"$incr":7.5}}}"#,
        // Never set: counts as 0.
        r#"{"type":"profile","identity":"b","ts":1,"profileData":{"Points":{"$incr":16}}}"#,
        r#"{"type":"profile","identity":"c","ts":1,"profileData":{"Points":20}}"#,
        r#"{"type":"profile","identity":"c","ts":2,"profileData":{"Points":{"$delete":1}}}"#,
    ];
    let recs: Vec<Record> = {
        let d = Decoder::new(Format::Clevertap, &t.cfg.schema);
        lines
            .iter()
            .map(|l| d.decode(l.as_bytes()).unwrap())
            .collect()
    };
    for r in recs {
        t.push(r);
    }
    // 10 + 7.5 − 2 = 15.5 for a, 16 for b; c has no Points any more.
    for u in ["a", "b", "c"] {
        t.ev(u, 4000, "Added To Cart", &[("price", Value::Num(10.0))]);
    }
    assert_eq!(
        t.quals(10_000),
        vec![("a".into(), 4000), ("b".into(), 4000)]
    );
}

/// "Unsubscribed email = No" matches users who never said either way (CleverTap's default:
/// subscribed until they opt out); `gender = "Female"` matches every format's spelling.
#[test]
fn unset_unsubscribe_flags_are_false_and_gender_is_one_vocabulary() {
    use crate::event::{decode::Decoder, Format};
    let who = "[campaign.who]\nwhere = [\
               { prop = \"email_unsubscribed\", op = \"=\", value = false }, \
               { prop = \"gender\", op = \"=\", value = \"Female\" }]\n";
    let mut t = T::new(&format!("{LIVE}{who}"));
    let lines = [
        // Never set the flag; each spells gender its own way.
        (
            Format::Native,
            r#"{"user_id":"a","type":"profile","ts":1,"props":{"gender":"female"}}"#,
        ),
        (
            Format::Native,
            r#"{"user_id":"b","type":"profile","ts":1,"props":{"gender":" F "}}"#,
        ),
        (
            Format::Segment,
            r#"{"type":"identify","userId":"c","timestamp":"1970-01-01T00:00:00.001Z","traits":{"gender":"Female"}}"#,
        ),
        (
            Format::Clevertap,
            r#"{"type":"profile","identity":"d","ts":0,"profileData":{"Gender":"F"}}"#,
        ),
        // Opted out, or another gender: no.
        (
            Format::Native,
            r#"{"user_id":"e","type":"profile","ts":1,"props":{"gender":"female","email_unsubscribed":true}}"#,
        ),
        (
            Format::Native,
            r#"{"user_id":"f","type":"profile","ts":1,"props":{"gender":"M"}}"#,
        ),
    ];
    let recs: Vec<Record> = lines
        .iter()
        .map(|(f, l)| {
            Decoder::new(*f, &t.cfg.schema)
                .decode(l.as_bytes())
                .unwrap()
        })
        .collect();
    for r in recs {
        t.push(r);
    }
    for u in ["a", "b", "c", "d", "e", "f"] {
        t.ev(u, 100, "Added To Cart", &[("price", Value::Num(10.0))]);
    }
    let got: Vec<String> = t.quals(1000).into_iter().map(|(u, _)| u).collect();
    assert_eq!(got, ["a", "b", "c", "d"]);
}

/// A live campaign filtered on past behaviour ("added to cart, and viewed a product at least
/// twice in the last 7 days"): the rule is evaluated at `at` on what the user did before, and
/// the buckets survive a snapshot round trip.
#[test]
fn live_campaigns_filter_on_past_behaviour_at_at() {
    use crate::campaign::condition::{Condition, Op, Operand, Scalar};
    use crate::detect::past::{Agg, PastRule, Range};
    const DAY: i64 = 86_400_000;
    let extra = "[campaign.trigger]\nevent = \"Added To Cart\"\n\
                 [campaign.who]\nwhere = [{ prop = \"x\", op = \"not_exists\" }]\n\
                 [campaign.goal]\nevent = \"Product Viewed\"\nwithin = \"1ms\"\n";
    let cfg = config(extra);
    let mut rules = Rules::compile(&cfg.campaigns, &cfg.schema);
    let viewed = cfg.schema.event("Product Viewed").unwrap();
    rules.add_past(
        0,
        PastRule {
            key: "c#0".into(),
            negated: false,
            event: viewed,
            conditions: Vec::new(),
            agg: Some((
                Agg::Count,
                None,
                Condition {
                    prop: 0,
                    op: Op::Ge,
                    operand: Operand::One(Scalar::Num(2.0)),
                },
            )),
            range: Range::Last(7),
            tz: jiff::tz::TimeZone::UTC.into(),
        },
    );
    let rules = Arc::new(rules);
    let mut t = T {
        shard: Shard::new(rules.clone()),
        cfg,
        seq: 0,
    };
    // Before the campaign's end (1970-01-02); the earlier days are before the epoch.
    let t0 = DAY / 2;
    t.profile("a", 0, &[("email", s("a@x.io"))])
        .profile("b", 0, &[("email", s("b@x.io"))])
        .profile("c", 0, &[("email", s("c@x.io"))]);
    // a: two views in the week; b: one; c: two, but one 8 days back.
    t.ev("a", t0 - 3 * DAY, "Product Viewed", &[])
        .ev("a", t0 - DAY, "Product Viewed", &[])
        .ev("b", t0 - DAY, "Product Viewed", &[])
        .ev("c", t0 - 8 * DAY, "Product Viewed", &[])
        .ev("c", t0 - DAY, "Product Viewed", &[]);
    t.advance(t0 - 1);
    let snaps = t.shard.snapshot();
    for u in ["a", "b", "c"] {
        t.ev(u, t0, "Added To Cart", &[]);
    }
    assert_eq!(t.quals(t0 + 10), vec![("a".into(), t0)]);

    // Restored from snapshots, the same.
    let mut restored = Shard::new(rules);
    restored.restore(&snaps, t0 - 1);
    t.shard = restored;
    for u in ["a", "b", "c"] {
        t.ev(u, t0, "Added To Cart", &[]);
    }
    assert_eq!(t.quals(t0 + 10), vec![("a".into(), t0)]);
}

/// A scheduled run at `R` fires when the watermark reaches it, after every record with
/// `ts ≤ R` and before later ones, and evaluates every user the shard knows: here "viewed a
/// product and did not buy in the last 7 days", daily at 00:00 UTC.
#[test]
fn scheduled_runs_evaluate_every_known_user_at_the_run_time() {
    use crate::campaign::schedule::{Kind, Repeat, Schedule, Unit};
    use crate::detect::past::{PastRule, Range};
    const DAY: i64 = 86_400_000;
    // (The trigger and goal only intern the events' names here; the config gives a scheduled
    // campaign neither.)
    let extra = "[campaign.trigger]\nevent = \"Charged\"\n\
                 [campaign.goal]\nevent = \"Product Viewed\"\nwithin = \"1ms\"\n";
    let cfg = config(extra);
    let mut rules = Rules::compile(&cfg.campaigns, &cfg.schema);
    let event = |name| cfg.schema.event(name).unwrap();
    let rule = |negated, name| PastRule {
        key: format!("c#{negated}"),
        negated,
        event: event(name),
        conditions: Vec::new(),
        agg: None,
        range: Range::Last(7),
        tz: jiff::tz::TimeZone::UTC.into(),
    };
    rules.add_past(0, rule(false, "Product Viewed"));
    rules.add_past(0, rule(true, "Charged"));
    rules.rules[0].schedule = Some(Schedule {
        tz: jiff::tz::TimeZone::UTC,
        kind: Kind::Repeat(Repeat {
            every: 1,
            unit: Unit::Day,
            time: jiff::civil::Time::midnight(),
            weekdays: Vec::new(),
            day: None,
        }),
        until: None,
        runs: None,
    });
    let mut t = T {
        shard: Shard::new(Arc::new(rules)),
        cfg,
        seq: 0,
    };
    // The campaign runs from 1970-01-01 to 1970-01-02: one run, at 00:00 of the 1st.
    let r0 = 0;
    t.profile("a", -3 * DAY, &[("email", s("a@x.io"))])
        .profile("b", -3 * DAY, &[("email", s("b@x.io"))])
        .profile("c", -3 * DAY, &[("email", s("c@x.io"))])
        .profile("d", -3 * DAY, &[("email", s("d@x.io"))]);
    t.ev("a", -2 * DAY, "Product Viewed", &[])
        .ev("b", -2 * DAY, "Product Viewed", &[])
        .ev("b", -DAY, "Charged", &[])
        // At the run's instant: counts.
        .ev("c", r0, "Product Viewed", &[])
        // After it: does not.
        .ev("d", r0 + 1, "Product Viewed", &[]);
    assert!(
        t.quals(r0 - 1).is_empty(),
        "not before the watermark reaches the run"
    );
    let out = t.advance(DAY);
    let mut got: Vec<_> = out
        .qualifications
        .iter()
        .map(|q| (q.user.to_string(), q.at))
        .collect();
    got.sort();
    assert_eq!(got, vec![("a".into(), r0), ("c".into(), r0)]);
    assert_eq!(out.runs, vec![(0, r0)], "one run in [start, end)");
}

/// `trigger.inaction.where`: only an inaction event that satisfies it closes a window.
#[test]
fn only_an_inaction_event_matching_its_where_closes_windows() {
    let mut t = T::new(
        "[campaign.trigger]\nevent = \"Added To Cart\"\n\
         [campaign.trigger.inaction]\nevent = \"Charged\"\nwithin = \"30ms\"\n\
         where = [{ prop = \"amount\", op = \">\", value = 0 }]\n",
    );
    t.ev("a", 100, "Added To Cart", &[])
        .ev("a", 110, "Charged", &[("amount", Value::Num(0.0))]);
    t.ev("b", 100, "Added To Cart", &[])
        .ev("b", 110, "Charged", &[("amount", Value::Num(5.0))]);
    t.ev("c", 100, "Added To Cart", &[])
        .ev("c", 110, "Charged", &[]);
    // a's and c's purchases do not count (zero, or no amount): their windows fire.
    assert_eq!(t.quals(1000), vec![("a".into(), 130), ("c".into(), 130)]);
}

/// `trigger.inaction.match = ["sku"]`: a purchase closes only the cart windows of the same
/// sku (a sku missing on both sides matches, on one side does not); windows survive a
/// snapshot with their keys.
#[test]
fn a_matched_inaction_closes_only_the_windows_of_its_values() {
    let mut t = T::new(
        "[campaign.trigger]\nevent = \"Added To Cart\"\n\
         [campaign.trigger.inaction]\nevent = \"Charged\"\nwithin = \"30ms\"\nmatch = [\"sku\"]\n",
    );
    t.ev("a", 100, "Added To Cart", &[("sku", s("p1"))])
        .ev("a", 101, "Added To Cart", &[("sku", s("p2"))])
        .ev("a", 110, "Charged", &[("sku", s("p1"))]);
    t.ev("b", 100, "Added To Cart", &[])
        .ev("b", 110, "Charged", &[]);
    t.ev("c", 100, "Added To Cart", &[])
        .ev("c", 110, "Charged", &[("sku", s("p1"))]);
    // Two triggers at one instant with different skus are two windows.
    t.ev("d", 100, "Added To Cart", &[("sku", s("p1"))])
        .ev("d", 100, "Added To Cart", &[("sku", s("p2"))])
        .ev("d", 120, "Charged", &[("sku", s("p2"))]);
    t.advance(112);
    let snaps = t.shard.snapshot();
    let mut restored = Shard::new(Arc::new(Rules::compile(&t.cfg.campaigns, &t.cfg.schema)));
    restored.restore(&snaps, 112);
    t.shard = restored;
    let mut got = t.quals(1000);
    got.sort();
    // a: p2's window (tA 101); c: a sku on one side only; d: p1's window.
    assert_eq!(
        got,
        vec![("a".into(), 131), ("c".into(), 130), ("d".into(), 130)]
    );
}

/// Two runs (1970-01-02 and -03) of "viewed a product in the last 7 days", a goal of
/// `Charged` within a day; `extra` goes at the top of the campaign.
fn per_run_config(extra: &str) -> String {
    format!(
        r#"
[[campaign]]
id = "c"
name = "C"
ad_account = "1"
start = "1970-01-01T00:00:00Z"
end = "1970-01-10T00:00:00Z"
{extra}
[campaign.schedule]
at = ["1970-01-02T00:00:00Z", "1970-01-03T00:00:00Z"]
[campaign.who]
past = [{{ did = "Product Viewed", in_last = "7d" }}]
[campaign.what]
audience = {{ existing = "9" }}
identifiers = ["email"]
[campaign.goal]
event = "Charged"
within = "1d"
"#
    )
}

/// A scheduled campaign decides once per user (a user qualified at one run is not qualified
/// again at the next), and its goal is measured from the run that qualified the user; with
/// `once_per_user = false`, a decision at every run, each waiting for the goal anew.
#[test]
fn scheduled_runs_qualify_once_and_measure_the_goal_from_the_run() {
    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;
    // `(user, at)` of the qualifications, `(user, ts)` of the conversions, and the runs.
    type Got = (
        Vec<(String, i64)>,
        Vec<(String, i64)>,
        Vec<(CampaignIdx, i64)>,
    );
    let scenario = |extra: &str| -> Got {
        let cfg = Config::parse(&per_run_config(extra), Vec::new()).expect("valid test config");
        let rules = Arc::new(Rules::compile(&cfg.campaigns, &cfg.schema));
        let mut t = T {
            shard: Shard::new(rules),
            cfg,
            seq: 0,
        };
        for u in ["a", "b", "c"] {
            t.profile(u, 0, &[("email", s(&format!("{u}@x.io")))]);
        }
        // a and b viewed before the first run; c only between the runs.
        t.ev("a", HOUR, "Product Viewed", &[])
            .ev("b", HOUR, "Product Viewed", &[])
            .ev("c", DAY + HOUR, "Product Viewed", &[])
            // a buys within a day of the first run, b within a day of the second.
            .ev("a", DAY + 2 * HOUR, "Charged", &[])
            .ev("b", 2 * DAY + 2 * HOUR, "Charged", &[]);
        let out = t.advance(5 * DAY);
        let pairs = |v: Vec<(String, i64)>| {
            let mut v = v;
            v.sort();
            v
        };
        let quals = out.qualifications.iter();
        let convs = out.conversions.iter();
        (
            pairs(quals.map(|q| (q.user.to_string(), q.at)).collect()),
            pairs(convs.map(|c| (c.user.to_string(), c.ts)).collect()),
            out.runs,
        )
    };
    let (quals, convs, runs) = scenario("");
    assert_eq!(
        quals,
        vec![("a".into(), DAY), ("b".into(), DAY), ("c".into(), 2 * DAY)],
        "a and b once, at the first run; c at the second"
    );
    assert_eq!(convs, vec![("a".into(), DAY + 2 * HOUR)]);
    assert_eq!(runs, vec![(0, DAY), (0, 2 * DAY)]);

    let (quals, convs, _) = scenario("once_per_user = false");
    let want: Vec<(String, i64)> = vec![
        ("a".into(), DAY),
        ("a".into(), 2 * DAY),
        ("b".into(), DAY),
        ("b".into(), 2 * DAY),
        ("c".into(), 2 * DAY),
    ];
    assert_eq!(quals, want, "every run that finds them");
    assert_eq!(
        convs,
        vec![
            ("a".into(), DAY + 2 * HOUR),
            ("b".into(), 2 * DAY + 2 * HOUR)
        ],
        "a converts run 1's decision, b run 2's"
    );
}

/// DESIGN.md §3a devices: app-field conditions hold on one device together, the other
/// conditions on the profile; a record naming no device updates the default device; a user
/// with no device has one empty device; beyond 8 devices the least recently seen goes; all
/// of it survives a snapshot round trip.
#[test]
fn app_field_conditions_hold_on_one_device_together() {
    let who = |conds: &str| {
        format!("{LIVE}[campaign.who]\nwhere = [{conds}, {{ prop = \"age\", op = \">\", value = 20 }}]\n")
    };
    let apple_new = "{ prop = \"device_make\", op = \"=\", value = \"Apple\" }, \
                     { prop = \"app_version\", op = \">=\", value = \"5.10\" }";
    let mut t = T::new(&who(apple_new));
    let age = ("age", Value::Num(30.0));
    // a: an old iPhone and a new Samsung: no one device is both.
    t.profile("a", 0, &[("email", s("a@x.io")), age.clone()])
        .profile_on(
            "a",
            1,
            Some("ios-1"),
            &[("device_make", s("Apple")), ("app_version", s("5.2"))],
        )
        .profile_on(
            "a",
            2,
            Some("and-1"),
            &[("device_make", s("Samsung")), ("app_version", s("5.12"))],
        );
    // b: the same, then the iPhone's app is upgraded.
    t.profile("b", 0, &[("email", s("b@x.io")), age.clone()])
        .profile_on(
            "b",
            1,
            Some("ios-1"),
            &[("device_make", s("Apple")), ("app_version", s("5.2"))],
        )
        .profile_on(
            "b",
            2,
            Some("and-1"),
            &[("device_make", s("Samsung")), ("app_version", s("5.12"))],
        )
        .profile_on("b", 3, Some("ios-1"), &[("app_version", s("5.10.1"))]);
    // c: no device id in its records: the profile's app fields are its one device.
    t.profile("c", 0, &[("email", s("c@x.io")), age.clone()])
        .profile(
            "c",
            1,
            &[("device_make", s("Apple")), ("app_version", s("6.0"))],
        );
    // d: the default device (an old iPhone), and a named new one that is not an Apple.
    t.profile("d", 0, &[("email", s("d@x.io")), age.clone()])
        .profile(
            "d",
            1,
            &[("device_make", s("Apple")), ("app_version", s("5.0"))],
        )
        .profile_on(
            "d",
            2,
            Some("and-1"),
            &[("device_make", s("Samsung")), ("app_version", s("6.0"))],
        );
    let snaps_at = 10;
    t.advance(snaps_at);
    let snaps = t.shard.snapshot();
    for u in ["a", "b", "c", "d"] {
        t.ev(u, 100, "Added To Cart", &[("price", Value::Num(10.0))]);
    }
    let got: Vec<String> = t.quals(1000).into_iter().map(|(u, _)| u).collect();
    assert_eq!(got, ["b", "c"]);
    // The same after a restore.
    let mut restored = Shard::new(Arc::new(Rules::compile(&t.cfg.campaigns, &t.cfg.schema)));
    restored.restore(&snaps, snaps_at);
    t.shard = restored;
    for u in ["a", "b", "c", "d"] {
        t.ev(u, 100, "Added To Cart", &[("price", Value::Num(10.0))]);
    }
    let got: Vec<String> = t.quals(1000).into_iter().map(|(u, _)| u).collect();
    assert_eq!(got, ["b", "c"], "restored");

    // No device at all: one empty device, where only `not_exists` holds.
    let mut t = T::new(&who("{ prop = \"app_version\", op = \"not_exists\" }"));
    t.profile("e", 0, &[("email", s("e@x.io")), age.clone()]);
    t.profile("f", 0, &[("email", s("f@x.io")), age.clone()])
        .profile_on("f", 1, Some("ios-1"), &[("app_version", s("1.0"))]);
    t.ev("e", 100, "Added To Cart", &[("price", Value::Num(10.0))])
        .ev("f", 100, "Added To Cart", &[("price", Value::Num(10.0))]);
    let got: Vec<String> = t.quals(1000).into_iter().map(|(u, _)| u).collect();
    assert_eq!(got, ["e"]);
}

#[test]
fn beyond_eight_devices_the_least_recently_seen_is_dropped() {
    let who = |v: &str| {
        format!("{LIVE}[campaign.who]\nwhere = [{{ prop = \"app_version\", op = \"=\", value = \"{v}\" }}]\n")
    };
    for (version, kept) in [("1.0", false), ("2.0", true), ("9.0", true), ("0.1", false)] {
        let mut t = T::new(&who(version));
        // The default device first (0.1), then nine named ones, 1.0 to 9.0: the 9th named one
        // drops the default (not seen since named devices came), the 10th drops 1.0's.
        t.profile("a", 0, &[("email", s("a@x.io")), ("app_version", s("0.1"))]);
        for n in 1..=9 {
            let id = format!("dev-{n}");
            t.profile_on("a", n, Some(&id), &[("app_version", s(&format!("{n}.0")))]);
        }
        t.profile_on("a", 20, Some("dev-2"), &[("os_version", s("17"))]);
        t.ev("a", 100, "Added To Cart", &[("price", Value::Num(10.0))]);
        assert_eq!(!t.quals(1000).is_empty(), kept, "app_version {version}");
    }
}

/// `sync = "mirror"`: each run qualifies who qualifies, and tells who qualified at the
/// previous run and no longer does (`leaves`); activate turns that into `removed`.
#[test]
fn mirror_runs_tell_who_no_longer_qualifies() {
    const DAY: i64 = 86_400_000;
    let text = per_run_config("")
        .replace(
            "{ did = \"Product Viewed\", in_last = \"7d\" }",
            "{ did_not = \"Charged\", in_last = \"7d\" }",
        )
        .replace(
            "identifiers = [\"email\"]",
            "identifiers = [\"email\"]\nsync = \"mirror\"",
        );
    let cfg = Config::parse(&text, Vec::new()).unwrap();
    let rules = Arc::new(Rules::compile(&cfg.campaigns, &cfg.schema));
    let mut t = T {
        shard: Shard::new(rules),
        cfg,
        seq: 0,
    };
    for u in ["a", "b"] {
        t.profile(u, 0, &[("email", s(&format!("{u}@x.io")))]);
    }
    // b buys between the two runs.
    t.ev("b", DAY + 1, "Charged", &[]);
    let out = t.advance(5 * DAY);
    let got: Vec<_> = out
        .qualifications
        .iter()
        .map(|q| (q.user.to_string(), q.at, q.leaves))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a".into(), DAY, false),
            ("b".into(), DAY, false),
            ("a".into(), 2 * DAY, false),
            ("b".into(), 2 * DAY, true),
        ]
    );
}
