//! Snapshots of per-user detect state, so a shard's users can be written out (a changelog, a
//! file) and restored into a fresh shard that then continues as if uninterrupted.
//!
//! Snapshots name properties and campaigns by name and id, not by interned index, so they stay
//! valid when the config changes: properties and campaigns that no longer exist are dropped on
//! restore. Identifiers are kept as hashes only. Timers are not stored: they are rebuilt from
//! the open windows, in deadline order.

use serde::{Deserialize, Serialize};

use super::state::CampState;
use crate::event::EventTime;

/// A stored property value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SnapValue {
    Bool(bool),
    Num(f64),
    Str(String),
    /// An array or object value (it exists, nothing compares equal to it).
    Other(Vec<()>),
}

/// A campaign's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapCampaign {
    Open(Vec<EventTime>),
    Qualified(EventTime),
    Done,
    /// Open windows with their `inaction.match` keys (only when some key is not 0).
    OpenKeyed(Vec<(EventTime, u64)>),
}

/// One user's detect state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserSnapshot {
    pub user: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profile: Vec<(String, SnapValue)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub campaigns: Vec<(String, SnapCampaign)>,
    /// Behaviour rules' day buckets, by rule key (`campaign#n`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub past: Vec<(String, Vec<SnapBucket>)>,
    /// Devices with their own app fields (DESIGN.md §3a), and the default device's last-seen
    /// time (key 0, no fields) once there are others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<SnapDevice>,
    /// The device whose app fields are in `profile` (0: records that named none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub device: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A device: `(key, last seen, app fields)`.
pub type SnapDevice = (u64, EventTime, Vec<(String, SnapValue)>);

/// One day's figures of a behaviour rule: `(day, count, numbers, sum, min, max)`.
pub type SnapBucket = (i32, u32, u32, f64, f64, f64);

pub(crate) fn bucket_to_snap(b: &super::past::Bucket) -> SnapBucket {
    (b.day, b.count, b.numbers, b.sum, b.min, b.max)
}

pub(crate) fn bucket_from_snap(s: &SnapBucket) -> super::past::Bucket {
    super::past::Bucket {
        day: s.0,
        count: s.1,
        numbers: s.2,
        sum: s.3,
        min: s.4,
        max: s.5,
    }
}

impl SnapCampaign {
    pub(crate) fn from_state(s: &CampState) -> SnapCampaign {
        match s {
            CampState::Open(w) if w.iter().all(|x| x.1 == 0) => {
                SnapCampaign::Open(w.iter().map(|x| x.0).collect())
            }
            CampState::Open(w) => SnapCampaign::OpenKeyed(w.to_vec()),
            CampState::Qualified { at } => SnapCampaign::Qualified(*at),
            CampState::Done => SnapCampaign::Done,
        }
    }

    pub(crate) fn to_state(&self) -> CampState {
        match self {
            SnapCampaign::Open(w) => CampState::Open(w.iter().map(|&t| (t, 0)).collect()),
            SnapCampaign::OpenKeyed(w) => CampState::Open(w.iter().copied().collect()),
            SnapCampaign::Qualified(at) => CampState::Qualified { at: *at },
            SnapCampaign::Done => CampState::Done,
        }
    }
}

// === the changelog encoding ===
//
// A changelog value is `FORMAT_V1` followed by the postcard encoding of `Wire` (varint lengths
// and zigzag-varint times, identifiers as 32 raw bytes); the user id is the record's key and
// is not repeated. Values written as JSON by earlier versions (they start with `{`) still
// decode, so a changelog survives an upgrade.

/// First byte of a binary snapshot (JSON starts with `{`). V2 adds behaviour rules' buckets
/// after the campaigns, V3 the devices after them; V1 and V2 values still decode.
const FORMAT_V1: u8 = 1;
const FORMAT_V2: u8 = 2;
const FORMAT_V3: u8 = 3;

