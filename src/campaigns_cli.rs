//! `remarket campaigns …`: a client of the admin API (docs/campaigns.md), so operators do not
//! hand-write curl. The token comes from an environment variable (never a flag: flags end up
//! in shell history and `ps`).

use std::path::PathBuf;

use serde_json::Value;

/// Arguments of `remarket campaigns`.
#[derive(Debug, Clone, clap::Args)]
pub struct CampaignsArgs {
    /// The admin server (`[http] listen` of `run`)
    #[arg(long, default_value = "http://127.0.0.1:9898", global = true)]
    pub api: String,
    /// The environment variable holding the admin token
    #[arg(long, default_value = "REMARKET_ADMIN_TOKEN", global = true)]
    pub token_env: String,
    #[command(subcommand)]
    pub command: CampaignsCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum CampaignsCommand {
    /// List campaigns (the config's and the store's)
    List {
        /// Only campaigns in this state (draft, scheduled, running, completed, stopped)
        #[arg(long)]
        state: Option<String>,
    },
    /// Show one campaign
    Get { id: String },
    /// Create a draft from a TOML file holding one campaign (a `[[campaign]]` or its keys)
    Create {
        #[arg(short, long)]
        file: PathBuf,
    },
    /// Replace a campaign's definition (a draft freely; published within the edit rules)
    Update {
        id: String,
        #[arg(short, long)]
        file: PathBuf,
    },
    /// Publish a draft (from --at, an RFC 3339 event time; default now)
    Publish {
        id: String,
        #[arg(long)]
        at: Option<String>,
    },
    /// Stop a published campaign (from --at; default now)
    Stop {
        id: String,
        #[arg(long)]
        at: Option<String>,
    },
    /// Delete a draft
    Delete { id: String },
    /// Show a campaign's report
    Report { id: String },
}

/// One campaign of a TOML file: its only `[[campaign]]`, or the file's keys as the table.
pub fn campaign_file(text: &str) -> anyhow::Result<Value> {
    let t: toml::Table = text.parse()?;
    let table = match t.get("campaign") {
        Some(toml::Value::Array(a)) if a.len() == 1 => a[0].clone(),
        Some(toml::Value::Array(a)) => {
            anyhow::bail!("the file holds {} [[campaign]] tables, not one", a.len())
        }
        _ => toml::Value::Table(t),
    };
    Ok(serde_json::to_value(table)?)
}

/// Runs the command; the API's answer goes to stdout, an error status fails it with the
/// answer's message (or every problem).
pub fn run(args: &CampaignsArgs) -> anyhow::Result<()> {
    let token = std::env::var(&args.token_env).map_err(|_| {
        anyhow::anyhow!(
            "set {} to the admin token ([http] admin_token_file / admin_token_env of run)",
            args.token_env
        )
    })?;
    let base = format!("{}/api/v1", args.api.trim_end_matches('/'));
    let at = |at: &Option<String>| at.as_ref().map(|a| serde_json::json!({"effective_at": a}));
    let read = |f: &PathBuf| -> anyhow::Result<Value> {
        let text = std::fs::read_to_string(f)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?;
        campaign_file(&text).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))
    };
    let (method, path, body) = match &args.command {
        CampaignsCommand::List { state } => (
            "GET",
            match state {
                Some(s) => format!("/campaigns?state={s}"),
                None => "/campaigns".into(),
            },
            None,
        ),
        CampaignsCommand::Get { id } => ("GET", format!("/campaigns/{id}"), None),
        CampaignsCommand::Create { file } => ("POST", "/campaigns".into(), Some(read(file)?)),
        CampaignsCommand::Update { id, file } => {
            ("PUT", format!("/campaigns/{id}"), Some(read(file)?))
        }
        CampaignsCommand::Publish { id, at: t } => {
            ("POST", format!("/campaigns/{id}/publish"), at(t))
        }
        CampaignsCommand::Stop { id, at: t } => ("POST", format!("/campaigns/{id}/stop"), at(t)),
        CampaignsCommand::Delete { id } => ("DELETE", format!("/campaigns/{id}"), None),
        CampaignsCommand::Report { id } => ("GET", format!("/campaigns/{id}/report"), None),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, answer) = rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        let mut req = client
            .request(method.parse()?, format!("{base}{path}"))
            .bearer_auth(token.trim());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach {}: {e}", args.api))?;
        let status = r.status();
        let text = r.text().await?;
        anyhow::Ok((status, text))
    })?;
    let json: Option<Value> = serde_json::from_str(&answer).ok();
    if status.is_success() {
        if let Some(j) = json {
            println!("{}", serde_json::to_string_pretty(&j)?);
        }
        return Ok(());
    }
    let detail = match &json {
        Some(j) if j.get("problems").is_some() => {
            let lines: Vec<String> = (j["problems"].as_array().into_iter().flatten())
                .map(|p| {
                    format!(
                        "  - {}: {}: {}",
                        p["campaign"].as_str().unwrap_or("-"),
                        p["field"].as_str().unwrap_or(""),
                        p["message"].as_str().unwrap_or("")
                    )
                })
                .collect();
            format!("{} problem(s):\n{}", lines.len(), lines.join("\n"))
        }
        Some(j) => j["error"].as_str().unwrap_or(&answer).to_owned(),
        None => answer,
    };
    anyhow::bail!(
        "{} {}: {detail}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_campaign_file_is_one_table_either_way() {
        let keys = "id = \"a\"\n[who]\ncontrol_group = 5\n";
        let array = "[[campaign]]\nid = \"a\"\n[campaign.who]\ncontrol_group = 5\n";
        assert_eq!(campaign_file(keys).unwrap(), campaign_file(array).unwrap());
        assert_eq!(campaign_file(keys).unwrap()["who"]["control_group"], 5);
        let two = "[[campaign]]\nid = \"a\"\n[[campaign]]\nid = \"b\"\n";
        assert!(campaign_file(two)
            .unwrap_err()
            .to_string()
            .contains("2 [[campaign]]"));
    }
}
