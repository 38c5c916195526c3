//! The console's pages (maud: HTML checked at compile time, every value escaped).

use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde_json::Value;

use super::form::{Form, APP_ROWS, CUSTOM_ROWS, PAST_ROWS, TRIGGER_ROWS, WEEKDAYS};
use super::{Choices, Outcome};

const STYLE: &str = r#"
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
header{background:#1d2330;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:1rem;align-items:center}
header a,header button{color:#fff;background:none;border:0;font:inherit;text-decoration:underline;cursor:pointer;padding:0}
header .brand{font-weight:700;text-decoration:none;margin-right:auto}
main{max-width:1200px;margin:0 auto;padding:1rem}
h1{font-size:1.4rem;margin:.2rem 0 1rem}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.45rem .5rem;border-bottom:1px solid #e2e5ea;vertical-align:top}
th{font-size:.85rem;color:#555}
.num{text-align:right;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto}
fieldset{background:#fff;border:1px solid #d8dce3;border-radius:6px;margin:0 0 1rem;padding:.8rem 1rem}
legend{font-weight:700;font-size:1.1rem;padding:0 .3rem}
fieldset fieldset{border-style:dashed}
fieldset fieldset legend{font-size:.95rem}
.row{display:flex;flex-wrap:wrap;gap:.6rem 1rem;margin:.3rem 0}
.field{display:flex;flex-direction:column;min-width:10rem;flex:1 1 12rem}
.field.narrow{flex:0 1 7rem;min-width:6rem}
label{font-size:.85rem;color:#333}
input,select,textarea{font:inherit;padding:.35rem .4rem;border:1px solid #b9bfca;border-radius:4px;background:#fff;min-width:0}
input:focus,select:focus,textarea:focus,button:focus,a:focus{outline:3px solid #5b8def;outline-offset:1px}
.check{flex-direction:row;align-items:center;gap:.35rem;flex:0 0 auto}
.error{color:#a11;font-size:.85rem;margin:.2rem 0 0}
.problems{background:#fde8e8;border:1px solid #e5a3a3;padding:.6rem 1rem;border-radius:6px}
.notice{background:#eaf2fd;border:1px solid #a9c4ee;padding:.6rem 1rem;border-radius:6px}
.hint{font-size:.8rem;color:#666}
button.primary,.button{background:#2456c9;color:#fff;border:0;border-radius:4px;padding:.5rem .9rem;font:inherit;cursor:pointer;text-decoration:none;display:inline-block}
button.secondary{background:#e6e9ef;color:#1d2330;border:0;border-radius:4px;padding:.5rem .9rem;font:inherit;cursor:pointer}
.actions{display:flex;flex-wrap:wrap;gap:.4rem}
.actions form{margin:0}
.actions button{padding:.25rem .6rem;font-size:.85rem}
.filters{display:flex;flex-wrap:wrap;gap:.5rem;margin:0 0 1rem}
.filters a{padding:.2rem .6rem;border-radius:1rem;background:#e6e9ef;color:#1d2330;text-decoration:none}
.filters a[aria-current]{background:#2456c9;color:#fff}
pre{background:#1d2330;color:#e9edf5;padding:.8rem;border-radius:6px;overflow-x:auto;font-size:.85rem}
.cards{display:flex;flex-wrap:wrap;gap:1rem;margin:0 0 1rem}
.card{background:#fff;border:1px solid #d8dce3;border-radius:6px;padding:.7rem 1rem;flex:1 1 12rem}
.card b{display:block;font-size:1.4rem}
@media (max-width:600px){main{padding:.5rem}.field{flex-basis:100%}th,td{padding:.35rem}}
"#;

/// Updates the description's counter as it is typed (the page works without it).
const SCRIPT: &str = r#"
document.querySelectorAll('[data-count]').forEach(function(t){
 var out=document.getElementById(t.dataset.count);var max=+t.dataset.max;
 function upd(){var n=t.value.length;out.textContent=n+' / '+max;out.style.color=n>max?'#a11':'';}
 t.addEventListener('input',upd);upd();});
"#;

fn page(title: &str, csrf: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · remarket" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    a.brand href="/" { "remarket" }
                    @if let Some(csrf) = csrf {
                        a href="/" { "Campaigns" }
                        a href="/campaigns/new" { "New campaign" }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    }
}

pub fn message(title: &str, text: &str) -> Markup {
    page(
        title,
        None,
        html! { h1 { (title) } p { (text) } p { a href="/" { "Back to the campaigns" } } },
    )
}

pub fn login(error: Option<&str>, csrf: &str) -> Markup {
    page(
        "Log in",
        None,
        html! {
            h1 { "Log in" }
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf);
                fieldset {
                    legend { "Admin token" }
                    @if let Some(e) = error { p.error role="alert" { (e) } }
                    div.field {
                        label for="token" { "The token of " code { "[http] admin_token_file" } }
                        input #token type="password" name="token" autocomplete="current-password" required autofocus;
                    }
                    p { button.primary type="submit" { "Log in" } }
                }
            }
        },
    )
}

fn num(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::Number(n) => n.to_string(),
        x => x.to_string(),
    }
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or("—".into(), |x| format!("{:.1} %", x * 100.0))
}

pub fn list(rows: &[(Value, Option<Value>, Option<String>)], state: &str, csrf: &str) -> Markup {
    let states = ["", "draft", "scheduled", "running", "completed", "stopped"];
    page(
        "Campaigns",
        Some(csrf),
        html! {
            h1 { "Campaigns" }
            nav.filters aria-label="Filter by state" {
                @for s in states {
                    @let href = if s.is_empty() { "/".to_owned() } else { format!("/?state={s}") };
                    @let label = if s.is_empty() { "all" } else { s };
                    @if s == state { a href=(href) aria-current="page" { (label) } }
                    @else { a href=(href) { (label) } }
                }
            }
            div.scroll {
                table {
                    thead { tr {
                        th { "Id" } th { "Name" } th { "Type" } th { "State" }
                        th.num { "Exported" } th.num { "Control" } th.num { "Conversions" }
                        th.num { "Audience at TikTok" } th { "Last qualified (UTC)" } th { "Actions" }
                    } }
                    tbody {
                        @if rows.is_empty() { tr { td colspan="10" { "No campaigns" @if !state.is_empty() { " in state " (state) } "." } } }
                        @for (v, r, last) in rows {
                            @let id = v["id"].as_str().unwrap_or("");
                            @let st = v["state"].as_str().unwrap_or("");
                            tr {
                                td { code { (id) } }
                                td { (v["name"].as_str().unwrap_or("")) }
                                td { (v["type"].as_str().unwrap_or("")) }
                                td { (st) @if v["managed_by"] == "config" { br; span.hint { "config file" } } }
                                @if let Some(r) = r {
                                    td.num { (num(&r["users"]["exported"])) }
                                    td.num { (num(&r["users"]["control"])) }
                                    td.num { (num(&(r["converted"]["exported"].as_u64().unwrap_or(0) + r["converted"]["control"].as_u64().unwrap_or(0)).into())) }
                                    td.num { (num(&r["audience_size"])) }
                                } @else {
                                    td.num { "—" } td.num { "—" } td.num { "—" } td.num { "—" }
                                }
                                td { (last.as_deref().map_or("—", |t| t.get(..16).unwrap_or(t)).replace('T', " ")) }
                                td { div.actions {
                                    a href={ "/campaigns/" (id) "/report" } { "Report" }
                                    a href={ "/campaigns/new?from=" (id) } { "Clone" }
                                    @if v["managed_by"] == "api" && st == "draft" {
                                        form method="post" action={ "/campaigns/" (id) "/publish" } {
                                            input type="hidden" name="csrf" value=(csrf);
                                            button.secondary type="submit" aria-label={ "Publish " (id) } { "Publish" }
                                        }
                                    }
                                    @if v["managed_by"] == "api" && (st == "scheduled" || st == "running") {
                                        form method="post" action={ "/campaigns/" (id) "/stop" } {
                                            input type="hidden" name="csrf" value=(csrf);
                                            button.secondary type="submit" aria-label={ "Stop " (id) } { "Stop" }
                                        }
                                    }
                                } }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// Problems of input `name`.
fn errors(out: &Outcome, name: &str) -> Markup {
    html! {
        @for (_, m) in out.problems.iter().filter(|(i, _)| i == name) {
            p.error id={ "err-" (name) } role="alert" { (m) }
        }
    }
}

fn text(f: &Form, out: &Outcome, name: &str, label: &str, hint: &str) -> Markup {
    input_of(f, out, name, label, hint, "text", "field")
}

fn input_of(
    f: &Form,
    out: &Outcome,
    name: &str,
    label: &str,
    hint: &str,
    kind: &str,
    class: &str,
) -> Markup {
    let bad = out.problems.iter().any(|(i, _)| i == name);
    html! {
        div class=(class) {
            label for=(name) { (label) }
            input id=(name) name=(name) type=(kind) value=(f.get(name))
                aria-invalid=[bad.then_some("true")]
                aria-describedby=[bad.then(|| format!("err-{name}"))];
            @if !hint.is_empty() { span.hint { (hint) } }
            (errors(out, name))
        }
    }
}

fn select(f: &Form, out: &Outcome, name: &str, label: &str, options: &[(&str, &str)]) -> Markup {
    html! {
        div.field {
            label for=(name) { (label) }
            select id=(name) name=(name) {
                @for (v, l) in options {
                    option value=(v) selected[f.get(name) == *v] { (l) }
                }
            }
            (errors(out, name))
        }
    }
}

fn check(f: &Form, name: &str, value: &str, label: &str) -> Markup {
    let id = format!("{name}-{value}");
    html! {
        div.field.check {
            input id=(id) type="checkbox" name=(name) value=(value) checked[f.has(name, value)];
            label for=(id) { (label) }
        }
    }
}

fn radio(f: &Form, name: &str, value: &str, label: &str) -> Markup {
    let id = format!("{name}-{value}");
    html! {
        div.field.check {
            input id=(id) type="radio" name=(name) value=(value) checked[f.get(name) == value];
            label for=(id) { (label) }
        }
    }
}

const OPS: [(&str, &str); 13] = [
    ("=", "="),
    ("!=", "≠"),
    (">", ">"),
    (">=", "≥"),
    ("<", "<"),
    ("<=", "≤"),
    ("between", "between (a, b)"),
    ("in", "is one of (a, b, …)"),
    ("not_in", "is none of"),
    ("contains", "contains"),
    ("starts_with", "starts with"),
    ("exists", "exists"),
    ("not_exists", "does not exist"),
];

/// A condition row: property, operator, value.
fn condition(f: &Form, out: &Outcome, row: &str, props: Option<&[&str]>, label: &str) -> Markup {
    let prop = format!("{row}_prop");
    let mut ops: Vec<(&str, &str)> = vec![("", "")];
    ops.extend(OPS);
    let mut opts: Vec<(&str, &str)> = vec![("", "—")];
    opts.extend(props.unwrap_or_default().iter().map(|p| (*p, *p)));
    html! {
        div.row role="group" aria-label=(label) {
            @if props.is_some() {
                (select(f, out, &prop, &format!("{label}: property"), &opts))
            } @else {
                (text(f, out, &prop, &format!("{label}: property"), ""))
            }
            (select(f, out, &format!("{row}_op"), "operator", &ops))
            (text(f, out, &format!("{row}_value"), "value", "lists: a, b"))
        }
    }
}

pub fn builder(f: &Form, out: &Outcome, choices: &Choices, csrf: &str) -> Markup {
    let (accounts, segments) = (&choices.accounts, &choices.segments);
    let mut account_opts: Vec<(String, String)> = vec![(String::new(), "—".into())];
    for a in accounts {
        let id = a["advertiser_id"].as_str().unwrap_or("").to_owned();
        let name = (a["name"].as_str())
            .or(a["configured_name"].as_str())
            .unwrap_or("");
        let ok = match a["ok"].as_bool() {
            Some(true) => "",
            Some(false) => " (token refused)",
            None => "",
        };
        account_opts.push((id.clone(), format!("{id} {name}{ok}")));
    }
    let account_opts: Vec<(&str, &str)> = account_opts
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let mut segment_opts: Vec<(String, String)> =
        vec![(String::new(), "none: the filters below".into())];
    for s in segments {
        let id = s["id"].as_str().unwrap_or("").to_owned();
        segment_opts.push((id.clone(), id));
    }
    let segment_opts: Vec<(&str, &str)> = segment_opts
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let top: Vec<&String> = (out.problems.iter())
        .filter(|(i, _)| i.is_empty())
        .map(|(_, m)| m)
        .collect();
    page(
        "New campaign",
        Some(csrf),
        html! {
            h1 { "New campaign" }
            @if let Some(n) = &out.notice { p.notice role="status" { (n) } }
            @if !out.problems.is_empty() {
                div.problems role="alert" {
                    p { b { (out.problems.len()) " problem(s)" } ", shown next to their fields." }
                    @if !top.is_empty() { ul { @for m in top { li { (m) } } } }
                }
            }
            form method="post" action="/campaigns/new" novalidate {
                input type="hidden" name="csrf" value=(csrf);
                fieldset {
                    legend { "1. Start" }
                    div.row {
                        (text(f, out, "id", "Campaign id", "letters, digits, - and _"))
                        (text(f, out, "name", "Name", ""))
                    }
                    div.row role="radiogroup" aria-label="Qualification" {
                        (radio(f, "kind", "live", "Live behaviour (a trigger event)"))
                        (radio(f, "kind", "past", "Past behaviour (on a schedule)"))
                    }
                    div.row { (select(f, out, "ad_account", "Ad account", &account_opts)) }
                    fieldset {
                        legend { "Conversion goal (optional)" }
                        div.row {
                            (text(f, out, "goal_event", "Goal event", "e.g. Charged"))
                            (input_of(f, out, "goal_within", "Within", "e.g. 7d", "text", "field narrow"))
                            (text(f, out, "goal_revenue_prop", "Revenue property", "e.g. amount"))
                        }
                    }
                }
                fieldset {
                    legend { "2. Who" }
                    div.row { (select(f, out, "segment", "Saved segment", &segment_opts)) }
                    fieldset {
                        legend { "Demographics" }
                        div.row {
                            (input_of(f, out, "age_min", "Age from", "", "number", "field narrow"))
                            (input_of(f, out, "age_max", "Age to", "", "number", "field narrow"))
                            (select(f, out, "gender", "Gender", &[("", "any"), ("female", "female"), ("male", "male"), ("other", "other")]))
                        }
                    }
                    fieldset {
                        legend { "Geography" }
                        div.row {
                            (text(f, out, "country", "Countries", "a, b"))
                            (text(f, out, "region", "Regions", "a, b"))
                            (text(f, out, "city", "Cities", "a, b"))
                        }
                    }
                    fieldset {
                        legend { "Reachability" }
                        div.row {
                            (check(f, "reach_email", "on", "has a valid email"))
                            (check(f, "reach_phone", "on", "has a valid phone"))
                            (check(f, "subscribed_email", "on", "not unsubscribed from email"))
                            (check(f, "subscribed_sms", "on", "not unsubscribed from SMS"))
                        }
                        (errors(out, "reach_email")) (errors(out, "reach_phone"))
                    }
                    fieldset {
                        legend { "User properties" }
                        @for i in 0..CUSTOM_ROWS { (condition(f, out, &format!("prop{i}"), None, &format!("User property {}", i + 1))) }
                    }
                    fieldset {
                        legend { "App fields (one device)" }
                        @for i in 0..APP_ROWS { (condition(f, out, &format!("app{i}"), Some(&crate::event::APP_FIELDS), &format!("App field {}", i + 1))) }
                    }
                    fieldset {
                        legend { "Behaviour (past)" }
                        @for i in 0..PAST_ROWS {
                            div.row role="group" aria-label={ "Behaviour rule " (i + 1) } {
                                (select(f, out, &format!("past{i}_kind"), &format!("Rule {}", i + 1), &[("did", "did"), ("did_not", "did not do")]))
                                (text(f, out, &format!("past{i}_event"), "event", ""))
                                (select(f, out, &format!("past{i}_agg"), "measure", &[("", "at least once"), ("count", "count"), ("sum", "sum of"), ("avg", "average of"), ("min", "min of"), ("max", "max of")]))
                                (input_of(f, out, &format!("past{i}_prop"), "of property", "", "text", "field narrow"))
                                (select(f, out, &format!("past{i}_op"), "is", &[("", ""), (">=", "≥"), (">", ">"), ("=", "="), ("<=", "≤"), ("<", "<")]))
                                (input_of(f, out, &format!("past{i}_value"), "value", "", "text", "field narrow"))
                                (input_of(f, out, &format!("past{i}_days"), "in the last (days)", "or all", "text", "field narrow"))
                            }
                        }
                    }
                    div.row {
                        (text(f, out, "new_segment", "Save these filters as a new segment (id, optional)", "the campaign then uses it; others can too"))
                    }
                    div.row {
                        (input_of(f, out, "control_group", "Control group (%)", "0–99", "number", "field narrow"))
                        (input_of(f, out, "target_cap", "Target cap (users)", "empty: none", "number", "field narrow"))
                    }
                }
                fieldset {
                    legend { "3. What" }
                    div.row role="radiogroup" aria-label="Audience" {
                        (radio(f, "audience_mode", "new", "Create a new TikTok audience"))
                        (radio(f, "audience_mode", "existing", "Add to an existing audience"))
                    }
                    div.row {
                        (text(f, out, "audience_name", "New audience's name", ""))
                        @if choices.audiences.iter().any(|(_, l)| !l.is_empty()) {
                            div.field {
                                label for="audience_existing" { "Existing audience (TikTok's Partner audiences)" }
                                select #audience_existing name="audience_existing" {
                                    option value="" { "—" }
                                    @for (account, list) in &choices.audiences {
                                        optgroup label={ "Ad account " (account) } {
                                            @for a in list {
                                                @let id = a["audience_id"].as_str().unwrap_or("");
                                                option value=(id) selected[f.get("audience_existing") == id] {
                                                    (a["name"].as_str().unwrap_or("")) " (" (id) ", size " (num(&a["size"])) ")"
                                                }
                                            }
                                        }
                                    }
                                }
                                (errors(out, "audience_existing"))
                            }
                        } @else {
                            (text(f, out, "audience_existing", "Existing audience id", "digits, a Partner audience"))
                        }
                    }
                    div.field {
                        label for="audience_description" { "Description (kept with the campaign; TikTok's create call has none)" }
                        @let bad = out.problems.iter().any(|(i, _)| i == "audience_description");
                        textarea #audience_description name="audience_description" rows="2" data-count="desc-count" data-max="200"
                            aria-invalid=[bad.then_some("true")] aria-describedby="desc-count" { (f.get("audience_description")) }
                        span.hint #desc-count aria-live="polite" { (f.get("audience_description").chars().count()) " / 200" }
                        (errors(out, "audience_description"))
                    }
                    div.row role="group" aria-label="Identifiers" {
                        (check(f, "identifiers", "email", "email (SHA-256)"))
                        (check(f, "identifiers", "phone", "phone (SHA-256)"))
                    }
                    (errors(out, "identifiers"))
                }
                fieldset {
                    legend { "4. When" }
                    div.row {
                        (input_of(f, out, "start", "Start (UTC)", "", "datetime-local", "field"))
                        (input_of(f, out, "end", "End (UTC, optional)", "", "datetime-local", "field"))
                    }
                    fieldset {
                        legend { "Live: on the event" }
                        div.row { (text(f, out, "trigger_event", "Trigger event", "e.g. Added To Cart")) }
                        @for i in 0..TRIGGER_ROWS { (condition(f, out, &format!("trig{i}"), None, &format!("Trigger filter {}", i + 1))) }
                        div.row {
                            (text(f, out, "inaction_event", "…and did not do (optional)", "e.g. Charged"))
                            (input_of(f, out, "inaction_within", "within", "e.g. 30m", "text", "field narrow"))
                        }
                    }
                    fieldset {
                        legend { "Past: on a schedule" }
                        div.row role="radiogroup" aria-label="Schedule" {
                            (radio(f, "schedule_mode", "at", "One date or several"))
                            (radio(f, "schedule_mode", "repeat", "Repeat"))
                        }
                        div.row { (text(f, out, "schedule_at", "Dates (UTC)", "2026-12-01T06:00, 2026-12-08T06:00")) }
                        div.row {
                            (input_of(f, out, "repeat_every", "Every", "", "number", "field narrow"))
                            (select(f, out, "repeat_unit", "unit", &[("hour", "hours"), ("day", "days"), ("week", "weeks"), ("month", "months")]))
                            (input_of(f, out, "repeat_time", "at (HH:MM)", "", "time", "field narrow"))
                            (input_of(f, out, "repeat_day", "day of month", "1–31, -1 last", "number", "field narrow"))
                            (text(f, out, "timezone", "Time zone", "IANA, e.g. Europe/Berlin"))
                            (input_of(f, out, "repeat_until", "until (UTC)", "", "datetime-local", "field"))
                        }
                        div.row role="group" aria-label="Weekdays" {
                            @for (d, l) in WEEKDAYS { (check(f, "repeat_weekdays", d, l)) }
                        }
                    }
                }
                fieldset {
                    legend { "5. Publish" }
                    @match &out.preview {
                        Some(Ok(p)) => {
                            div.cards role="status" {
                                div.card { "Qualify now" b { (num(&p["qualified"])) } }
                                div.card { "Reachable" b { (num(&p["reachable"])) } }
                                div.card { "Control group" b { (num(&p["control"])) } }
                                div.card { "Over the cap" b { (num(&p["capped"])) } }
                                div.card { "Estimated audience" b #estimated { (num(&p["estimated_audience"])) } }
                            }
                            @if p["complete"] == false { p.hint { "Some detect workers did not answer: the counts are partial." } }
                        }
                        Some(Err(e)) => { p.notice role="status" { "No preview: " (e) } }
                        None => { p.hint { "Preview counts who would qualify now, from the live state." } }
                    }
                    @if let Some(t) = &out.toml {
                        details open {
                            summary { "The campaign as TOML (for the config file)" }
                            pre { code { (t) } }
                        }
                    }
                    div.actions {
                        button.secondary type="submit" name="action" value="preview" { "Preview" }
                        button.secondary type="submit" name="action" value="save" { "Save draft" }
                        button.primary type="submit" name="action" value="publish" { "Publish" }
                    }
                }
            }
        },
    )
}

/// A bar chart of the report's users and conversions per group, as inline SVG.
fn chart(r: &Value) -> Markup {
    let bars = [
        (
            "exported",
            r["users"]["exported"].as_u64().unwrap_or(0),
            r["converted"]["exported"].as_u64().unwrap_or(0),
        ),
        (
            "control",
            r["users"]["control"].as_u64().unwrap_or(0),
            r["converted"]["control"].as_u64().unwrap_or(0),
        ),
    ];
    let max = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1) as f64;
    let (w, h) = (420.0, 180.0);
    html! {
        svg width="100%" viewBox={ "0 0 " (w) " " (h + 40.0) } role="img" aria-label="Users and conversions by group" style="max-width:420px;background:#fff" {
            @for (i, (name, users, conv)) in bars.iter().enumerate() {
                @let x = 40.0 + i as f64 * 190.0;
                @let uh = *users as f64 / max * h;
                @let ch = *conv as f64 / max * h;
                rect x=(x) y=(10.0 + h - uh) width="70" height=(uh) fill="#9db6ea" {}
                rect x=(x + 80.0) y=(10.0 + h - ch) width="70" height=(ch) fill="#2456c9" {}
                text x=(x + 35.0) y=(h + 26.0) text-anchor="middle" font-size="12" { (users) " users" }
                text x=(x + 115.0) y=(h + 26.0) text-anchor="middle" font-size="12" { (conv) " conv." }
                text x=(x + 75.0) y=(h + 40.0) text-anchor="middle" font-size="13" font-weight="700" { (name) }
            }
        }
    }
}

/// Qualifications and conversions per UTC day, as an inline SVG bar chart.
fn daily_chart(days: &[Value]) -> Markup {
    if days.is_empty() {
        return html! { p.hint { "No days yet." } };
    }
    let get = |d: &Value, k: &str| d[k].as_u64().unwrap_or(0);
    let max = (days.iter())
        .map(|d| get(d, "qualified").max(get(d, "converted")))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let slot = 34.0;
    // At least 600 wide: a few days keep their bars narrow.
    let (h, w) = (160.0, (50.0 + slot * days.len() as f64).max(600.0));
    html! {
        svg width="100%" viewBox={ "0 0 " (w) " " (h + 50.0) } role="img"
            aria-label="Qualifications and conversions per day" style="max-width:720px;background:#fff" {
            text x="4" y="12" font-size="11" fill="#555" { (max as u64) }
            line x1="40" y1=(10.0 + h) x2=(w) y2=(10.0 + h) stroke="#999" {}
            @for (i, d) in days.iter().enumerate() {
                @let x = 44.0 + i as f64 * slot;
                @let q = get(d, "qualified") as f64 / max * h;
                @let c = get(d, "converted") as f64 / max * h;
                rect x=(x) y=(10.0 + h - q) width="13" height=(q) fill="#9db6ea" {
                    title { (d["day"].as_str().unwrap_or("")) ": " (get(d, "qualified")) " qualified" }
                }
                rect x=(x + 14.0) y=(10.0 + h - c) width="13" height=(c) fill="#2456c9" {
                    title { (d["day"].as_str().unwrap_or("")) ": " (get(d, "converted")) " converted" }
                }
                text x=(x + 13.0) y=(h + 24.0) font-size="10" text-anchor="middle" {
                    (d["day"].as_str().unwrap_or("").get(5..).unwrap_or(""))
                }
            }
            rect x="44" y=(h + 34.0) width="10" height="10" fill="#9db6ea" {}
            text x="58" y=(h + 43.0) font-size="11" { "qualified" }
            rect x="130" y=(h + 34.0) width="10" height="10" fill="#2456c9" {}
            text x="144" y=(h + 43.0) font-size="11" { "converted" }
        }
        div.scroll { table {
            thead { tr { th { "Day (UTC)" } th.num { "Qualified" } th.num { "Converted" } } }
            tbody { @for d in days { tr {
                td { (d["day"].as_str().unwrap_or("")) }
                td.num { (get(d, "qualified")) }
                td.num { (get(d, "converted")) }
            } } }
        } }
    }
}

pub fn report(view: &Value, report: Option<&Value>, days: &[Value], csrf: &str) -> Markup {
    let id = view["id"].as_str().unwrap_or("");
    page(
        "Report",
        Some(csrf),
        html! {
            h1 { "Report: " (view["name"].as_str().unwrap_or(id)) }
            p { code { (id) } " · " (view["type"].as_str().unwrap_or("")) " · " (view["state"].as_str().unwrap_or(""))
                @if let Some(p) = view["published_at"].as_str() { " · published " (p) } }
            @if let Some(b) = view.get("backfill") {
                p.hint { "Behaviour rules backfilled from " (b["wanted_from"].as_str().unwrap_or("the beginning")) " over " (num(&b["partitions"])) " partition(s)"
                    @if b["short"] == true { "; retention fell short: figures start at " (b["covered_from"].as_str().unwrap_or("")) } "." }
            }
            @match report {
                None => { p { "No user has been decided for this campaign yet." } }
                Some(r) => {
                    div.cards {
                        div.card { "Exported users" b { (num(&r["users"]["exported"])) } }
                        div.card { "Control users" b { (num(&r["users"]["control"])) } }
                        div.card { "Lift" b { (pct(&r["lift"])) }
                            @if let Some(ci) = r["lift_ci95"].as_array() { span.hint { "95 % interval " (pct(&ci[0])) " to " (pct(&ci[1])) } } }
                        div.card { "Audience at TikTok" b { (num(&r["audience_size"])) } span.hint { "0 below 1,000 matched users" } }
                    }
                    h2 { "Per day" }
                    (daily_chart(days))
                    div.scroll {
                        table {
                            thead { tr { th { "" } th.num { "Exported" } th.num { "Control" } } }
                            tbody {
                                tr { th { "Users" } td.num { (num(&r["users"]["exported"])) } td.num { (num(&r["users"]["control"])) } }
                                tr { th { "Converted" } td.num { (num(&r["converted"]["exported"])) } td.num { (num(&r["converted"]["control"])) } }
                                tr { th { "Conversion rate" } td.num { (pct(&r["rate"]["exported"])) } td.num { (pct(&r["rate"]["control"])) } }
                                tr { th { "Revenue" } td.num { (num(&r["revenue"]["exported"])) } td.num { (num(&r["revenue"]["control"])) } }
                            }
                        }
                    }
                    h2 { "Users and conversions" }
                    (chart(r))
                }
            }
            p { a href="/" { "Back to the campaigns" } }
        },
    )
}
