//! Who the users are: the static tables (locations, devices, names, app versions) and each
//! user's initial profile and rare profile updates, drawn from their own RNG stream.
//!
//! Only a user's device and app version are kept after its initial profile ([`UserDevice`]);
//! the profile itself is rebuilt in place for each user, so memory stays one small struct a user.

use fastrand::Rng;

// === tables ===

pub(super) struct Location {
    pub(super) country: &'static str,
    pub(super) region: &'static str,
    pub(super) city: &'static str,
    /// phone number style
    dial: Dial,
    /// relative share of users
    weight: u32,
}

#[derive(Clone, Copy)]
enum Dial {
    Us,
    Uk,
    De,
    Fr,
    In,
    Br,
    Jp,
    Es,
    Mx,
}

macro_rules! locations {
    ($(($country:literal, $region:literal, $city:literal, $dial:ident, $weight:literal)),+ $(,)?) => {
        [$(Location { country: $country, region: $region, city: $city, dial: Dial::$dial, weight: $weight }),+]
    };
}

#[rustfmt::skip]
pub(super) static LOCATIONS: [Location; 15] = locations![
    ("United States", "California", "San Francisco", Us, 12),
    ("United States", "New York", "New York", Us, 10),
    ("United States", "Texas", "Austin", Us, 6),
    ("United Kingdom", "England", "London", Uk, 8),
    ("United Kingdom", "Scotland", "Edinburgh", Uk, 3),
    ("Germany", "Berlin", "Berlin", De, 6),
    ("Germany", "Bayern", "München", De, 4),
    ("France", "Île-de-France", "Paris", Fr, 5),
    ("India", "Maharashtra", "Mumbai", In, 8),
    ("India", "Karnataka", "Bengaluru", In, 6),
    ("Brazil", "São Paulo", "São Paulo", Br, 6),
    ("Japan", "Tōkyō", "Tokyo", Jp, 4),
    ("Canada", "Québec", "Montréal", Us, 4),
    ("Spain", "Catalunya", "Barcelona", Es, 4),
    ("Mexico", "Ciudad de México", "Ciudad de México", Mx, 4),
];

/// (make, model, OS name, OS versions)
pub(super) type Device = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
);

#[rustfmt::skip]
pub(super) static DEVICES: [Device; 9] = [
    ("Apple", "iPhone15,2", "iOS", &["17.1.2", "17.4.1"]),
    ("Apple", "iPhone14,5", "iOS", &["16.6.1", "17.1.2"]),
    ("Apple", "iPhone16,1", "iOS", &["17.4.1", "18.0"]),
    ("samsung", "SM-S918B", "Android", &["14", "13"]),
    ("samsung", "SM-A546B", "Android", &["14", "13"]),
    ("Google", "Pixel 8", "Android", &["14"]),
    ("Google", "Pixel 7a", "Android", &["14", "13"]),
    ("Xiaomi", "2201117TG", "Android", &["13", "12"]),
    ("OnePlus", "CPH2449", "Android", &["14"]),
];

/// Oldest first: an upgrade moves a user to a later entry. "5.10.x" sorts after "5.9.x" only as
/// dotted versions, which is the point.
#[rustfmt::skip]
pub(super) static APP_VERSIONS: [&str; 7] = ["5.8.2", "5.9.0", "5.9.1", "5.10.0", "5.10.1", "6.0", "6.1.0"];
pub(super) static SDK_VERSIONS: [&str; 4] = ["4.2.0", "4.3.1", "5.0.2", "5.1.0"];
static FIRST_NAMES: [&str; 16] = [
    "jane", "john", "maria", "li", "ahmed", "sofia", "lukas", "priya", "yuki", "carlos", "emma",
    "noah", "fatima", "ivan", "chloe", "arjun",
];
static LAST_NAMES: [&str; 16] = [
    "doe", "smith", "garcia", "wang", "khan", "rossi", "muller", "patel", "tanaka", "silva",
    "martin", "brown", "ali", "petrov", "dubois", "sharma",
];
#[rustfmt::skip]
static DOMAINS: [&str; 6] =
    ["example.com", "mail.example.org", "example.net", "shop.example", "example.co.uk", "test.example"];
pub(super) static GENDERS: [(&str, &str); 3] = [("male", "M"), ("female", "F"), ("other", "O")];
pub(super) static PLANS: [&str; 3] = ["free", "plus", "pro"];

// === profile records ===

#[derive(Clone, Copy)]
pub(super) enum Update {
    Location(u8),
    AppVersion(u8),
    Unset(Nullable),
}

#[derive(Clone, Copy)]
pub(super) enum Nullable {
    Email,
    Phone,
    Plan,
}

/// Device and app of a user: the only per-user state kept after the initial profile.
#[derive(Clone, Copy, Default)]
pub(super) struct UserDevice {
    pub(super) device: u8,
    pub(super) os: u8,
    pub(super) app: u8,
}

/// The initial profile of one user, rebuilt in place for each user.
#[derive(Default)]
pub(super) struct Profile {
    /// empty = absent
    pub(super) email: String,
    /// empty = absent
    pub(super) phone: String,
    pub(super) age: u8,
    pub(super) gender: u8,
    pub(super) loc: u8,
    pub(super) sdk: u8,
    pub(super) dev: UserDevice,
    pub(super) email_unsubscribed: bool,
    pub(super) plan: u8,
}

pub(super) enum Body<'a> {
    Full(&'a Profile),
    Update(Update),
}

// === impl People ===

/// Profiles: the initial one of each user and the rare updates.
pub(super) struct People {
    rng: Rng,
    pub(super) dev: Vec<UserDevice>,
    pub(super) profile: Profile,
}