#[derive(Serialize, Deserialize)]
pub(crate) struct Wire<'a> {
    #[serde(borrow)]
    pub profile: Vec<(&'a str, WireValue<'a>)>,
    pub email: Option<[u8; 32]>,
    pub phone: Option<[u8; 32]>,
    #[serde(borrow)]
    pub campaigns: Vec<(&'a str, SnapCampaign)>,
    #[serde(borrow)]
    pub past: Vec<(&'a str, Vec<SnapBucket>)>,
    #[serde(borrow)]
    pub devices: Vec<WireDevice<'a>>,
    pub device: u64,
}

/// A device in [`Wire`]: `(key, last seen, app fields)`.
pub(crate) type WireDevice<'a> = (u64, EventTime, Vec<(&'a str, WireValue<'a>)>);

/// V2's layout: [`Wire`] without `devices`.
#[derive(Deserialize)]
struct WireV2<'a> {
    #[serde(borrow)]
    profile: Vec<(&'a str, WireValue<'a>)>,
    email: Option<[u8; 32]>,
    phone: Option<[u8; 32]>,
    #[serde(borrow)]
    campaigns: Vec<(&'a str, SnapCampaign)>,
    #[serde(borrow)]
    past: Vec<(&'a str, Vec<SnapBucket>)>,
}

/// V1's layout: [`Wire`] without `past`.
#[derive(Deserialize)]
struct WireV1<'a> {
    #[serde(borrow)]
    profile: Vec<(&'a str, WireValue<'a>)>,
    email: Option<[u8; 32]>,
    phone: Option<[u8; 32]>,
    #[serde(borrow)]
    campaigns: Vec<(&'a str, SnapCampaign)>,
}

/// The binary form of a changelog value, borrowed from it; `None` when it is not binary.
pub(crate) fn decode_wire(value: &[u8]) -> Result<Option<Wire<'_>>, SnapshotError> {
    let err = |e: postcard::Error| SnapshotError(e.to_string());
    match value.first() {
        Some(&FORMAT_V3) => postcard::from_bytes(&value[1..]).map(Some).map_err(err),
        Some(&FORMAT_V2) => {
            let v2: WireV2 = postcard::from_bytes(&value[1..]).map_err(err)?;
            Ok(Some(Wire {
                profile: v2.profile,
                email: v2.email,
                phone: v2.phone,
                campaigns: v2.campaigns,
                past: v2.past,
                devices: Vec::new(),
                device: 0,
            }))
        }
        Some(&FORMAT_V1) => {
            let v1: WireV1 = postcard::from_bytes(&value[1..]).map_err(err)?;
            Ok(Some(Wire {
                profile: v1.profile,
                email: v1.email,
                phone: v1.phone,
                campaigns: v1.campaigns,
                past: Vec::new(),
                devices: Vec::new(),
                device: 0,
            }))
        }
        _ => Ok(None),
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) enum WireValue<'a> {
    Bool(bool),
    Num(f64),
    Str(&'a str),
    Other,
}

/// `Wire` borrowed from live state, for encoding a user without building a [`UserSnapshot`]
/// first: the same bytes (`P` yields `(&str, WireValue)`, `C` yields `(&str, CampRef)`).
#[derive(Serialize)]
#[serde(bound(
    serialize = "Seq<P>: Serialize, Seq<C>: Serialize, Seq<B>: Serialize, Seq<D>: Serialize"
))]
pub(crate) struct WireRef<'a, P, C, B, D> {
    pub profile: Seq<P>,
    pub email: Option<&'a [u8; 32]>,
    pub phone: Option<&'a [u8; 32]>,
    pub campaigns: Seq<C>,
    pub past: Seq<B>,
    /// `(key, seen, Seq<(&str, WireValue)>)` per device.
    pub devices: Seq<D>,
    pub device: u64,
}

/// [`SnapCampaign`] borrowed (same variants, same order, so the same bytes).
#[derive(Serialize)]
#[serde(bound(serialize = "Seq<T>: Serialize, Seq<K>: Serialize"))]
pub(crate) enum CampRef<T, K> {
    Open(Seq<T>),
    Qualified(EventTime),
    Done,
    OpenKeyed(Seq<K>),
}

/// A sequence serialised straight from an iterator (its length known up front).
pub(crate) struct Seq<I>(pub I);

impl<I> Serialize for Seq<I>
where
    I: ExactSizeIterator + Clone,
    I::Item: Serialize,
{
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.clone())
    }
}

