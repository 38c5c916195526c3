//! The admin API over real HTTP on loopback: the bearer token, the lifecycle's 409s, every
//! problem in a 422, 413, config-managed campaigns read-only, each change written through
//! the store's persistence before it is applied, and the OpenAPI document matching the routes.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use remarket::api::Api;
use remarket::store::{Doc, Store};
use serde_json::{json, Value};

const TOKEN: &str = "admin-token-0123456789";

#[derive(Debug)]
struct Clock(AtomicI64);

impl remarket::clock::WallClock for Clock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

type Written = Arc<Mutex<Vec<(String, Option<Doc>)>>>;

struct Server {
    url: String,
    http: reqwest::Client,
    written: Written,
    store: Arc<Mutex<Store>>,
    rt: tokio::runtime::Runtime,
    fail_writes: Arc<std::sync::atomic::AtomicBool>,
}

fn start() -> Server {
    let base: toml::Table = std::fs::read_to_string("config/sample.toml")
        .unwrap()
        .parse()
        .unwrap();
    start_with(base, None)
}

/// An API over `base`, checking ad accounts through `check` if given.
fn start_with(base: toml::Table, check: Option<remarket::api::CheckAccount>) -> Server {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(Mutex::new(Store::default()));
    let written: Written = Arc::default();
    let fail_writes = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (w, fail) = (written.clone(), fail_writes.clone());
    let persist: remarket::api::Persist = Arc::new(move |key: &str, doc: Option<&Doc>| {
        anyhow::ensure!(!fail.load(Ordering::SeqCst), "broker down");
        w.lock().unwrap().push((key.to_owned(), doc.cloned()));
        Ok(())
    });
    let clock = Arc::new(Clock(
        "2026-11-02T00:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond()
            .into(),
    ));
    let api = Api::new(
        Some(TOKEN),
        base,
        store.clone(),
        persist,
        Arc::new(|_: &str| None),
        clock,
    );
    let api = match check {
        Some(c) => api.with_account_check(c),
        None => api,
    };
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/api/v1", listener.local_addr().unwrap());
    rt.spawn(async move { axum::serve(listener, api.router()).await });
    Server {
        url,
        http: reqwest::Client::new(),
        written,
        store,
        rt,
        fail_writes,
    }
}

impl Server {
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.rt.block_on(async {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        })
    }

    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(method, path, body, Some(TOKEN))
    }
}

fn draft(id: &str) -> Value {
    json!({
        "id": id, "name": "Wishlist", "ad_account": "7178918106775994370",
        "start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z",
        "trigger": {"event": "Added To Wishlist"},
        "who": {"control_group": 10, "target_cap": 100},
        "what": {"audience": {"new": {"name": "Wishlisters", "description": "d"}},
                 "identifiers": ["email"]}
    })
}

