//! `ragplane keys …`: list, create, revoke and rotate a tenant's API keys through the API, with a
//! tenant-admin or cluster-admin key.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::client::{Client, ConnArgs};

/// `ragplane keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Tenant whose keys to manage.
    #[arg(long, default_value = "default")]
    tenant: String,
    #[command(subcommand)]
    action: KeyAction,
}

/// What to do with the keys.
#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// List the tenant's keys (never the keys themselves).
    List,
    /// Issue a key; it is printed once.
    Create {
        /// A label.
        #[arg(long, default_value = "key")]
        name: String,
        /// query-only, read-write, tenant-admin or cluster-admin.
        #[arg(long, default_value = "read-write")]
        scope: String,
        /// Seconds until the key stops working.
        #[arg(long)]
        expires_in_secs: Option<u64>,
    },
    /// Revoke a key by id.
    Revoke {
        /// Key id (from `list`).
        id: String,
    },
    /// Replace a key by a new one with the same name, scope and expiry.
    Rotate {
        /// Key id (from `list`).
        id: String,
        /// Seconds the old key keeps working.
        #[arg(long, default_value_t = 0)]
        grace_secs: u64,
    },
}

/// Runs `ragplane keys`.
pub async fn run(args: KeysArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.conn)?;
    let base = format!("/v1/tenants/{}/keys", args.tenant);
    match args.action {
        KeyAction::List => {
            let keys: Vec<Value> = client
                .send(client.request(reqwest::Method::GET, &base))
                .await?;
            println!(
                "{:<38} {:<13} {:<12} {:<16} {:<26} STATE",
                "ID", "SCOPE", "PREFIX", "NAME", "EXPIRES"
            );
            for k in keys {
                let text = |f: &str| k[f].as_str().unwrap_or("-").to_string();
                let state = if k["revoked_at"].is_string() {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{:<38} {:<13} {:<12} {:<16} {:<26} {state}",
                    text("id"),
                    text("scope"),
                    text("prefix"),
                    text("name"),
                    text("expires_at")
                );
            }
        }
        KeyAction::Create {
            name,
            scope,
            expires_in_secs,
        } => {
            let mut body = json!({ "name": name, "scope": scope });
            if let Some(secs) = expires_in_secs {
                body["expires_in_secs"] = json!(secs);
            }
            let issued: Value = client
                .send(client.request(reqwest::Method::POST, &base).json(&body))
                .await?;
            print_issued(&issued);
        }
        KeyAction::Revoke { id } => {
            // 204: no body.
            let _: Option<Value> = client
                .send(client.request(reqwest::Method::DELETE, &format!("{base}/{id}")))
                .await?;
            println!("revoked {id}");
        }
        KeyAction::Rotate { id, grace_secs } => {
            let issued: Value = client
                .send(
                    client
                        .request(reqwest::Method::POST, &format!("{base}/{id}/rotate"))
                        .json(&json!({ "grace_secs": grace_secs })),
                )
                .await?;
            print_issued(&issued);
            if grace_secs > 0 {
                println!("the old key {id} keeps working for {grace_secs} s");
            } else {
                println!("the old key {id} is revoked");
            }
        }
    }
    Ok(())
}

fn print_issued(issued: &Value) {
    println!(
        "id: {}\nscope: {}\nexpires: {}\nkey: {}\n(store the key now: it is not shown again)",
        issued["id"].as_str().unwrap_or_default(),
        issued["scope"].as_str().unwrap_or_default(),
        issued["expires_at"].as_str().unwrap_or("never"),
        issued["key"].as_str().unwrap_or_default()
    );
}