impl<P, C, B, D> WireRef<'_, P, C, B, D>
where
    Seq<P>: Serialize,
    Seq<C>: Serialize,
    Seq<B>: Serialize,
    Seq<D>: Serialize,
{
    /// Appends the changelog encoding, as [`UserSnapshot::encode`] writes it, to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.push(FORMAT_V3);
        let buf = std::mem::take(out);
        *out = postcard::to_extend(self, buf).expect("a snapshot always serialises");
    }
}

/// A changelog value that is neither a binary nor a JSON snapshot.
#[derive(Debug, thiserror::Error)]
#[error("undecodable user snapshot ({0})")]
pub struct SnapshotError(String);

fn hash_of(hex_text: &Option<String>) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_text.as_deref()?, &mut out).ok()?;
    Some(out)
}

fn to_wire(props: &[(String, SnapValue)]) -> Vec<(&str, WireValue<'_>)> {
    props
        .iter()
        .map(|(name, v)| {
            let v = match v {
                SnapValue::Bool(b) => WireValue::Bool(*b),
                SnapValue::Num(n) => WireValue::Num(*n),
                SnapValue::Str(s) => WireValue::Str(s),
                SnapValue::Other(_) => WireValue::Other,
            };
            (name.as_str(), v)
        })
        .collect()
}

