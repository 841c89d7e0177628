//! The command line: `lifecycled [serve]`, `lifecycled setup`,
//! `lifecycled token create|list|revoke`.

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;
use tokio_postgres::NoTls;

use crate::auth::token::{self, TokenInfo};
use crate::auth::AdminRole;
use crate::config::{Config, DatabaseArgs};
use crate::setup::{self, SetupOptions, DEFAULT_SERVICE_ROLE};

/// `lifecycled`: without a subcommand it serves (with `serve`'s flags).
#[derive(Parser)]
#[command(
    name = "lifecycled",
    version,
    about = "Control plane for the lifecycle PostgreSQL extension",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: Config,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the HTTP API and run the worker (the default).
    Serve(Box<Config>),
    /// Prepare databases: the service role and its grants in each, the
    /// control plane's own tables in the first. Idempotent.
    Setup(SetupArgs),
    /// Create, list and revoke admin tokens (in the primary database, as
    /// the owner of the schema `lifecycled`: the service role cannot).
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Args)]
pub struct SetupArgs {
    /// Connection URL of a superuser (or the extension's owner) in a
    /// database to prepare; repeat for several. The first is the primary.
    #[arg(
        long = "admin-url",
        env = "LIFECYCLE_ADMIN_URL",
        value_delimiter = ';',
        required = true,
        hide_env_values = true
    )]
    pub admin_urls: Vec<String>,
    /// Name of the service role to create.
    #[arg(long, env = "LIFECYCLE_SERVICE_ROLE", default_value = DEFAULT_SERVICE_ROLE)]
    pub service_role: String,
    /// Password of the service role (left as it is when absent).
    #[arg(long, env = "LIFECYCLE_SERVICE_PASSWORD", hide_env_values = true)]
    pub service_password: Option<String>,
}

/// Role of a new admin token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    PlatformAdmin,
    TenantAdmin,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (shown this once only).
    Create {
        /// Who the token is for: the actor the audit log records. Unique.
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        /// The tenant of a tenant admin.
        #[arg(long, required_if_eq("role", "tenant-admin"))]
        tenant: Option<String>,
        /// Print {id, name, role, tenant, token} as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// List every token (never the tokens themselves).
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Revoke a token by id or name; its next request answers 401.
    Revoke {
        id_or_name: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

/// What `token create --json` prints.
#[derive(Serialize)]
struct CreatedToken<'a> {
    id: uuid::Uuid,
    name: &'a str,
    role: &'a str,
    tenant: Option<&'a str>,
    token: &'a str,
}

/// Run a command other than `serve`; its output goes to stdout.
pub async fn run_command(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(_) => unreachable!("serve is handled by main"),
        Command::Setup(args) => run_setup(args).await,
        Command::Token(command) => run_token(command).await,
    }
}

async fn run_setup(args: SetupArgs) -> anyhow::Result<()> {
    if args.service_password.is_none() {
        eprintln!(
            "note: no --service-password: an existing role keeps its password, a new one has none"
        );
    }
    for (i, url) in args.admin_urls.iter().enumerate() {
        let options = SetupOptions {
            role: &args.service_role,
            password: args.service_password.as_deref(),
            own_schema: i == 0,
        };
        let report = setup::setup_url(url, &options).await?;
        let role = if report.role_created {
            "created"
        } else {
            "updated"
        };
        let schema = match report.schema_version {
            Some(version) if report.migrations_applied.is_empty() => {
                format!(", schema lifecycled at version {version}")
            }
            Some(version) => format!(
                ", schema lifecycled migrated to version {version} (applied {:?})",
                report.migrations_applied
            ),
            None => String::new(),
        };
        println!(
            "{}: role {} {role}, grants given{schema}",
            report.database, args.service_role
        );
    }
    Ok(())
}

