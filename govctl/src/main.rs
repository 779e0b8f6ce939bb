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
mod remote;
mod show;
mod signer_uri;
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
    RemoteArgs, RoleArg,
};
use crate::error::{CliError, Result};
use crate::keycmd::KeyChoice;
use crate::propose::Signing;
use crate::remote::{Expected, RemoteSigner};
use crate::signer_uri::SignerArg;

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
        Command::Sign(a) => {
            let (signing, key_named) =
                signing(&a.key, a.signer.as_deref(), &a.remote, false, false)?;
            if key_named.is_some() {
                return Err(CliError::usage(
                    "sign --signer takes a remote signer URI; the draft already names its key",
                )
                .hint("give bunker://... or nostrconnect://?relay=..., or leave --signer out to sign with a key file"));
            }
            propose::run_sign(&a.draft, &a.out, &signing, &a.d_tag, a.yes)
        }
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
    let (signing, named_key) = signing(
        &a.key,
        a.signer.as_deref(),
        &a.remote,
        a.publish.allow_insecure_ws,
        a.unsigned,
    )?;
    let unsigned_for = match (a.unsigned, named_key) {
        (true, Some(key)) => Some(key),
        (false, Some(_)) => {
            return Err(CliError::usage(
                "--signer NPUB names the key of a draft, and needs --unsigned",
            )
            .hint("add --unsigned --out FILE to write a draft for that key, or give a bunker:// or nostrconnect:// URI to sign with a remote signer now"));
        }
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
        &signing,
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

/// Who signs, from the key options and `--signer`/`--expect`/
/// `--signer-timeout`; and the key a `--signer NPUB` names (a draft's key).
/// A remote signer conflicts with `--unsigned` and with the key options.
fn signing<'a>(
    key: &'a KeyArgs,
    signer: Option<&str>,
    remote: &RemoteArgs,
    allow_insecure_ws: bool,
    unsigned: bool,
) -> Result<(Signing<'a>, Option<[u8; 32]>)> {
    let expect = match (&remote.expect, &remote.config) {
        (Some(text), _) => Some(Expected::key(
            config_edit::parse_public_key(text).map_err(|e| {
                CliError::usage(format!("--expect: {}", e.message()))
                    .hint("give an npub or 64 hex characters")
            })?,
            "--expect",
        )),
        (None, Some(path)) => {
            let config = config_edit::load_config(path)?;
            let keys: Vec<[u8; 32]> = config.voters().map(|f| *f.pubkey()).collect();
            if keys.is_empty() {
                return Err(CliError::failure(format!(
                    "{} has no voters, so no signature could be expected",
                    path.display()
                ))
                .hint(
                    "`govctl follows add NPUB --name NAME --role voter --config FILE` adds one",
                ));
            }
            Some(Expected {
                keys,
                source: format!("a voter of {} (--config)", path.display()),
            })
        }
        (None, None) => None,
    };
    if unsigned && expect.is_some() {
        return Err(CliError::usage(
            "--expect and --config check a signature, and a draft (--unsigned) has none yet",
        )
        .hint("pass them to `govctl sign` or to a propose that signs"));
    }
    let parsed = signer
        .map(|text| signer_uri::parse(text, allow_insecure_ws))
        .transpose()?;
    let key_options = key.key.is_some() || key.name.is_some() || key.passphrase_file.is_some();
    // A remote signer signs now, and alone.
    let remote_alone = || {
        let what = signer.map(signer_uri::redact).unwrap_or_default();
        if unsigned {
            return Err(CliError::usage(format!(
                "--signer {what} is a remote signer, which signs now; --unsigned writes a draft to sign later"
            ))
            .hint("drop --unsigned to have the remote signer sign, or give the npub of the key with --unsigned"));
        }
        if key_options {
            return Err(CliError::usage(format!(
                "--signer {what} is a remote signer, and --key, --name or --passphrase-file choose a key file: only one can sign"
            ))
            .hint("drop the key options: the remote signer holds the key"));
        }
        Ok(())
    };
    let (remote_signer, named) = match parsed {
        None => (None, None),
        Some(SignerArg::Key(k)) => (None, Some(k)),
        Some(SignerArg::Bunker(b)) => {
            remote_alone()?;
            (Some(RemoteSigner::Bunker(b)), None)
        }
        Some(SignerArg::Pairing(p)) => {
            remote_alone()?;
            (Some(RemoteSigner::Pairing(p)), None)
        }
    };
    Ok((
        Signing {
            key: choice(key),
            remote: remote_signer,
            expect,
            timeout: Duration::from_secs(remote.signer_timeout),
        },
        named,
    ))
}