impl People {
    pub(super) fn new(rng: Rng, users: u32) -> Self {
        let dev = vec![UserDevice::default(); users as usize];
        Self {
            rng,
            dev,
            profile: Profile::default(),
        }
    }

    pub(super) fn initial(&mut self, user: u32) {
        let r = &mut self.rng;
        let loc = pick_location(r);
        let device = r.u8(..DEVICES.len() as u8);
        let os = r.u8(..DEVICES[device as usize].3.len() as u8);
        // The newest version is only reached by upgrading.
        let dev = UserDevice {
            device,
            os,
            app: r.u8(..APP_VERSIONS.len() as u8 - 1),
        };
        self.dev[user as usize] = dev;
        let p = &mut self.profile;
        p.email.clear();
        p.phone.clear();
        if r.u8(..100) < 85 {
            push_email(&mut p.email, r);
        }
        if r.u8(..100) < 70 {
            push_phone(&mut p.phone, r, LOCATIONS[loc as usize].dial);
        }
        p.age = r.u8(16..=80);
        p.gender = match r.u8(..100) {
            0..=47 => 0,
            48..=95 => 1,
            _ => 2,
        };
        p.loc = loc;
        p.sdk = r.u8(..SDK_VERSIONS.len() as u8);
        p.dev = dev;
        p.email_unsubscribed = r.u8(..100) < 10;
        p.plan = match r.u8(..100) {
            0..=69 => 0,
            70..=89 => 1,
            _ => 2,
        };
    }

    /// About one record in a hundred is a profile update.
    pub(super) fn wants_update(&mut self) -> bool {
        self.rng.u8(..100) == 0
    }

    pub(super) fn update(&mut self, user: u32) -> Update {
        let r = &mut self.rng;
        let dev = &mut self.dev[user as usize];
        let latest = APP_VERSIONS.len() as u8 - 1;
        match r.u8(..10) {
            4..=7 if dev.app < latest => {
                dev.app = r.u8(dev.app + 1..=latest);
                Update::AppVersion(dev.app)
            }
            0..=7 => Update::Location(pick_location(r)),
            _ => Update::Unset([Nullable::Email, Nullable::Phone, Nullable::Plan][r.usize(..3)]),
        }
    }
}

fn pick_location(r: &mut Rng) -> u8 {
    let total: u32 = LOCATIONS.iter().map(|l| l.weight).sum();
    let mut x = r.u32(..total);
    for (i, l) in LOCATIONS.iter().enumerate() {
        if x < l.weight {
            return i as u8;
        }
        x -= l.weight;
    }
    0
}

/// "  Jane.Doe42@Example.COM " and friends; ~2% invalid (no `@`, or a space inside).
fn push_email(e: &mut String, r: &mut Rng) {
    let style = r.u8(..4);
    let broken = r.u8(..100) < 2;
    if r.u8(..4) == 0 {
        e.push_str("  ");
    }
    push_cased(e, FIRST_NAMES[r.usize(..FIRST_NAMES.len())], style);
    e.push(if broken && r.bool() { ' ' } else { '.' });
    push_cased(e, LAST_NAMES[r.usize(..LAST_NAMES.len())], style);
    let digits = r.usize(0..=2);
    push_digits(e, r, digits);
    e.push(if broken && !e.contains(' ') { '.' } else { '@' });
    let domain = DOMAINS[r.usize(..DOMAINS.len())];
    let (name, tld) = domain.rsplit_once('.').unwrap_or((domain, ""));
    push_cased(e, name, style);
    e.push('.');
    push_cased(e, tld, if style == 1 { 2 } else { style });
    if r.u8(..4) == 0 {
        e.push(' ');
    }
}

/// style: 0 and 3 lower case, 1 capitalised, 2 upper case.
fn push_cased(e: &mut String, piece: &str, style: u8) {
    match style {
        1 => {
            let mut chars = piece.chars();
            if let Some(c) = chars.next() {
                e.push(c.to_ascii_uppercase());
                e.push_str(chars.as_str());
            }
        }
        2 => e.extend(piece.chars().map(|c| c.to_ascii_uppercase())),
        _ => e.push_str(piece),
    }
}

fn push_digits(s: &mut String, r: &mut Rng, n: usize) {
    for _ in 0..n {
        s.push(r.digit(10));
    }
}

/// A national format matching the user's country; 5% lack a country code (invalid on purpose).
fn push_phone(p: &mut String, r: &mut Rng, dial: Dial) {
    // (prefix, digit groups, separator between groups)
    let (prefix, groups, sep): (&str, &[usize], char) = if r.u8(..100) < 5 {
        p.push('(');
        p.push(char::from(b'2' + r.u8(..8)));
        push_digits(p, r, 2);
        (") 555-", &[4], ' ')
    } else {
        match dial {
            Dial::Us => ("+1 ", &[3, 3, 4], '-'),
            Dial::Uk => ("+44 20 ", &[4, 4], ' '),
            Dial::De => ("0049 30 ", &[7], ' '),
            Dial::Fr => ("+33.", &[1, 2, 2, 2, 2], '.'),
            Dial::In => ("+91 9", &[4, 5], ' '),
            Dial::Br => ("+55 11 9", &[4, 4], '-'),
            Dial::Jp => ("+81 3-", &[4, 4], '-'),
            Dial::Es => ("+34 6", &[2, 2, 2, 2], ' '),
            Dial::Mx => ("+52 55 ", &[4, 4], ' '),
        }
    };
    p.push_str(prefix);
    for (i, &n) in groups.iter().enumerate() {
        if i > 0 {
            p.push(sep);
        }
        push_digits(p, r, n);
    }
}
