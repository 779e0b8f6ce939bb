//! `govctl`: the governance side of qube-agent fleets (README.md, "Use").
//!
//! Governance keys (NIP-49 encrypted files, see [`keystore`]), follows and
//! quorum of an agent config ([`config_edit`]), HyperQube directives
//! (kind 33321) built, checked with the agent's own rules and signed, online
//! or on an air-gapped machine ([`propose`], [`draft`]), publishing with
//! NIP-42 ([`publish`]), verification ([`verify`]) and fleet status
//! ([`status`]). It never executes an action.
//!
//! Exit status: 0 success, 1 failure, 2 usage error ([`error`]).

#![forbid(unsafe_code)]

mod assets;
mod cli;
mod config_edit;
mod defaults;
mod draft;
mod error;
mod fleet;
mod fleet_html;
mod history;
mod keycmd;
mod keystore;
mod limits;
mod prompt;
mod propose;
mod publish;
mod relays;
mod show;
mod status;
mod status_report;
mod time;
mod verify;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use qube_agent::config::Role;

use crate::cli::{
    Cli, Command, FollowsCommand, KeyArgs, KeyCommand, ProposeArgs, ProposeCommand, QuorumCommand,
    RoleArg,
};
use crate::error::{CliError, Result};
use crate::keycmd::KeyChoice;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.code())
        }
    }
}

fn choice(args: &KeyArgs) -> KeyChoice<'_> {
    KeyChoice {
        key: args.key.as_deref(),
        name: args.name.as_deref(),
        passphrase_file: args.passphrase_file.as_deref(),
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Keygen(a) => keycmd::keygen(&choice(&a.key), a.log_n, a.plaintext),
        Command::Key(KeyCommand::Show(a)) => keycmd::show(&choice(&a)),
        Command::Key(KeyCommand::Import(a)) => {
            keycmd::import(&choice(&a.key), a.log_n, a.plaintext)
        }
        Command::Key(KeyCommand::Export(a)) => {
            keycmd::export(&choice(&a.key), a.log_n, a.plaintext)
        }
        Command::Follows(FollowsCommand::List { config }) => config_edit::list(&config),
        Command::Follows(FollowsCommand::Add {
            key,
            name,
            role,
            config,
        }) => {
            let role = match role {
                RoleArg::Voter => Role::Voter,
                RoleArg::Observer => Role::Observer,
            };
            config_edit::add(&config, &key, &name, role)
        }
        Command::Follows(FollowsCommand::Remove { follow, config }) => {
            config_edit::remove(&config, &follow)
        }
        Command::Quorum(QuorumCommand::Set { n, config }) => config_edit::set_quorum(&config, n),
        Command::Propose(ProposeCommand::Upgrade(a)) => {
            let required_by = a
                .required_by
                .as_deref()
                .map(time::parse_time)
                .transpose()
                .map_err(|e| CliError::usage(format!("--required-by: {e}")))?;
            propose_cmd(
                qube_agent::core::directive::Action::Upgrade,
                &a.common,
                None,
                required_by,
            )
        }
        Command::Propose(ProposeCommand::Reboot(a)) => {
            propose::check_genesis_url(&a.genesis_url).map_err(|why| {
                CliError::usage(format!(
                    "--genesis-url {} is not an https:// URL: {why}",
                    show::quoted_short(&a.genesis_url, 80)
                ))
                .hint("give https://HOST/PATH: nodes download the genesis from it, and only TLS keeps it from being swapped on the way")
            })?;
            let required_by = time::parse_time(&a.required_by)
                .map_err(|e| CliError::usage(format!("--required-by: {e}")))?;
            propose_cmd(
                qube_agent::core::directive::Action::Reboot,
                &a.common,
                Some(a.genesis_url.clone()),
                Some(required_by),
            )
        }
        Command::Sign(a) => propose::run_sign(&a.draft, &a.out, &choice(&a.key), &a.d_tag, a.yes),
        Command::Publish(a) => {
            let targets = relays::targets(&a.publish.relay, a.publish.allow_insecure_ws)?;
            let auth = match &a.publish.auth_key {
                Some(path) => Some(
                    keystore::unlock(path, a.publish.auth_passphrase_file.as_deref())?.keys()?,
                ),
                None => None,
            };
            publish::run(
                &a.files,
                targets,
                auth.as_ref(),
                Duration::from_secs(a.publish.timeout),
            )
        }
        Command::Verify(a) => verify::run(&verify::VerifyArgs {
            file: &a.file,
            config: a.config.as_deref(),
            network: a.network.as_deref(),
            d_tag: &a.d_tag,
        }),
        Command::Hash(a) => {
            let digest = qube_agent::artifact::sha256_file(&a.file).map_err(|e| {
                CliError::io("read", &a.file, &e).hint("give the path of the artifact file")
            })?;
            println!("{}", hex::encode(digest));
            Ok(())
        }
        Command::History(a) => {
            let parse = |flag: &str, text: &str| {
                time::parse_time(text).map_err(|e| {
                    CliError::usage(format!("{flag}: {e}"))
                        .hint("give unix seconds or RFC 3339 UTC, e.g. 2026-12-01T00:00:00Z")
                })
            };
            let since = parse("--since", &a.since)?;
            let until = a
                .until
                .as_deref()
                .map(|u| parse("--until", u))
                .transpose()?;
            history::run(&a, since, until)
        }
        Command::Status(a) => status::run(&a),
        Command::GenerateAssets { out } => assets::write(&out),
    }
}

fn propose_cmd(
    action: qube_agent::core::directive::Action,
    a: &ProposeArgs,
    genesis_url: Option<String>,
    required_by: Option<u64>,
) -> Result<()> {
    let now = qube_agent::now();
    let expiration = if a.no_expiry {
        error::warn(
            "--no-expiry: this directive never expires; it counts until you sign a newer one",
        );
        None
    } else {
        let secs = time::parse_duration(&a.expires_in).map_err(|e| {
            CliError::usage(format!("--expires-in: {e}"))
                .hint("give a duration such as 7d, 12h or 1d12h, or --no-expiry")
        })?;
        Some(now + secs)
    };
    let unsigned_for = match (&a.unsigned, &a.signer) {
        (true, Some(signer)) => Some(config_edit::parse_public_key(signer)?),
        _ => None,
    };
    if a.out.is_none() && a.publish.relay.is_empty() {
        return Err(CliError::usage("nowhere to send the directive")
            .hint("add --out FILE to save it (offline signing), or --relay URL to publish it"));
    }
    let relays = if a.out.is_some() {
        Vec::new()
    } else {
        relays::targets(&a.publish.relay, a.publish.allow_insecure_ws)?
    };
    let hash = propose::resolve_hash(a.hash.as_deref(), a.artifact.as_deref())?;
    let nodes = a
        .node
        .iter()
        .map(|n| config_edit::parse_public_key(n))
        .collect::<Result<Vec<_>>>()?;
    let spec = propose::Spec {
        action,
        version: a.version.clone(),
        network: a.network.clone(),
        hash,
        genesis_url,
        required_by,
        expiration,
        rollout: a.rollout,
        nodes,
        content: a.content.clone(),
        d_tag: a.d_tag.clone(),
    };
    propose::run(
        &spec,
        &choice(&a.key),
        &propose::Destination {
            out: a.out.as_deref(),
            unsigned_for,
            relays,
            auth_key: a.publish.auth_key.as_deref(),
            auth_passphrase_file: a.publish.auth_passphrase_file.as_deref(),
            timeout: Duration::from_secs(a.publish.timeout),
        },
    )
}
