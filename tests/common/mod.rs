//! Helpers shared by the end-to-end tests: an in-process TikTok simulator on its own runtime,
//! generated recordings with unique identifiers, and the expected audience membership
//! computed from `decisions.jsonl`.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use remarket::generate::{generate, GenerateArgs};
use remarket::tiktok_sim::{SimArgs, SimHandle, Simulator};

pub const ADV_A: &str = "7178918106775994370";
pub const ADV_B: &str = "7178918106775994371";
pub const EXISTING: &str = "6900000000000000001";

/// A simulator served from a background runtime.
pub struct Sim {
    pub url: String,
    pub sim: Simulator,
    rt: tokio::runtime::Runtime,
    handle: Option<SimHandle>,
}

impl Sim {
    /// Token `token` for both sample advertisers and the sample's existing Partner audience.
    pub fn start(token: &str, tweak: impl FnOnce(&mut SimArgs)) -> Sim {
        let mut args = SimArgs {
            tokens: vec![(token.to_owned(), vec![ADV_A.to_owned(), ADV_B.to_owned()])],
            audiences: vec![(ADV_A.to_owned(), EXISTING.to_owned())],
            ..SimArgs::default()
        };
        tweak(&mut args);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let sim = Simulator::new(&args).unwrap();
        let (url, handle) = rt.block_on(sim.clone().spawn()).unwrap();
        Sim {
            url,
            sim,
            rt,
            handle: Some(handle),
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = self.rt.block_on(h.stop());
        }
    }
}

/// The sample config pointed at `url`, the token read from `token_file`, with `qps`,
/// `max_batch` and `linger` set.
pub fn config_text(url: &str, token_file: &Path, qps: u32, max_batch: u32, linger: &str) -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/sample.toml"))
        .unwrap();
    text.replace("https://business-api.tiktok.com", url)
        .replace(
            "access_token_env = \"TIKTOK_ACCESS_TOKEN\"",
            &format!("access_token_file = {:?}", token_file.display().to_string()),
        )
        .replace("qps = 10", &format!("qps = {qps}"))
        .replace("max_batch = 10000", &format!("max_batch = {max_batch}"))
        .replace("linger = \"5s\"", &format!("linger = \"{linger}\""))
}

/// A generated native recording whose users all have distinct emails and phones (so the
/// expected membership is exact), written to `dir/recording.jsonl`.
pub fn recording(dir: &Path, users: u64, events: u64, seed: u64) -> PathBuf {
    recording_shared(dir, users, events, seed, 1)
}

/// As [`recording`], but users come in households of `household` that share one email and
/// one phone (`u0`..`u{household-1}` the first, and so on).
pub fn recording_shared(dir: &Path, users: u64, events: u64, seed: u64, household: u64) -> PathBuf {
    let args = GenerateArgs::new(users, events, seed);
    let mut raw = Vec::new();
    generate(&args, &mut raw).unwrap();
    let mut out = String::new();
    for line in raw.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let mut v: serde_json::Value = serde_json::from_slice(line).unwrap();
        if v["type"] == "profile" {
            let user = v["user_id"].as_str().unwrap()[1..].parse::<u64>().unwrap() / household;
            let props = v["props"].as_object_mut().unwrap();
            if props.get("email").is_some_and(|e| e.is_string()) {
                props.insert("email".into(), format!("  User.{user}@Example.COM ").into());
            }
            if props
                .get("phone")
                .and_then(|p| p.as_str())
                .is_some_and(|p| p.starts_with('+') || p.starts_with("00"))
            {
                props.insert("phone".into(), format!("+44 20 {:08}", user).into());
            }
        }
        out.push_str(&v.to_string());
        out.push('\n');
    }
    let path = dir.join("recording.jsonl");
    std::fs::write(&path, out).unwrap();
    path
}

/// `(id_type, id)` pairs.
pub type Members = BTreeSet<(String, String)>;

/// Expected members per audience id: an audience is a set of hashed ids, so the ids of the
/// users whose last decision is `exported` (an id another member still holds stays).
pub fn expected(out: &Path, audience_of: &BTreeMap<String, String>) -> BTreeMap<String, Members> {
    let text = std::fs::read_to_string(out.join("decisions.jsonl")).unwrap();
    let mut last: BTreeMap<(String, String), (bool, Members)> = BTreeMap::new();
    for line in text.lines() {
        let d: serde_json::Value = serde_json::from_str(line).unwrap();
        let member = match d["outcome"].as_str().unwrap() {
            "exported" => true,
            "removed" => false,
            _ => continue,
        };
        let ids = d["ids"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        let key = (
            d["campaign"].as_str().unwrap().to_owned(),
            d["user_id"].as_str().unwrap().to_owned(),
        );
        last.insert(key, (member, ids));
    }
    let mut want: BTreeMap<String, Members> = BTreeMap::new();
    for ((campaign, _), (member, ids)) in last {
        let set = want.entry(audience_of[&campaign].clone()).or_default();
        if member {
            set.extend(ids);
        }
    }
    want.retain(|_, m| !m.is_empty());
    want
}

/// Campaign id → audience id, from the sample config and `out/audiences.json`.
pub fn audiences_of(out: &Path) -> BTreeMap<String, String> {
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("audiences.json")).unwrap()).unwrap();
    let mut m: BTreeMap<String, String> = stored
        .as_object()
        .unwrap()
        .iter()
        .map(|(c, e)| (c.clone(), e["audience_id"].as_str().unwrap().to_owned()))
        .collect();
    m.insert("big-ticket-viewers".into(), EXISTING.into());
    m
}

/// What the simulator holds, per audience id.
pub fn held(sim: &Simulator) -> BTreeMap<String, Members> {
    sim.audiences()
        .into_iter()
        .map(|a| {
            let members = sim
                .members(&a.audience_id)
                .unwrap()
                .into_iter()
                .map(|m| {
                    let t = serde_json::to_value(m.id_type).unwrap();
                    (t.as_str().unwrap().to_owned(), m.id)
                })
                .collect();
            (a.audience_id, members)
        })
        .filter(|(_, m): &(String, Members)| !m.is_empty())
        .collect()
}

/// The most requests the simulator logged in any one-second window.
pub fn max_requests_per_second(sim: &Simulator) -> usize {
    let at: Vec<u64> = sim.requests().iter().map(|r| r.at_ms).collect();
    let mut best = 0;
    for (i, &t) in at.iter().enumerate() {
        let n = at[i..].iter().take_while(|&&u| u < t + 1000).count();
        best = best.max(n);
    }
    best
}
