//! How records look on the wire: the native, Segment and CleverTap renderings of events and
//! profiles, malformed lines, `kcat -C -J` envelopes, and the buffered [`Writer`] that puts
//! them out.
//!
//! Malformed lines, Segment `context` and envelope timestamps each draw from their own RNG
//! stream, so choosing them never changes the valid records.

use std::io::{self, Write};

use fastrand::Rng;

use super::json::{
    bool_field, close, push_cents, push_device, push_iso_ms, push_json_string, push_key, push_str,
    push_u64, push_user, str_field, u64_field, user_id,
};
use super::people::{
    Body, Nullable, People, Update, UserDevice, APP_VERSIONS, DEVICES, GENDERS, LOCATIONS, PLANS,
    SDK_VERSIONS,
};
use super::timeline::Catalog;
use super::{stream, Format, GenerateArgs, GenerateStats, Rec, What};

const FLUSH_AT: usize = 64 * 1024;

// === impl Writer ===

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mangle {
    None,
    NoUser,
    NoEvent,
    BadTs,
    BadUtf8,
}

struct Kafka {
    rng: Rng,
    offsets: Vec<u64>,
    last_ts: Vec<u64>,
}

/// Renders records (and malformed lines) into one buffer, wraps them in envelopes, writes out.
pub(super) struct Writer<'a, W: Write> {
    out: &'a mut W,
    buf: Vec<u8>,
    /// one record, when it still has to be wrapped in an envelope
    rec: Vec<u8>,
    format: Format,
    catalog: Catalog,
    malformed_p: f64,
    malformed_rng: Rng,
    context_rng: Rng,
    kafka: Option<Kafka>,
    stats: GenerateStats,
}

impl<'a, W: Write> Writer<'a, W> {
    pub(super) fn new(args: &GenerateArgs, catalog: Catalog, out: &'a mut W) -> Self {
        let kafka = (args.partitions > 0).then(|| Kafka {
            rng: stream(args.seed, 4),
            offsets: vec![0; args.partitions as usize],
            last_ts: vec![0; args.partitions as usize],
        });
        Self {
            out,
            buf: Vec::with_capacity(FLUSH_AT + 4096),
            rec: Vec::with_capacity(1024),
            format: args.format,
            catalog,
            malformed_p: (args.malformed_pct / 100.0).min(0.99),
            malformed_rng: stream(args.seed, 5),
            context_rng: stream(args.seed, 6),
            kafka,
            stats: GenerateStats::default(),
        }
    }

    pub(super) fn record(&mut self, rec: &Rec, people: &People) -> io::Result<()> {
        match rec.what {
            What::Update(update) => self.profile(rec.user, rec.ts, Body::Update(update)),
            what => {
                self.malformed(rec.user, rec.ts, what)?;
                let (fmt, catalog) = (self.format, self.catalog);
                let context = (fmt == Format::Segment && self.context_rng.u8(..5) == 0)
                    .then(|| (rec.app, people.dev[rec.user as usize]));
                self.begin();
                render_event(self.target(), fmt, catalog, rec, Mangle::None, context);
                self.stats.events += 1;
                self.end(rec.user, rec.ts, true)
            }
        }
    }

    pub(super) fn profile(&mut self, user: u32, ts: u64, body: Body<'_>) -> io::Result<()> {
        self.malformed(user, ts, What::Launched)?;
        let fmt = self.format;
        self.begin();
        render_profile(self.target(), fmt, user, ts, body);
        self.stats.profiles += 1;
        self.end(user, ts, true)
    }