#[test]
fn the_token_is_required_and_compared_exactly() {
    let s = start();
    assert_eq!(s.call("GET", "/campaigns", None, None).0, 401);
    assert_eq!(
        s.call("GET", "/campaigns", None, Some("admin-token-012345678"))
            .0,
        401
    );
    assert_eq!(
        s.call("GET", "/campaigns", None, Some(&format!("{TOKEN}x")))
            .0,
        401
    );
    let (status, body) = s.ok("GET", "/campaigns", None);
    assert_eq!(status, 200);
    let ids: Vec<&str> = (body["campaigns"].as_array().unwrap().iter())
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 4, "the config's campaigns: {ids:?}");
    assert!(body["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["managed_by"] == "config"));
    // The document is open, like /metrics.
    assert_eq!(s.call("GET", "/openapi.json", None, None).0, 200);
}

#[test]
fn a_campaign_goes_from_draft_to_stopped_within_the_edit_rules() {
    let s = start();
    let (status, created) = s.ok("POST", "/campaigns", Some(draft("wish")));
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["state"], "draft");
    assert_eq!(
        s.ok("POST", "/campaigns", Some(draft("wish"))).0,
        409,
        "exists"
    );
    assert_eq!(
        s.ok("POST", "/campaigns", Some(draft("cart-abandoners"))).0,
        409,
        "config's"
    );
    assert_eq!(
        s.ok(
            "PUT",
            "/campaigns/cart-abandoners",
            Some(draft("cart-abandoners"))
        )
        .0,
        409
    );

    // A draft changes freely; then it is published, 3 days after its start.
    let mut edited = draft("wish");
    edited["trigger"]["event"] = "Product Viewed".into();
    assert_eq!(s.ok("PUT", "/campaigns/wish", Some(edited.clone())).0, 200);
    let at = json!({"effective_at": "2026-11-04T00:00:00Z"});
    let (status, published) = s.ok("POST", "/campaigns/wish/publish", Some(at));
    assert_eq!(status, 200, "{published}");
    assert_eq!(
        published["state"], "scheduled",
        "published for later than now"
    );
    assert_eq!(published["published_at"], "2026-11-04T00:00:00Z");
    assert_eq!(s.ok("POST", "/campaigns/wish/publish", None).0, 409, "once");
    assert_eq!(
        s.ok("DELETE", "/campaigns/wish", None).0,
        409,
        "stop, not delete"
    );

    // Published: only name, end (later), cap (higher) and description.
    let mut trigger = edited.clone();
    trigger["trigger"]["event"] = "Charged".into();
    let (status, body) = s.ok("PUT", "/campaigns/wish", Some(trigger));
    assert_eq!(status, 409, "{body}");
    let mut lower = edited.clone();
    lower["who"]["target_cap"] = 50.into();
    assert_eq!(s.ok("PUT", "/campaigns/wish", Some(lower)).0, 409);
    let mut raised = edited.clone();
    raised["who"]["target_cap"] = 500.into();
    raised["name"] = "Wishlist, raised".into();
    assert_eq!(s.ok("PUT", "/campaigns/wish", Some(raised)).0, 200);

    let (status, stopped) = s.ok("POST", "/campaigns/wish/stop", None);
    assert_eq!((status, stopped["state"].as_str()), (200, Some("stopped")));
    assert_eq!(s.ok("POST", "/campaigns/wish/stop", None).0, 409);
    let (_, list) = s.ok("GET", "/campaigns?state=stopped", None);
    assert_eq!(list["campaigns"].as_array().unwrap().len(), 1);

    // Every change was written before it was applied; what was written is what is held.
    let written = s.written.lock().unwrap();
    assert_eq!(written.len(), 5, "create, edit, publish, raise, stop");
    assert!(written.iter().all(|(k, _)| k == "campaign/wish"));
    let last = written.last().unwrap().1.clone().unwrap();
    assert_eq!(
        s.store
            .lock()
            .unwrap()
            .get(remarket::store::Kind::Campaign, "wish"),
        Some(&last)
    );
    assert_eq!(last.cap_changes.len(), 1);
}

#[test]
fn invalid_definitions_get_every_problem_and_nothing_is_written() {
    let s = start();
    let mut bad = draft("bad");
    bad["who"]["control_group"] = 150.into();
    bad["what"]["audience"]["new"]["description"] = "x".repeat(201).into();
    bad["trigger"]["where"] = json!([{"prop": "price", "op": "~", "value": 1}]);
    let (status, body) = s.ok("POST", "/campaigns", Some(bad));
    assert_eq!(status, 422, "{body}");
    let fields: Vec<&str> = (body["problems"].as_array().unwrap().iter())
        .map(|p| p["field"].as_str().unwrap())
        .collect();
    for f in [
        "who.control_group",
        "what.audience.new.description",
        "trigger.where[0].op",
    ] {
        assert!(fields.contains(&f), "{f} in {fields:?}");
    }
    assert!(body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["campaign"] == "bad"));
    let mut unknown_segment = draft("seg");
    unknown_segment["who"]["segment"] = "nope".into();
    assert_eq!(s.ok("POST", "/campaigns", Some(unknown_segment)).0, 422);
    assert_eq!(s.ok("POST", "/campaigns", Some(json!([1, 2]))).0, 422);
    assert_eq!(s.ok("GET", "/campaigns/bad", None).0, 404);
    assert!(s.written.lock().unwrap().is_empty());

    let huge = json!({"id": "big", "name": "x".repeat(300 * 1024)});
    assert_eq!(s.ok("POST", "/campaigns", Some(huge)).0, 413);

    // A store that cannot be written: 503, and nothing changes.
    s.fail_writes.store(true, Ordering::SeqCst);
    assert_eq!(s.ok("POST", "/campaigns", Some(draft("later"))).0, 503);
    s.fail_writes.store(false, Ordering::SeqCst);
    assert_eq!(s.ok("GET", "/campaigns/later", None).0, 404);
}