async fn connect_primary(db: &DatabaseArgs) -> anyhow::Result<tokio_postgres::Client> {
    let spec = db
        .specs()
        .into_iter()
        .next()
        .context("no database configured")?;
    let mut config: tokio_postgres::Config = spec.url.parse().context("invalid database URL")?;
    config.connect_timeout(db.timeout());
    crate::db::pin_search_path(&mut config);
    let (client, connection) = config
        .connect(NoTls)
        .await
        .with_context(|| format!("could not connect to {}", spec.redacted_url()))?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            eprintln!("database connection error: {err}");
        }
    });
    Ok(client)
}

async fn run_token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            name,
            role,
            tenant,
            json,
            db,
        } => {
            let role = match role {
                RoleArg::PlatformAdmin => {
                    anyhow::ensure!(tenant.is_none(), "a platform admin has no --tenant");
                    AdminRole::Platform
                }
                RoleArg::TenantAdmin => AdminRole::from_parts("tenant-admin", tenant)
                    .context("a tenant admin needs a non-empty --tenant")?,
            };
            let client = connect_primary(&db).await?;
            let (info, new) = token::create(&client, &name, &role).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&CreatedToken {
                        id: info.id,
                        name: &info.name,
                        role: &info.role,
                        tenant: info.tenant.as_deref(),
                        token: &new.token,
                    })?
                );
            } else {
                println!("{}", new.token);
            }
        }
        TokenCommand::List { json, db } => {
            let client = connect_primary(&db).await?;
            let tokens = token::list(&client).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tokens)?);
            } else {
                print!("{}", format_table(&tokens));
            }
        }
        TokenCommand::Revoke { id_or_name, db } => {
            let client = connect_primary(&db).await?;
            let info = token::revoke(&client, &id_or_name)
                .await?
                .with_context(|| format!("no token with id or name {id_or_name:?}"))?;
            let at = info.revoked_at.map(|t| t.to_rfc3339()).unwrap_or_default();
            println!("revoked {} ({}) at {at}", info.name, info.id);
        }
    }
    Ok(())
}

/// `token list` as aligned columns.
fn format_table(tokens: &[TokenInfo]) -> String {
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or_else(
            || "-".to_owned(),
            |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string(),
        )
    };
    let mut rows = vec![[
        "ID".to_owned(),
        "NAME".to_owned(),
        "ROLE".to_owned(),
        "TENANT".to_owned(),
        "CREATED".to_owned(),
        "LAST USED".to_owned(),
        "REVOKED".to_owned(),
    ]];
    rows.extend(tokens.iter().map(|t| {
        [
            t.id.to_string(),
            t.name.clone(),
            t.role.clone(),
            t.tenant.clone().unwrap_or_else(|| "-".to_owned()),
            time(Some(t.created_at)),
            time(t.last_used_at),
            time(t.revoked_at),
        ]
    }));
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            format!("{}\n", cells.join("  ").trim_end())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_subcommand_means_serve_with_its_flags() {
        let cli = Cli::try_parse_from(["lifecycled", "--listen", "127.0.0.1:9999"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.listen.port(), 9999);
        let cli = Cli::try_parse_from(["lifecycled", "serve", "--no-worker"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Serve(c)) if c.no_worker));
    }

    #[test]
    fn token_create_needs_a_tenant_for_tenant_admins() {
        assert!(Cli::try_parse_from([
            "lifecycled",
            "token",
            "create",
            "--name",
            "a",
            "--role",
            "tenant-admin"
        ])
        .is_err());
        let cli = Cli::try_parse_from([
            "lifecycled",
            "token",
            "create",
            "--name",
            "a",
            "--role",
            "tenant-admin",
            "--tenant",
            "acme",
            "--json",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Token(TokenCommand::Create { json: true, .. }))
        ));
        assert!(Cli::try_parse_from(["lifecycled", "token", "revoke"]).is_err());
    }

    #[test]
    fn the_table_lines_up() {
        let t = TokenInfo {
            id: uuid::Uuid::nil(),
            name: "alice".into(),
            role: "tenant-admin".into(),
            tenant: Some("acme".into()),
            created_at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            last_used_at: None,
            revoked_at: None,
        };
        let table = format_table(&[t]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].find("NAME"), lines[1].find("alice"));
        assert!(lines[1].contains("1970-01-01 00:00:00Z"));
    }
}
