//! Contract tests for the TikTok API simulator: real HTTP over 127.0.0.1, one test per rule
//! and per error code of shared/tiktok-api.md §1–§8 and §11.
//!
//! Time-dependent rules (QPS windows, not-ready window, latency) run with paused tokio time:
//! neither the server nor the client (pool idle timer disabled) has timers of its own, so the
//! clock only moves when a test advances it or a simulated latency sleeps.

use std::time::Duration;

use clap::Parser;
use remarket::tiktok_sim::{
    parse_audience, parse_token, AudienceSeed, IdType, Member, SimArgs, SimError, SimHandle,
    Simulator,
};
use serde_json::{json, Value};

const TOKEN: &str = "tok-a-secret";
const TOKEN_B: &str = "tok-b-secret";
const ADV: &str = "7000000001";
const ADV2: &str = "7000000002";
const OTHER: &str = "7000000009";
const AUDIENCE: &str = "/open_api/v1.3/segment/audience/";
const MAPPING: &str = "/open_api/v1.3/segment/mapping/";
const GET: &str = "/open_api/v1.3/dmp/custom_audience/get/";
const LIST: &str = "/open_api/v1.3/dmp/custom_audience/list/";

fn args() -> SimArgs {
    SimArgs {
        tokens: vec![
            (TOKEN.into(), vec![ADV.into(), ADV2.into()]),
            (TOKEN_B.into(), vec![OTHER.into()]),
        ],
        ..SimArgs::default()
    }
}

struct Api {
    base: String,
    http: reqwest::Client,
    sim: Simulator,
    handle: SimHandle,
}

async fn start(args: SimArgs) -> Api {
    let sim = Simulator::new(&args).expect("valid args");
    let (base, handle) = sim.clone().spawn().await.expect("spawn");
    let http = reqwest::Client::builder()
        .pool_idle_timeout(None)
        .build()
        .unwrap();
    Api {
        base,
        http,
        sim,
        handle,
    }
}

/// A 64-char lowercase hex id (SHA-256 shaped); `md5` gives 32 chars.
fn sha(n: u64) -> String {
    format!("{n:064x}")
}
fn md5(n: u64) -> String {
    format!("{n:032x}")
}

/// Rows of single EMAIL_SHA256 ids mapped to `audience`.
fn email_rows(ids: &[String], audience: &str) -> Value {
    ids.iter()
        .map(|id| json!([{"id": id, "audience_ids": [audience]}]))
        .collect()
}