    /// Before each valid line, a geometric number of malformed ones: their share of all lines
    /// is `malformed_p`. They copy the user and time of the line that follows.
    fn malformed(&mut self, user: u32, ts: u64, what: What) -> io::Result<()> {
        while self.malformed_p > 0.0 && self.malformed_rng.f64() < self.malformed_p {
            let kind = self.malformed_rng.u8(..6);
            let cut = self.malformed_rng.f64();
            let (fmt, catalog) = (self.format, self.catalog);
            let rec = Rec {
                ts,
                user,
                app: 0,
                what,
            };
            let start = self.begin();
            let buf = self.target();
            let mangle = match kind {
                1 => Mangle::NoUser,
                2 => Mangle::NoEvent,
                3 => Mangle::BadTs,
                5 => Mangle::BadUtf8,
                _ => Mangle::None,
            };
            match kind {
                0 => {
                    // A strict, non-empty prefix of an object is never valid JSON.
                    render_event(buf, fmt, catalog, &rec, mangle, None);
                    let len = buf.len() - start;
                    let mut at = start + 1 + ((len - 1) as f64 * cut) as usize;
                    while at > start + 1 && (buf[at] & 0xC0) == 0x80 {
                        at -= 1; // keep the prefix valid UTF-8
                    }
                    buf.truncate(at);
                }
                4 => {
                    buf.extend_from_slice(b"[");
                    push_user(buf, user);
                    buf.push(b',');
                    push_str(buf, what.name());
                    buf.push(b',');
                    push_u64(buf, ts);
                    buf.push(b']');
                }
                _ => render_event(buf, fmt, catalog, &rec, mangle, None),
            }
            self.stats.malformed += 1;
            self.end(user, ts, mangle != Mangle::BadUtf8)?;
        }
        Ok(())
    }

    fn target(&mut self) -> &mut Vec<u8> {
        if self.kafka.is_some() {
            &mut self.rec
        } else {
            &mut self.buf
        }
    }

    /// Starts a line; returns where it starts in [`Self::target`].
    fn begin(&mut self) -> usize {
        self.rec.clear();
        self.target().len()
    }