#[test]
fn segments_are_saved_and_frozen_while_a_published_campaign_uses_them() {
    let s = start();
    let seg =
        json!({"id": "germans", "where": [{"prop": "country", "op": "=", "value": "Germany"}]});
    assert_eq!(s.ok("POST", "/segments", Some(seg.clone())).0, 201);
    let mut c = draft("by-segment");
    c["who"]["segment"] = "germans".into();
    assert_eq!(s.ok("POST", "/campaigns", Some(c)).0, 201);
    assert_eq!(s.ok("POST", "/campaigns/by-segment/publish", None).0, 200);
    let mut changed = seg.clone();
    changed["where"][0]["value"] = "France".into();
    assert_eq!(s.ok("PUT", "/segments/germans", Some(changed)).0, 409);
    assert_eq!(s.ok("DELETE", "/segments/germans", None).0, 409);
    assert_eq!(
        s.ok("GET", "/segments/reachable-shoppers", None).1["managed_by"],
        "config"
    );
    let (_, list) = s.ok("GET", "/segments", None);
    assert_eq!(list["segments"].as_array().unwrap().len(), 2);
}

/// Every operation of the OpenAPI document is routed, and answers with a documented status.
#[test]
fn the_openapi_document_matches_the_routes() {
    let s = start();
    let (status, doc) = s.call("GET", "/openapi.json", None, None);
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(
        s.ok("POST", "/segments", Some(json!({"id": "s1", "where": []})))
            .0
            == 201
    );
    assert!(s.ok("POST", "/campaigns", Some(draft("x1"))).0 == 201);
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            operations += 1;
            let concrete = path.replace(
                "{id}",
                if path.starts_with("/segments") {
                    "s1"
                } else {
                    "x1"
                },
            );
            let body = op.get("requestBody").map(|_| {
                if path.starts_with("/segments") {
                    json!({"id": "s1", "where": []})
                } else if path.ends_with("/publish") || path.ends_with("/stop") {
                    json!({})
                } else {
                    draft("x1")
                }
            });
            let (status, _) = s.ok(&method.to_uppercase(), &concrete, body);
            let documented = op["responses"].as_object().unwrap();
            assert!(
                documented.contains_key(&status.to_string()),
                "{method} {path}: {status} is not documented"
            );
        }
    }
    assert_eq!(operations, 18);
}

