//! A campaign's report (DESIGN §9): exported against control users, their conversions and
//! revenue, and the lift of the conversion rate with its Katz 95 % interval.
//!
//! The activate stage keeps a [`Tally`] per campaign; [`Tally::report`] turns it into the
//! [`Report`] that `summary.json` (`campaigns.ID.report`), `replay`'s table and the admin API
//! show. Rates, lift and interval are rounded to 4 decimals, revenue to 6 (float noise).

use serde::{Deserialize, Serialize};

/// One figure for the exported and the control group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Groups<T> {
    pub exported: T,
    pub control: T,
}

/// What the report is computed from: distinct users per group, those of them who converted,
/// and the revenue of their conversions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub users: Groups<u64>,
    pub converted: Groups<u64>,
    pub revenue: Groups<f64>,
}

/// One UTC day of a campaign: users whose latest qualification fell on it (exported or
/// control), and conversions on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCount {
    pub qualified: u64,
    pub converted: u64,
}

/// A campaign's days, by days since the Unix epoch (UTC).
pub type Daily = std::collections::BTreeMap<i32, DayCount>;

/// The UTC day of `ts` (days since the Unix epoch).
pub fn day_of(ts: i64) -> i32 {
    i32::try_from(ts.div_euclid(86_400_000)).unwrap_or(if ts < 0 { i32::MIN } else { i32::MAX })
}

/// Adds `o`'s days to `into`.
pub fn add_daily(into: &mut Daily, o: &Daily) {
    for (d, c) in o {
        let e = into.entry(*d).or_default();
        e.qualified += c.qualified;
        e.converted += c.converted;
    }
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.users.exported += o.users.exported;
        self.users.control += o.users.control;
        self.converted.exported += o.converted.exported;
        self.converted.control += o.converted.control;
        self.revenue.exported += o.revenue.exported;
        self.revenue.control += o.revenue.control;
    }
}

/// `campaigns.ID.report` of `summary.json`, and `GET /api/v1/campaigns/{id}/report`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    pub users: Groups<u64>,
    pub converted: Groups<u64>,
    /// converted / users; null when the group has no user.
    pub rate: Groups<Option<f64>>,
    /// Sum of `goal.revenue_prop` over the converting goal events (0 without it).
    pub revenue: Groups<f64>,
    /// rate(exported) / rate(control) − 1; null while either group has no conversion.
    pub lift: Option<f64>,
    /// The Katz log interval of the rate ratio, minus 1.
    pub lift_ci95: Option<[f64; 2]>,
    /// The audience's size as TikTok reports it (0 below 1,000 matched users); null when
    /// not known (a dry run).
    pub audience_size: Option<u64>,
}

fn round(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f).round() / f
}

fn rate(converted: u64, users: u64) -> Option<f64> {
    (users > 0).then(|| converted as f64 / users as f64)
}

impl Tally {
    pub fn report(&self, audience_size: Option<u64>) -> Report {
        let (n1, c1) = (self.users.exported, self.converted.exported);
        let (n2, c2) = (self.users.control, self.converted.control);
        let r1 = rate(c1, n1);
        let r2 = rate(c2, n2);
        let (lift, lift_ci95) = match (r1, r2) {
            (Some(r1), Some(r2)) if c1 > 0 && c2 > 0 => {
                let rr = r1 / r2;
                let (c1, n1, c2, n2) = (c1 as f64, n1 as f64, c2 as f64, n2 as f64);
                let se = (1.0 / c1 - 1.0 / n1 + 1.0 / c2 - 1.0 / n2).max(0.0).sqrt();
                let lo = (rr.ln() - 1.96 * se).exp() - 1.0;
                let hi = (rr.ln() + 1.96 * se).exp() - 1.0;
                (Some(round(rr - 1.0, 4)), Some([round(lo, 4), round(hi, 4)]))
            }
            _ => (None, None),
        };
        Report {
            users: self.users,
            converted: self.converted,
            rate: Groups {
                exported: r1.map(|r| round(r, 4)),
                control: r2.map(|r| round(r, 4)),
            },
            revenue: Groups {
                exported: round(self.revenue.exported, 6),
                control: round(self.revenue.control, 6),
            },
            lift,
            lift_ci95,
            audience_size,
        }
    }
}

impl Report {
    /// The report as lines under `replay`'s table.
    pub fn lines(&self, campaign: &str) -> Vec<String> {
        let pct =
            |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{:.2}%", r * 100.0));
        let mut v = vec![format!(
            "{campaign}: exported {} users, {} converted ({}), revenue {:.2}; control {} users, \
             {} converted ({}), revenue {:.2}",
            self.users.exported,
            self.converted.exported,
            pct(self.rate.exported),
            self.revenue.exported,
            self.users.control,
            self.converted.control,
            pct(self.rate.control),
            self.revenue.control,
        )];
        let lift = match (self.lift, self.lift_ci95) {
            (Some(l), Some([lo, hi])) => format!(
                "lift {:+.2}% (95% CI {:+.2}% to {:+.2}%)",
                l * 100.0,
                lo * 100.0,
                hi * 100.0
            ),
            _ => "lift - (a group has no conversion)".to_owned(),
        };
        let size = self.audience_size.map_or_else(
            || "audience size at TikTok -".to_owned(),
            |s| format!("audience size at TikTok {s}"),
        );
        v.push(format!("  {lift}; {size}"));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(n1: u64, c1: u64, n2: u64, c2: u64) -> Tally {
        Tally {
            users: Groups {
                exported: n1,
                control: n2,
            },
            converted: Groups {
                exported: c1,
                control: c2,
            },
            revenue: Groups::default(),
        }
    }

    /// DESIGN §9's example: 83 of 300 against 25 of 82.
    #[test]
    fn the_design_example_gives_its_figures() {
        let r = tally(300, 83, 82, 25).report(None);
        assert_eq!(r.rate.exported, Some(0.2767));
        assert_eq!(r.rate.control, Some(0.3049));
        assert_eq!(r.lift, Some(-0.0925));
        assert_eq!(r.lift_ci95, Some([-0.376, 0.3198]));
    }

    #[test]
    fn no_lift_while_a_group_has_no_conversion_or_no_user() {
        for t in [tally(10, 0, 10, 2), tally(10, 2, 10, 0), tally(10, 2, 0, 0)] {
            let r = t.report(None);
            assert_eq!((r.lift, r.lift_ci95), (None, None), "{t:?}");
        }
        assert_eq!(tally(0, 0, 5, 1).report(None).rate.exported, None);
    }

    #[test]
    fn the_interval_contains_the_lift_and_narrows_with_more_users() {
        let small = tally(100, 20, 100, 10).report(None);
        let big = tally(10_000, 2_000, 10_000, 1_000).report(None);
        assert_eq!(small.lift, Some(1.0));
        assert_eq!(big.lift, Some(1.0));
        let [lo, hi] = small.lift_ci95.unwrap();
        let [blo, bhi] = big.lift_ci95.unwrap();
        assert!(lo < 1.0 && 1.0 < hi);
        assert!(lo < blo && bhi < hi, "{small:?} {big:?}");
    }
}