impl Api {
    async fn post_as(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(t) = token {
            req = req.header("Access-Token", t);
        }
        let resp = req.send().await.expect("response");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.post_as(path, Some(TOKEN), &body).await;
        assert_eq!(status, 200, "{v}");
        v
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("Access-Token", TOKEN)
            .query(query)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    async fn create(&self, advertiser: &str, name: &str) -> String {
        let v = self
            .post(
                AUDIENCE,
                json!({"advertiser_id": advertiser, "action": "create",
                "custom_audience_name": name}),
            )
            .await;
        assert_eq!(v["code"], 0, "{v}");
        assert_eq!(v["message"], "OK");
        v["data"]["audience_id"]
            .as_str()
            .expect("string id")
            .to_owned()
    }

    async fn map(&self, action: &str, advertisers: &[&str], schema: &[&str], rows: Value) -> Value {
        self.post(
            MAPPING,
            json!({"advertiser_ids": advertisers, "action": action,
            "id_schema": schema, "batch_data": rows}),
        )
        .await
    }

    async fn map_emails(&self, action: &str, audience: &str, ids: &[String]) -> Value {
        self.map(action, &[ADV], &["EMAIL_SHA256"], email_rows(ids, audience))
            .await
    }

    async fn sim_get(&self, path: &str) -> Value {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    fn emails(&self, audience: &str) -> Vec<String> {
        let members = self.sim.members(audience).expect("audience exists");
        members.into_iter().map(|m| m.id).collect()
    }
}

fn code(v: &Value) -> i64 {
    v["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("no code in {v}"))
}

// === auth, envelope, paths ===

#[tokio::test]
async fn missing_access_token_is_40104() {
    let api = start(args()).await;
    let body = json!({"advertiser_id": ADV, "custom_audience_name": "x"});
    let (status, v) = api.post_as(AUDIENCE, None, &body).await;
    assert_eq!((status, code(&v)), (200, 40104));
    assert!(v["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(v["message"].as_str().unwrap().contains("Access-Token"));
    assert!(api.sim.audiences().is_empty());
}

#[tokio::test]
async fn unknown_access_token_is_40105() {
    let api = start(args()).await;
    let body = json!({"advertiser_id": ADV, "custom_audience_name": "x"});
    let (status, v) = api.post_as(AUDIENCE, Some("nope"), &body).await;
    assert_eq!((status, code(&v)), (200, 40105));
    assert!(api.sim.audiences().is_empty());
}

#[tokio::test]
async fn token_not_linked_to_the_advertiser_is_40001() {
    let api = start(args()).await;
    let own = api.create(ADV, "mine").await;
    let v = api
        .post(
            AUDIENCE,
            json!({"advertiser_id": OTHER, "custom_audience_name": "x"}),
        )
        .await;
    assert_eq!(code(&v), 40001);
    let rows = email_rows(&[sha(1)], &own);
    assert_eq!(
        code(&api.map("add", &[ADV, OTHER], &["EMAIL_SHA256"], rows).await),
        40001
    );
    let v = api.get(LIST, &[("advertiser_id", OTHER)]).await;
    assert_eq!(code(&v), 40001);
    // TOKEN_B may act for OTHER.
    let body = json!({"advertiser_id": OTHER, "custom_audience_name": "theirs"});
    let (_, v) = api.post_as(AUDIENCE, Some(TOKEN_B), &body).await;
    assert_eq!(code(&v), 0);
    assert_eq!(api.sim.audiences().len(), 2);
}

#[tokio::test]
async fn paths_without_trailing_slash_or_unknown_are_http_404() {
    let api = start(args()).await;
    let body = json!({"advertiser_id": ADV, "custom_audience_name": "x"});
    for path in [
        "/open_api/v1.3/segment/audience",
        "/open_api/v1.3/segment/nothing/",
    ] {
        let resp = api
            .http
            .post(format!("{}{path}", api.base))
            .header("Access-Token", TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        assert!(resp.json::<Value>().await.is_err(), "404 body is not JSON");
    }
    assert!(api.sim.audiences().is_empty());
    let log = api.sim.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].path, "/open_api/v1.3/segment/audience");
    assert_eq!(log[0].http_status, Some(404));
}

// === /segment/audience/ ===

#[tokio::test]
async fn create_returns_a_digit_id_of_a_fresh_partner_audience() {
    let api = start(args()).await;
    let id = api.create(ADV, "Cart abandoners").await;
    assert!(id.bytes().all(|b| b.is_ascii_digit()), "{id}");
    let infos = api.sim.audiences();
    assert_eq!(infos.len(), 1);
    assert_eq!(
        (
            infos[0].advertiser_id.as_str(),
            infos[0].audience_id.as_str()
        ),
        (ADV, id.as_str())
    );
    assert_eq!(
        (infos[0].name.as_str(), infos[0].audience_type.as_str()),
        ("Cart abandoners", "Partner")
    );
    assert_eq!(infos[0].member_count, 0);
    let ids = format!("[\"{id}\"]");
    let v = api
        .get(
            GET,
            &[("advertiser_id", ADV), ("custom_audience_ids", &ids)],
        )
        .await;
    let d = &v["data"]["list"][0]["audience_details"];
    assert_eq!(d["audience_id"], id.as_str());
    assert_eq!(d["type"], "Partner");
    assert_eq!(d["calculate_type"], "MULTIPLE_TYPES");
    assert_eq!(
        (d["is_valid"].clone(), d["cover_num"].clone()),
        (json!(false), json!(0))
    );
    // `action` defaults to create; the name is required.
    let v = api
        .post(
            AUDIENCE,
            json!({"advertiser_id": ADV, "custom_audience_name": "d"}),
        )
        .await;
    assert_eq!(code(&v), 0);
    assert_eq!(
        code(&api.post(AUDIENCE, json!({"advertiser_id": ADV})).await),
        40002
    );
    assert_eq!(api.sim.audiences().len(), 2);
}

#[tokio::test]
async fn names_over_70_chars_are_cut_to_67_plus_dots() {
    let api = start(args()).await;
    let seventy = "a".repeat(70);
    let long = format!("{}tail", "b".repeat(67));
    let kept = api.create(ADV, &seventy).await;
    let cut = api.create(ADV, &long).await;
    let name = |id: &str| {
        let infos = api.sim.audiences();
        infos
            .into_iter()
            .find(|a| a.audience_id == id)
            .unwrap()
            .name
    };
    assert_eq!(name(&kept), seventy);
    assert_eq!(name(&cut), format!("{}...", "b".repeat(67)));
}

#[tokio::test]
async fn duplicate_names_create_distinct_audiences() {
    let api = start(args()).await;
    let a = api.create(ADV, "same").await;
    let b = api.create(ADV, "same").await;
    assert_ne!(a, b);
    assert_eq!(
        api.sim
            .audiences()
            .iter()
            .filter(|x| x.name == "same")
            .count(),
        2
    );
}

#[tokio::test]
async fn delete_needs_delete_audience_id_of_an_owned_audience() {
    let api = start(args()).await;
    let id = api.create(ADV, "doomed").await;
    let v = api
        .post(AUDIENCE, json!({"advertiser_id": ADV, "action": "delete"}))
        .await;
    assert_eq!(code(&v), 40002);
    let v = api
        .post(
            AUDIENCE,
            json!({"advertiser_id": ADV2, "action": "delete", "delete_audience_id": id}),
        )
        .await;
    assert_eq!(code(&v), 40002, "owned by ADV, not ADV2");
    assert_eq!(api.sim.audiences().len(), 1);
    let v = api
        .post(
            AUDIENCE,
            json!({"advertiser_id": ADV, "action": "delete", "delete_audience_id": id}),
        )
        .await;
    assert_eq!(code(&v), 0);
    assert!(api.sim.audiences().is_empty());
    assert!(api.sim.members(&id).is_none());
}

// === /segment/mapping/ ===

#[tokio::test]
async fn mapping_add_is_idempotent_and_delete_removes() {
    let api = start(args()).await;
    let aud = api.create(ADV, "a").await;
    let ids = [sha(3), sha(1), sha(2)];
    assert_eq!(code(&api.map_emails("add", &aud, &ids).await), 0);
    assert_eq!(code(&api.map_emails("ADD", &aud, &ids[..1]).await), 0);
    assert_eq!(
        api.emails(&aud),
        vec![sha(1), sha(2), sha(3)],
        "set semantics, sorted"
    );
    assert_eq!(
        code(&api.map_emails("delete", &aud, &[sha(2), sha(9)]).await),
        0
    );
    assert_eq!(api.emails(&aud), vec![sha(1), sha(3)]);
    // `action` defaults to add.
    let v = api
        .post(
            MAPPING,
            json!({"advertiser_ids": [ADV], "id_schema": ["EMAIL_SHA256"],
            "batch_data": email_rows(&[sha(7)], &aud)}),
        )
        .await;
    assert_eq!(code(&v), 0);
    assert_eq!(api.sim.members(&aud).unwrap().len(), 3);
    assert_eq!(
        code(&api.map_emails("upsert", &aud, &[sha(8)]).await),
        40002
    );
}

#[tokio::test]
async fn rows_are_positional_with_placeholders_and_multi_audience_ids() {
    let api = start(args()).await;
    let a = api.create(ADV, "a").await;
    let b = api.create(ADV, "b").await;
    let schema = ["EMAIL_SHA256", "PHONE_SHA256", "aaid_md5"];
    let rows = json!([
        [{"id": sha(1), "audience_ids": [a]}, {}, {"id": md5(2), "audience_ids": [a, b]}],
        [{}, {"id": sha(3), "audience_ids": [b]}, {}],
    ]);
    assert_eq!(code(&api.map("add", &[ADV], &schema, rows).await), 0);
    let m = |t: IdType, id: String| Member { id_type: t, id };
    assert_eq!(
        api.sim.members(&a).unwrap(),
        vec![m(IdType::EmailSha256, sha(1)), m(IdType::AaidMd5, md5(2))]
    );
    assert_eq!(
        api.sim.members(&b).unwrap(),
        vec![m(IdType::PhoneSha256, sha(3)), m(IdType::AaidMd5, md5(2))]
    );
    for bad in [
        json!([[{"id": sha(4), "audience_ids": [a]}, {}]]),
        json!([[{}, {}, {}]]),
        json!([[{"id": sha(4)}, {}, {}]]),
        json!([[{"id": sha(4), "audience_ids": []}, {}, {}]]),
        json!([]),
    ] {
        let v = api.map("add", &[ADV], &schema, bad.clone()).await;
        assert_eq!(code(&v), 40002, "{bad}");
    }
    assert_eq!(api.sim.members(&a).unwrap().len(), 2);
}

#[tokio::test]
async fn id_schema_must_be_known_values_without_duplicates() {
    let api = start(args()).await;
    let aud = api.create(ADV, "a").await;
    let row = |n| json!([[{"id": sha(n), "audience_ids": [aud]}]]);
    for schema in [&["GAID_SHA256"][..], &["EMAIL"], &[]] {
        let v = api.map("add", &[ADV], schema, row(1)).await;
        assert_eq!(code(&v), 40002, "{schema:?}");
    }
    let v = api
        .map(
            "add",
            &[ADV],
            &["EMAIL_SHA256", "email_sha256"],
            json!([[{}, {"id": sha(1),
            "audience_ids": [aud]}]]),
        )
        .await;
    assert_eq!(code(&v), 40002, "duplicate type");
    assert_eq!(
        code(&api.map("add", &[ADV], &["idfa_sha256"], row(2)).await),
        0
    );
    assert_eq!(
        api.sim.members(&aud).unwrap()[0].id_type,
        IdType::IdfaSha256
    );
}

#[tokio::test]
async fn ids_must_be_lowercase_hex_of_the_hash_length() {
    let api = start(args()).await;
    let aud = api.create(ADV, "a").await;
    let cases = [
        ("EMAIL_SHA256", sha(0xabcdef).to_uppercase()),
        ("EMAIL_SHA256", sha(1)[1..].to_owned()),
        ("EMAIL_SHA256", "jane@example.com".to_owned()),
        ("EMAIL_SHA256", md5(1)),
        ("IDFA_MD5", sha(1)),
        ("PHONE_SHA256", format!("{}g", &sha(1)[1..])),
    ];
    for (schema, id) in cases {
        let rows = json!([[{"id": id, "audience_ids": [aud]}]]);
        let v = api.map("add", &[ADV], &[schema], rows).await;
        assert_eq!(code(&v), 40002, "{schema} {id}");
    }
    assert!(api.sim.members(&aud).unwrap().is_empty());
}

#[tokio::test]
async fn audiences_must_belong_to_the_request_advertisers() {
    let api = start(args()).await;
    let mine = api.create(ADV, "adv1").await;
    let other = api.create(ADV2, "adv2").await;
    let rows = email_rows(&[sha(1)], &other);
    let v = api
        .map("add", &[ADV], &["EMAIL_SHA256"], rows.clone())
        .await;
    assert_eq!(code(&v), 40002);
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("invalid audience ID"));
    let unknown = api.map_emails("add", "123", &[sha(1)]).await;
    assert_eq!(code(&unknown), 40002);
    // One bad row rejects the whole request: nothing is applied.
    let mixed = json!([[{"id": sha(5), "audience_ids": [mine]}], [{"id": sha(6),
        "audience_ids": [other]}]]);
    assert_eq!(
        code(
            &api.map("add", &[ADV], &["EMAIL_SHA256"], mixed.clone())
                .await
        ),
        40002
    );
    assert!(api.sim.members(&mine).unwrap().is_empty());
    // Listing both advertisers makes both audiences valid targets.
    assert_eq!(
        code(&api.map("add", &[ADV, ADV2], &["EMAIL_SHA256"], mixed).await),
        0
    );
    assert_eq!(
        (api.emails(&mine), api.emails(&other)),
        (vec![sha(5)], vec![sha(6)])
    );
}

#[tokio::test]
async fn more_than_10000_rows_is_40011() {
    let api = start(args()).await;
    let aud = api.create(ADV, "big").await;
    let ids: Vec<String> = (0..10_001).map(sha).collect();
    assert_eq!(code(&api.map_emails("add", &aud, &ids).await), 40011);
    assert!(api.sim.members(&aud).unwrap().is_empty());
    assert_eq!(code(&api.map_emails("add", &aud, &ids[..10_000]).await), 0);
    assert_eq!(api.sim.members(&aud).unwrap().len(), 10_000);
    assert_eq!(api.sim.requests().last().unwrap().rows, 10_000);
}

#[tokio::test]
async fn mapping_into_a_non_partner_audience_is_rejected() {
    let api = start(args()).await;
    let seed =
        json!({"advertiser_id": ADV, "name": "crm upload", "type": "Customer File Audience"});
    let resp = api
        .http
        .post(format!("{}/sim/audiences", api.base))
        .json(&seed)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let file_aud = resp.json::<Value>().await.unwrap()["audience_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let v = api.map_emails("add", &file_aud, &[sha(1)]).await;
    assert_eq!(code(&v), 40002);
    assert!(v["message"].as_str().unwrap().contains("not a Partner"));
    let v = api
        .post(
            AUDIENCE,
            json!({"advertiser_id": ADV, "action": "delete",
            "delete_audience_id": file_aud}),
        )
        .await;
    assert_eq!(code(&v), 40002);
    assert_eq!(api.sim.members(&file_aud), Some(vec![]));
}

#[tokio::test]
async fn pre_existing_audiences_accept_mappings() {
    let api = start(SimArgs {
        audiences: vec![(ADV.into(), "555000".into())],
        ..args()
    })
    .await;
    assert_eq!(code(&api.map_emails("add", "555000", &[sha(1)]).await), 0);
    assert_eq!(api.emails("555000"), vec![sha(1)]);
    let fresh = api.create(ADV, "x").await;
    assert_ne!(fresh, "555000");
}

// === get/ and list/ ===

#[tokio::test]
async fn get_takes_json_text_ids_and_reports_size_from_1000() {
    let api = start(args()).await;
    let aud = api.create(ADV, "sized").await;
    let ids: Vec<String> = (0..1_000).map(sha).collect();
    assert_eq!(code(&api.map_emails("add", &aud, &ids[..999]).await), 0);
    let q = format!("[\"{aud}\"]");
    let details = |v: &Value| v["data"]["list"][0]["audience_details"].clone();
    let v = api
        .get(GET, &[("advertiser_id", ADV), ("custom_audience_ids", &q)])
        .await;
    assert_eq!(details(&v)["cover_num"], 0, "under 1,000 reads as 0");
    assert_eq!(code(&api.map_emails("add", &aud, &ids).await), 0);
    let v = api
        .get(GET, &[("advertiser_id", ADV), ("custom_audience_ids", &q)])
        .await;
    assert_eq!(
        (
            details(&v)["cover_num"].clone(),
            details(&v)["is_valid"].clone()
        ),
        (json!(1000), json!(true))
    );
    let history = v["data"]["list"][0]["audience_history"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(history[0]["editor"], "open_api");
    assert_eq!(history.len(), 3, "create + two adds");
    for bad in [aud.clone(), "[]".to_owned(), format!("[\"{aud}\",\"42\"]")] {
        let v = api
            .get(
                GET,
                &[("advertiser_id", ADV), ("custom_audience_ids", &bad)],
            )
            .await;
        assert_eq!(code(&v), 40002, "{bad}");
    }
    let v = api
        .get(GET, &[("advertiser_id", ADV2), ("custom_audience_ids", &q)])
        .await;
    assert_eq!(code(&v), 40002, "not ADV2's audience");
}

#[tokio::test]
async fn list_pages_the_advertisers_audiences() {
    let api = start(args()).await;
    let mut mine = Vec::new();
    for i in 0..5 {
        mine.push(api.create(ADV, &format!("n{i}")).await);
    }
    api.create(ADV2, "someone else's").await;
    let v = api
        .get(
            LIST,
            &[("advertiser_id", ADV), ("page", "2"), ("page_size", "2")],
        )
        .await;
    assert_eq!(code(&v), 0);
    assert_eq!(
        v["data"]["page_info"],
        json!({"page": 2, "page_size": 2, "total_number": 5,
        "total_page": 3})
    );
    let got: Vec<&str> = v["data"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["audience_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [mine[2].as_str(), mine[3].as_str()]);
    assert_eq!(v["data"]["list"][0]["audience_type"], "Partner");
    let filter = format!("[\"{}\"]", mine[4]);
    let v = api
        .get(
            LIST,
            &[("advertiser_id", ADV), ("custom_audience_ids", &filter)],
        )
        .await;
    assert_eq!(v["data"]["page_info"]["total_number"], 1);
    let v = api
        .get(LIST, &[("advertiser_id", ADV), ("page_size", "101")])
        .await;
    assert_eq!(code(&v), 40002);
}

// === throttling (paused time) ===

#[tokio::test(start_paused = true)]
async fn app_qps_limit_is_40100_across_tokens_and_changes_nothing() {
    let api = start(SimArgs {
        qps: Some(3.0),
        ..args()
    })
    .await;
    let aud = api.create(ADV, "a").await;
    let (_, v) = api
        .post_as(
            AUDIENCE,
            Some(TOKEN_B),
            &json!({"advertiser_id": OTHER, "custom_audience_name": "b"}),
        )
        .await;
    assert_eq!(code(&v), 0);
    assert_eq!(code(&api.map_emails("add", &aud, &[sha(1)]).await), 0);
    let v = api.map_emails("add", &aud, &[sha(2)]).await;
    assert_eq!(
        (code(&v), v["message"].as_str().unwrap()),
        (40100, "Requests made too frequently")
    );
    assert_eq!(code(&api.get(LIST, &[("advertiser_id", ADV)]).await), 40100);
    assert_eq!(
        api.emails(&aud),
        vec![sha(1)],
        "throttled add changed nothing"
    );
    tokio::time::advance(Duration::from_millis(999)).await;
    assert_eq!(code(&api.map_emails("add", &aud, &[sha(2)]).await), 40100);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(code(&api.map_emails("add", &aud, &[sha(2)]).await), 0);
}

#[tokio::test(start_paused = true)]
async fn advertiser_qps_limit_is_40133_per_advertiser() {
    let api = start(SimArgs {
        advertiser_qps: Some(2.0),
        ..args()
    })
    .await;
    let aud = api.create(ADV, "a").await;
    // A repeated advertiser id is charged once.
    let rows = email_rows(&[sha(1)], &aud);
    assert_eq!(
        code(&api.map("add", &[ADV, ADV], &["EMAIL_SHA256"], rows).await),
        0
    );
    let v = api.map_emails("add", &aud, &[sha(2)]).await;
    assert_eq!(code(&v), 40133);
    assert!(v["message"].as_str().unwrap().contains(ADV));
    assert_eq!(
        code(&api.get(LIST, &[("advertiser_id", ADV2)]).await),
        0,
        "ADV2 has its own"
    );
    assert_eq!(api.emails(&aud), vec![sha(1)]);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(code(&api.map_emails("add", &aud, &[sha(2)]).await), 0);
}

// === not-ready window (paused time) ===

#[tokio::test(start_paused = true)]
async fn new_audiences_reject_mappings_while_not_ready() {
    let not_ready: humantime::Duration = "90s".parse().unwrap();
    let api = start(SimArgs {
        not_ready_for: Some(not_ready),
        ..args()
    })
    .await;
    let aud = api.create(ADV, "fresh").await;
    let v = api.map_emails("add", &aud, &[sha(1)]).await;
    assert_eq!(code(&v), 40002);
    assert!(v["message"].as_str().unwrap().contains("not editable"));
    tokio::time::advance(Duration::from_secs(89)).await;
    assert_eq!(code(&api.map_emails("add", &aud, &[sha(1)]).await), 40002);
    assert!(api.sim.members(&aud).unwrap().is_empty());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(code(&api.map_emails("add", &aud, &[sha(1)]).await), 0);
    assert_eq!(api.emails(&aud), vec![sha(1)]);
}

// === faults ===

#[tokio::test]
async fn scripted_business_codes_are_answered_and_change_nothing() {
    let api = start(SimArgs {
        faults: Some("script@mapping:50002,51003,60001,ok".into()),
        ..args()
    })
    .await;
    let aud = api.create(ADV, "a").await;
    for expected in [50002, 51003, 60001] {
        let v = api.map_emails("add", &aud, &[sha(1)]).await;
        assert_eq!(code(&v), expected);
        assert!(api.sim.members(&aud).unwrap().is_empty());
    }
    assert_eq!(code(&api.map_emails("add", &aud, &[sha(1)]).await), 0);
    assert_eq!(
        code(&api.map_emails("add", &aud, &[sha(2)]).await),
        0,
        "script used up"
    );
    let faults: Vec<_> = api
        .sim
        .requests()
        .into_iter()
        .filter_map(|r| r.fault)
        .collect();
    assert_eq!(faults, ["50002", "51003", "60001"]);
}

#[tokio::test]
async fn http504_fault_has_an_html_body() {
    let api = start(SimArgs {
        faults: Some("script:http504".into()),
        ..args()
    })
    .await;
    let resp = api
        .http
        .post(format!("{}{AUDIENCE}", api.base))
        .header("Access-Token", TOKEN)
        .json(&json!({"advertiser_id": ADV, "custom_audience_name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ctype.starts_with("text/html"), "{ctype}");
    let body = resp.text().await.unwrap();
    assert!(body.starts_with("<html>") && serde_json::from_str::<Value>(&body).is_err());
    assert!(api.sim.audiences().is_empty());
    assert!(
        !api.create(ADV, "x").await.is_empty(),
        "the next request is served"
    );
}

#[tokio::test]
async fn reset_fault_closes_the_connection_without_a_response() {
    let api = start(args()).await;
    let aud = api.create(ADV, "a").await;
    api.sim.set_faults("script:reset").unwrap();
    let err = api
        .http
        .post(format!("{}{MAPPING}", api.base))
        .header("Access-Token", TOKEN)
        .json(
            &json!({"advertiser_ids": [ADV], "id_schema": ["EMAIL_SHA256"],
            "batch_data": email_rows(&[sha(1)], &aud)}),
        )
        .send()
        .await
        .expect_err("no response");
    assert!(err.is_request() || err.is_connect(), "{err:?}");
    assert!(api.sim.members(&aud).unwrap().is_empty());
    let last = api.sim.requests().pop().unwrap();
    assert_eq!(
        (last.http_status, last.fault.as_deref()),
        (None, Some("reset"))
    );
    assert_eq!(
        code(&api.map_emails("add", &aud, &[sha(1)]).await),
        0,
        "next connection works"
    );
}

#[tokio::test(start_paused = true)]
async fn latency_fault_delays_then_processes() {
    let api = start(SimArgs {
        faults: Some("script:latency=30s".into()),
        ..args()
    })
    .await;
    let before = tokio::time::Instant::now();
    let id = api.create(ADV, "slow").await;
    assert!(before.elapsed() >= Duration::from_secs(30));
    assert_eq!(api.sim.audiences()[0].audience_id, id);
    let before = tokio::time::Instant::now();
    api.create(ADV, "fast").await;
    assert!(before.elapsed() < Duration::from_secs(1));
    let log = api.sim.requests();
    assert_eq!(log[0].fault.as_deref(), Some("latency=30s"));
    assert_eq!(log[1].fault, None);
}

#[tokio::test]
async fn rate_faults_and_runtime_changes_over_http() {
    let api = start(SimArgs {
        faults: Some("rate@get:60001=1".into()),
        ..args()
    })
    .await;
    let aud = api.create(ADV, "a").await;
    let q = format!("[\"{aud}\"]");
    let v = api
        .get(GET, &[("advertiser_id", ADV), ("custom_audience_ids", &q)])
        .await;
    assert_eq!(code(&v), 60001);
    let set = |spec: &'static str| {
        api.http
            .post(format!("{}/sim/faults", api.base))
            .body(spec)
            .send()
    };
    assert_eq!(set("rate:50002=2").await.unwrap().status(), 400);
    assert_eq!(set("none").await.unwrap().status(), 200);
    let v = api
        .get(GET, &[("advertiser_id", ADV), ("custom_audience_ids", &q)])
        .await;
    assert_eq!(code(&v), 0);
    let text = api
        .http
        .get(format!("{}/sim/faults", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(text.text().await.unwrap(), "none");
    assert!(matches!(
        api.sim.set_faults("script:http200"),
        Err(SimError::FaultSpec(_))
    ));
}

// === inspection, state file, arguments ===

#[tokio::test]
async fn inspection_api_shows_audiences_members_and_requests() {
    let api = start(args()).await;
    let aud = api.create(ADV, "seen").await;
    let rows = json!([[{"id": sha(2), "audience_ids": [aud]}, {}], [{}, {"id": md5(1),
        "audience_ids": [aud]}]]);
    assert_eq!(
        code(
            &api.map("add", &[ADV], &["EMAIL_SHA256", "IDFA_MD5"], rows)
                .await
        ),
        0
    );
    let audiences = api.sim_get("/sim/audiences").await;
    assert_eq!(
        audiences,
        json!([{"advertiser_id": ADV, "audience_id": aud, "name": "seen",
        "type": "Partner", "member_count": 2}])
    );
    let members = api.sim_get(&format!("/sim/audiences/{aud}/members")).await;
    assert_eq!(
        members,
        json!([{"id_type": "EMAIL_SHA256", "id": sha(2)},
        {"id_type": "IDFA_MD5", "id": md5(1)}])
    );
    let missing = api
        .http
        .get(format!("{}/sim/audiences/1/members", api.base))
        .send()
        .await;
    assert_eq!(missing.unwrap().status(), 404);
    let log = api.sim_get("/sim/requests").await;
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1]["path"], MAPPING);
    assert_eq!(log[1]["method"], "POST");
    assert_eq!(log[1]["advertiser_ids"], json!([ADV]));
    assert_eq!(
        (log[1]["code"].clone(), log[1]["rows"].clone()),
        (json!(0), json!(2))
    );
    assert!(log[0]["at_ms"].as_u64().unwrap() <= log[1]["at_ms"].as_u64().unwrap());
}

#[tokio::test]
async fn state_file_round_trips_audiences_and_members() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.json");
    let with_file = || SimArgs {
        state_file: Some(path.clone()),
        ..args()
    };
    let api = start(with_file()).await;
    let aud = api.create(ADV, "kept").await;
    assert_eq!(
        code(&api.map_emails("add", &aud, &[sha(1), sha(2)]).await),
        0
    );
    let (audiences, members) = (api.sim.audiences(), api.sim.members(&aud));
    api.handle.stop().await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains(TOKEN) && !text.contains(TOKEN_B),
        "tokens are never persisted"
    );

    let api = start(with_file()).await;
    assert_eq!(api.sim.audiences(), audiences);
    assert_eq!(api.sim.members(&aud), members);
    let next = api.create(ADV, "new").await;
    assert_ne!(next, aud);
    assert_eq!(code(&api.map_emails("delete", &aud, &[sha(1)]).await), 0);
    api.handle.stop().await.unwrap();
    let again = Simulator::new(&with_file()).unwrap();
    assert_eq!(again.members(&aud).unwrap().len(), 1);
    assert_eq!(again.audiences().len(), 2);

    std::fs::write(&path, "not json").unwrap();
    assert!(matches!(
        Simulator::new(&with_file()),
        Err(SimError::StateParse { .. })
    ));
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    sim: SimArgs,
}

#[test]
fn arguments_parse_and_never_show_tokens() {
    assert_eq!(
        parse_token("s3cret=1,2"),
        Ok(("s3cret".into(), vec!["1".into(), "2".into()]))
    );
    for bad in ["s3cret", "s3cret=", "=1", "s3cret=1,x"] {
        let e = parse_token(bad).unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
    }
    assert_eq!(parse_audience("1:22"), Ok(("1".into(), "22".into())));
    assert!(parse_audience("1-22").is_err());

    let cli = Cli::try_parse_from([
        "sim",
        "--token",
        "s3cret=1",
        "--qps",
        "5",
        "--not-ready-for",
        "90s",
        "--audience",
        "1:22",
        "--faults",
        "script:reset",
    ])
    .unwrap();
    assert_eq!(
        cli.sim.tokens,
        vec![("s3cret".to_owned(), vec!["1".to_owned()])]
    );
    assert_eq!(
        cli.sim.not_ready_for.map(Duration::from),
        Some(Duration::from_secs(90))
    );
    assert!(!format!("{:?}", cli.sim).contains("s3cret"));
    let err = Cli::try_parse_from(["sim", "--token", "s3cret=abc"])
        .err()
        .unwrap()
        .to_string();
    assert!(!err.contains("s3cret") && err.contains("--token"), "{err}");

    let bad_qps = SimArgs {
        qps: Some(0.0),
        ..SimArgs::default()
    };
    assert!(matches!(
        Simulator::new(&bad_qps),
        Err(SimError::InvalidRate { .. })
    ));
    let bad_faults = SimArgs {
        faults: Some("rate:50002".into()),
        ..SimArgs::default()
    };
    assert!(matches!(
        Simulator::new(&bad_faults),
        Err(SimError::FaultSpec(_))
    ));
    let seeded = Simulator::new(&SimArgs::default()).unwrap();
    let info = seeded
        .add_audience(AudienceSeed {
            advertiser_id: ADV.into(),
            audience_id: None,
            name: None,
            audience_type: "Lookalike Audience".into(),
        })
        .unwrap();
    assert_eq!(info.audience_type, "Lookalike Audience");
}