/// `remarket campaigns …` against the API: a TOML campaign file created and published, the
/// list, and a refusal's message on stderr with exit 1; the token only from the environment.
#[test]
fn the_campaigns_command_drives_the_api() {
    let s = start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wish.toml");
    std::fs::write(
        &file,
        r#"id = "wish"
name = "Wishlist"
ad_account = "7178918106775994370"
start = "2026-11-01T00:00:00Z"
[trigger]
event = "Added To Wishlist"
[what]
audience = { new = { name = "Wishlisters" } }
identifiers = ["email"]
"#,
    )
    .unwrap();
    let api = s.url.trim_end_matches("/api/v1").to_owned();
    let cli = |args: &[&str], token: Option<&str>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_remarket"));
        c.arg("campaigns").arg("--api").arg(&api).args(args);
        c.env_remove("REMARKET_ADMIN_TOKEN");
        if let Some(t) = token {
            c.env("REMARKET_ADMIN_TOKEN", t);
        }
        c.output().unwrap()
    };
    let file = file.to_str().unwrap();
    let out = cli(&["create", "-f", file], Some(TOKEN));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["state"], "draft");
    let out = cli(
        &["publish", "wish", "--at", "2026-11-03T00:00:00Z"],
        Some(TOKEN),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["list", "--state", "scheduled"], Some(TOKEN));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["campaigns"][0]["id"], "wish");
    let out = cli(&["delete", "wish"], Some(TOKEN));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("409") && err.contains("stop it instead"),
        "{err}"
    );
    let out = cli(&["list"], Some("wrong"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    let out = cli(&["list"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("REMARKET_ADMIN_TOKEN"));
}

/// `GET /ad-accounts` lists the configured accounts and every campaign's `ad_account`, each
/// with the token that serves it and TikTok's answer to `advertiser/info/` (the simulator's):
/// an account's own token, the default token, and a token TikTok refuses for its account.
#[test]
fn ad_accounts_say_which_token_serves_each_and_whether_it_works() {
    const ADV_A: &str = "7178918106775994370";
    const ADV_B: &str = "7178918106775994371";
    const ADV_C: &str = "7178918106775994379";
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let (default, b) = (file("default", "tok-a\n"), file("b", "tok-b\n"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let args = remarket::tiktok_sim::SimArgs {
        tokens: vec![
            ("tok-a".into(), vec![ADV_A.into()]),
            ("tok-b".into(), vec![ADV_B.into()]),
        ],
        ..Default::default()
    };
    let sim = remarket::tiktok_sim::Simulator::new(&args).unwrap();
    let (url, _handle) = rt.block_on(sim.spawn()).unwrap();
    let text = std::fs::read_to_string("config/sample.toml")
        .unwrap()
        .replace("https://business-api.tiktok.com", &url)
        .replace(
            "access_token_env = \"TIKTOK_ACCESS_TOKEN\"",
            &format!("access_token_file = {default:?}"),
        )
        + &format!(
            "\n[[tiktok.account]]\nadvertiser_id = \"{ADV_B}\"\nname = \"Brand B\"\naccess_token_file = {b:?}\n\
             [[tiktok.account]]\nadvertiser_id = \"{ADV_C}\"\naccess_token_file = {b:?}\n"
        );
    let config = remarket::config::Config::parse(&text, Vec::new()).unwrap();
    let client = Arc::new(
        remarket::sink::tiktok::Client::new(
            &url,
            remarket::sink::tiktok::Tokens::load(&config.tiktok).unwrap(),
            std::time::Duration::from_secs(10),
        )
        .unwrap(),
    );
    let check: remarket::api::CheckAccount = Arc::new(move |advertiser: String| {
        let client = client.clone();
        Box::pin(async move { client.account_status(&advertiser).await })
    });
    let s = start_with(text.parse().unwrap(), Some(check));
    let (status, body) = s.ok("GET", "/ad-accounts", None);
    assert_eq!(status, 200, "{body}");
    let list = body["ad_accounts"].as_array().unwrap();
    let of = |id: &str| {
        list.iter()
            .find(|a| a["advertiser_id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(list.len(), 3, "{body}");
    let a = of(ADV_A);
    assert_eq!(
        (a["token"].as_str(), a["ok"].as_bool()),
        (Some("default"), Some(true))
    );
    assert_eq!(a["name"], format!("Simulated advertiser {ADV_A}"));
    assert_eq!(a["campaigns"].as_array().unwrap().len(), 3, "{a}");
    let b = of(ADV_B);
    assert_eq!(
        (b["token"].as_str(), b["ok"].as_bool()),
        (Some("account"), Some(true))
    );
    assert_eq!(b["configured_name"], "Brand B");
    assert_eq!(b["campaigns"].as_array().unwrap().len(), 1, "{b}");
    let c = of(ADV_C);
    assert_eq!(
        (c["token"].as_str(), c["ok"].as_bool()),
        (Some("account"), Some(false))
    );
    assert!(c["error"].as_str().unwrap().starts_with("40001"), "{c}");
    assert!(!body.to_string().contains("tok-"), "no token in the answer");
}