fn from_wire(props: Vec<(&str, WireValue<'_>)>) -> Vec<(String, SnapValue)> {
    props
        .into_iter()
        .map(|(name, v)| {
            let v = match v {
                WireValue::Bool(b) => SnapValue::Bool(b),
                WireValue::Num(n) => SnapValue::Num(n),
                WireValue::Str(s) => SnapValue::Str(s.to_owned()),
                WireValue::Other => SnapValue::Other(Vec::new()),
            };
            (name.to_owned(), v)
        })
        .collect()
}

impl UserSnapshot {
    /// Appends the changelog encoding of this snapshot (without the user id) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let wire = Wire {
            profile: to_wire(&self.profile),
            email: hash_of(&self.email_sha256),
            phone: hash_of(&self.phone_sha256),
            campaigns: self
                .campaigns
                .iter()
                .map(|(id, c)| (id.as_str(), c.clone()))
                .collect(),
            past: self
                .past
                .iter()
                .map(|(k, b)| (k.as_str(), b.clone()))
                .collect(),
            devices: self
                .devices
                .iter()
                .map(|(key, seen, props)| (*key, *seen, to_wire(props)))
                .collect(),
            device: self.device,
        };
        out.push(FORMAT_V3);
        let body = postcard::to_allocvec(&wire).expect("a snapshot always serialises");
        out.extend_from_slice(&body);
    }

    /// Decodes a changelog value written by [`UserSnapshot::encode`] (or JSON, as written by
    /// earlier versions) for the user `user`.
    pub fn decode(user: &str, value: &[u8]) -> Result<UserSnapshot, SnapshotError> {
        match value.first() {
            Some(&FORMAT_V1 | &FORMAT_V2 | &FORMAT_V3) => {
                let wire = decode_wire(value)?.expect("a binary value");
                Ok(UserSnapshot {
                    user: user.to_owned(),
                    profile: from_wire(wire.profile),
                    email_sha256: wire.email.as_ref().map(crate::identity::to_hex),
                    phone_sha256: wire.phone.as_ref().map(crate::identity::to_hex),
                    campaigns: wire
                        .campaigns
                        .into_iter()
                        .map(|(id, c)| (id.to_owned(), c))
                        .collect(),
                    past: wire
                        .past
                        .into_iter()
                        .map(|(k, b)| (k.to_owned(), b))
                        .collect(),
                    devices: wire
                        .devices
                        .into_iter()
                        .map(|(key, seen, props)| (key, seen, from_wire(props)))
                        .collect(),
                    device: wire.device,
                })
            }
            Some(b'{') => {
                let mut snap: UserSnapshot =
                    serde_json::from_slice(value).map_err(|e| SnapshotError(e.to_string()))?;
                snap.user = user.to_owned();
                Ok(snap)
            }
            Some(b) => Err(SnapshotError(format!("unknown format byte {b}"))),
            None => Err(SnapshotError("empty value".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> UserSnapshot {
        UserSnapshot {
            user: "u-1".into(),
            profile: vec![
                ("plan".into(), SnapValue::Str("gold".into())),
                ("age".into(), SnapValue::Num(41.5)),
                ("opted_in".into(), SnapValue::Bool(true)),
                ("tags".into(), SnapValue::Other(Vec::new())),
            ],
            email_sha256: Some("ab".repeat(32)),
            phone_sha256: None,
            campaigns: vec![
                (
                    "cart".into(),
                    SnapCampaign::Open(vec![1_790_000_000_000, 1_790_000_000_500]),
                ),
                ("viewed".into(), SnapCampaign::Qualified(-5)),
                ("gone".into(), SnapCampaign::Done),
            ],
            past: vec![("cart#0".into(), vec![(20_000, 3, 2, 12.5, 2.5, 10.0)])],
            devices: vec![
                (0, 1_790_000_000_000, Vec::new()),
                (
                    77,
                    1_790_000_000_500,
                    vec![("app_version".into(), SnapValue::Str("5.10.1".into()))],
                ),
            ],
            device: 12,
        }
    }

    /// A value written before devices existed decodes, with none.
    #[test]
    fn version_2_values_still_decode() {
        #[derive(Serialize)]
        struct WireV2Ser<'a> {
            profile: Vec<(&'a str, WireValue<'a>)>,
            email: Option<[u8; 32]>,
            phone: Option<[u8; 32]>,
            campaigns: Vec<(&'a str, SnapCampaign)>,
            past: Vec<(&'a str, Vec<SnapBucket>)>,
        }
        let v2 = WireV2Ser {
            profile: vec![("plan", WireValue::Str("gold"))],
            email: None,
            phone: None,
            campaigns: vec![("gone", SnapCampaign::Done)],
            past: vec![("cart#0", vec![(20_000, 3, 2, 12.5, 2.5, 10.0)])],
        };
        let mut bytes = vec![FORMAT_V2];
        bytes.extend(postcard::to_allocvec(&v2).unwrap());
        let got = UserSnapshot::decode("u-1", &bytes).unwrap();
        assert_eq!(got.past.len(), 1);
        assert!(got.devices.is_empty());
    }

    /// A value written before behaviour rules existed decodes, with no buckets.
    #[test]
    fn version_1_values_still_decode() {
        let mut snap = sample();
        snap.past.clear();
        snap.devices.clear();
        let v1 = WireV1Ser {
            profile: vec![("plan", WireValue::Str("gold"))],
            email: None,
            phone: None,
            campaigns: vec![("gone", SnapCampaign::Done)],
        };
        let mut bytes = vec![FORMAT_V1];
        bytes.extend(postcard::to_allocvec(&v1).unwrap());
        let got = UserSnapshot::decode("u-1", &bytes).unwrap();
        assert_eq!(got.campaigns, [("gone".to_owned(), SnapCampaign::Done)]);
        assert!(got.past.is_empty());
    }

    #[derive(Serialize)]
    struct WireV1Ser<'a> {
        profile: Vec<(&'a str, WireValue<'a>)>,
        email: Option<[u8; 32]>,
        phone: Option<[u8; 32]>,
        campaigns: Vec<(&'a str, SnapCampaign)>,
    }

    #[test]
    fn binary_round_trip_is_exact_and_smaller_than_json() {
        let snap = sample();
        let mut bytes = Vec::new();
        snap.encode(&mut bytes);
        assert_eq!(UserSnapshot::decode("u-1", &bytes).unwrap(), snap);
        let json = serde_json::to_vec(&snap).unwrap();
        assert!(
            bytes.len() * 2 < json.len(),
            "{} vs {}",
            bytes.len(),
            json.len()
        );
    }

    #[test]
    fn json_written_by_earlier_versions_still_decodes() {
        let snap = sample();
        let json = serde_json::to_vec(&snap).unwrap();
        assert_eq!(UserSnapshot::decode("u-1", &json).unwrap(), snap);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"\x01",
            b"\x01\xff\xff\xff",
            b"\x07abc",
            b"{not json",
        ] {
            assert!(UserSnapshot::decode("u", bad).is_err(), "{bad:?}");
        }
    }
}