    /// Ends a line: wraps it in an envelope when asked to (and in envelope mode), adds the
    /// newline, and writes out a full buffer.
    fn end(&mut self, user: u32, ts: u64, envelope: bool) -> io::Result<()> {
        if let Some(kafka) = &mut self.kafka {
            if envelope {
                push_envelope(&mut self.buf, kafka, user, ts, &self.rec);
            } else {
                self.buf.extend_from_slice(&self.rec);
            }
        }
        self.buf.push(b'\n');
        self.stats.lines += 1;
        if self.buf.len() >= FLUSH_AT {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    pub(super) fn finish(self) -> io::Result<GenerateStats> {
        self.out.write_all(&self.buf)?;
        self.out.flush()?;
        Ok(self.stats)
    }
}

// === rendering ===

fn render_event(
    buf: &mut Vec<u8>,
    fmt: Format,
    catalog: Catalog,
    rec: &Rec,
    mangle: Mangle,
    context: Option<(u8, UserDevice)>,
) {
    let start = buf.len();
    buf.push(b'{');
    let (user_key, name_key, props_key) = match fmt {
        Format::Native => ("user_id", "event", "props"),
        Format::Segment => ("userId", "event", "properties"),
        Format::Clevertap => ("identity", "evtName", "evtData"),
    };
    if fmt == Format::Segment {
        str_field(buf, "type", "track");
    }
    if mangle != Mangle::NoUser {
        push_key(buf, user_key);
        push_user(buf, rec.user);
        buf.push(b',');
    }
    if mangle != Mangle::NoEvent {
        push_key(buf, name_key);
        push_str(buf, rec.what.name());
        if mangle == Mangle::BadUtf8 {
            buf.pop(); // the closing quote: put raw 0xff 0xfe inside the string
            buf.extend_from_slice(&[0xff, 0xfe, b'"']);
        }
        buf.push(b',');
    }
    if fmt != Format::Clevertap {
        ts_field(buf, fmt, rec.ts, mangle == Mangle::BadTs);
    }
    push_key(buf, props_key);
    push_props(buf, catalog, rec.what);
    buf.push(b',');
    if fmt == Format::Clevertap {
        ts_field(buf, fmt, rec.ts, mangle == Mangle::BadTs);
    }
    if let Some((app, dev)) = context {
        let (make, model, os, os_versions) = DEVICES[dev.device as usize];
        push_key(buf, "context");
        buf.extend_from_slice(b"{\"app\":{\"version\":");
        push_str(buf, APP_VERSIONS[app as usize]);
        buf.extend_from_slice(b"},\"os\":{\"name\":");
        push_str(buf, os);
        buf.extend_from_slice(b",\"version\":");
        push_str(buf, os_versions[dev.os as usize]);
        buf.extend_from_slice(b"},\"device\":{\"id\":");
        push_device(buf, rec.user);
        buf.extend_from_slice(b",\"manufacturer\":");
        push_str(buf, make);
        buf.extend_from_slice(b",\"model\":");
        push_str(buf, model);
        buf.extend_from_slice(b"}},");
    }
    close(buf, start);
}

fn push_props(buf: &mut Vec<u8>, catalog: Catalog, what: What) {
    let start = buf.len();
    buf.push(b'{');
    match what {
        What::Launched | What::Update(_) => {}
        What::Viewed { product } => product_fields(buf, catalog, product),
        What::Carted { product, qty } => {
            product_fields(buf, catalog, product);
            u64_field(buf, "quantity", u64::from(qty));
        }
        What::Checkout { cents, qty } | What::Charged { cents, qty } => {
            push_key(buf, "amount");
            push_cents(buf, cents);
            buf.push(b',');
            u64_field(buf, "items", u64::from(qty));
            str_field(buf, "currency", "USD");
        }
    }
    close(buf, start);
}

fn product_fields(buf: &mut Vec<u8>, catalog: Catalog, product: u32) {
    let (category, cents) = catalog.item(product);
    buf.extend_from_slice(b"\"product_id\":\"p");
    push_u64(buf, u64::from(product));
    buf.extend_from_slice(b"\",\"sku\":\"SKU-");
    push_u64(buf, u64::from(product));
    buf.extend_from_slice(b"\",");
    str_field(buf, "category", category);
    push_key(buf, "price");
    push_cents(buf, cents);
    buf.push(b',');
    str_field(buf, "currency", "USD");
}

fn render_profile(buf: &mut Vec<u8>, fmt: Format, user: u32, ts: u64, body: Body<'_>) {
    let start = buf.len();
    buf.push(b'{');
    // Records that set app fields name the user's device (DESIGN.md §3a).
    let sets_app = matches!(body, Body::Full(_) | Body::Update(Update::AppVersion(_)));
    let props_key = match fmt {
        Format::Native => {
            push_key(buf, "user_id");
            push_user(buf, user);
            buf.push(b',');
            str_field(buf, "type", "profile");
            ts_field(buf, fmt, ts, false);
            if sets_app {
                push_key(buf, "device_id");
                push_device(buf, user);
                buf.push(b',');
            }
            "props"
        }
        Format::Segment => {
            str_field(buf, "type", "identify");
            push_key(buf, "userId");
            push_user(buf, user);
            buf.push(b',');
            ts_field(buf, fmt, ts, false);
            if sets_app {
                buf.extend_from_slice(b"\"context\":{\"device\":{\"id\":");
                push_device(buf, user);
                buf.extend_from_slice(b"}},");
            }
            "traits"
        }
        Format::Clevertap => {
            push_key(buf, "identity");
            push_user(buf, user);
            buf.push(b',');
            str_field(buf, "type", "profile");
            ts_field(buf, fmt, ts, false);
            if sets_app {
                // The CleverTap ID: the device's id.
                push_key(buf, "objectId");
                push_device(buf, user);
                buf.push(b',');
            }
            "profileData"
        }
    };
    push_key(buf, props_key);
    let props = buf.len();
    buf.push(b'{');
    let ct = fmt == Format::Clevertap;
    match body {
        Body::Full(p) => {
            if !p.email.is_empty() {
                str_field(buf, if ct { "Email" } else { "email" }, &p.email);
            }
            if !p.phone.is_empty() {
                str_field(buf, if ct { "Phone" } else { "phone" }, &p.phone);
            }
            u64_field(buf, if ct { "Age" } else { "age" }, u64::from(p.age));
            let (gender, ct_gender) = GENDERS[p.gender as usize];
            if ct {
                str_field(buf, "Gender", ct_gender);
            } else {
                str_field(buf, "gender", gender);
            }
            location_fields(buf, fmt, p.loc);
            let (make, model, _, os_versions) = DEVICES[p.dev.device as usize];
            str_field(buf, "device_make", make);
            str_field(buf, "device_model", model);
            str_field(buf, "os_version", os_versions[p.dev.os as usize]);
            str_field(buf, "app_version", APP_VERSIONS[p.dev.app as usize]);
            str_field(buf, "sdk_version", SDK_VERSIONS[p.sdk as usize]);
            if ct {
                bool_field(buf, "MSG-email", !p.email_unsubscribed);
            } else {
                bool_field(buf, "email_unsubscribed", p.email_unsubscribed);
            }
            str_field(buf, "plan", PLANS[p.plan as usize]);
        }
        Body::Update(Update::Location(loc)) => location_fields(buf, fmt, loc),
        Body::Update(Update::AppVersion(app)) => {
            str_field(buf, "app_version", APP_VERSIONS[app as usize]);
        }
        Body::Update(Update::Unset(field)) => {
            let key = match (field, ct) {
                (Nullable::Email, false) => "email",
                (Nullable::Email, true) => "Email",
                (Nullable::Phone, false) => "phone",
                (Nullable::Phone, true) => "Phone",
                (Nullable::Plan, _) => "plan",
            };
            push_key(buf, key);
            buf.extend_from_slice(b"null,");
        }
    }
    close(buf, props);
    buf.push(b',');
    close(buf, start);
}

/// Always the whole consistent triple; Segment nests it as `address` with `state`.
fn location_fields(buf: &mut Vec<u8>, fmt: Format, loc: u8) {
    let l = &LOCATIONS[loc as usize];
    match fmt {
        Format::Native => {
            str_field(buf, "country", l.country);
            str_field(buf, "region", l.region);
            str_field(buf, "city", l.city);
        }
        Format::Segment => {
            push_key(buf, "address");
            let start = buf.len();
            buf.push(b'{');
            str_field(buf, "country", l.country);
            str_field(buf, "state", l.region);
            str_field(buf, "city", l.city);
            close(buf, start);
            buf.push(b',');
        }
        Format::Clevertap => {
            str_field(buf, "Country", l.country);
            str_field(buf, "Region", l.region);
            str_field(buf, "City", l.city);
        }
    }
}

/// `{"topic":"events","partition":P,"offset":O,"tstype":"create","ts":…,"broker":0,"key":…,
/// "payload":…}` as `kcat -C -J` prints it.
fn push_envelope(buf: &mut Vec<u8>, kafka: &mut Kafka, user: u32, ts: u64, payload: &[u8]) {
    let (id, len) = user_id(user);
    let partition = (fnv1a64(&id[..len]) % kafka.offsets.len() as u64) as usize;
    let offset = kafka.offsets[partition];
    kafka.offsets[partition] += 1;
    let kafka_ts = (ts + kafka.rng.u64(..=50)).max(kafka.last_ts[partition]);
    kafka.last_ts[partition] = kafka_ts;
    buf.extend_from_slice(b"{\"topic\":\"events\",\"partition\":");
    push_u64(buf, partition as u64);
    buf.extend_from_slice(b",\"offset\":");
    push_u64(buf, offset);
    buf.extend_from_slice(b",\"tstype\":\"create\",\"ts\":");
    push_u64(buf, kafka_ts);
    buf.extend_from_slice(b",\"broker\":0,\"key\":\"");
    buf.extend_from_slice(&id[..len]);
    buf.extend_from_slice(b"\",\"payload\":");
    push_json_string(buf, payload);
    buf.push(b'}');
}
/// `"ts":ms` (native), `"timestamp":"…Z"` (Segment) or `"ts":seconds` (CleverTap).
fn ts_field(buf: &mut Vec<u8>, fmt: Format, ts: u64, bad: bool) {
    push_key(
        buf,
        if fmt == Format::Segment {
            "timestamp"
        } else {
            "ts"
        },
    );
    if bad {
        buf.extend_from_slice(b"\"yesterday\"");
    } else {
        match fmt {
            Format::Native => push_u64(buf, ts),
            Format::Segment => {
                buf.push(b'"');
                push_iso_ms(buf, ts);
                buf.push(b'"');
            }
            Format::Clevertap => push_u64(buf, ts / 1000),
        }
    }
    buf.push(b',');
}

// === hashing ===

/// FNV-1a 64: the stable partitioner of generated envelopes.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
