//! The daemon's configuration file: every option of `run` as a TOML key,
//! detector thresholds in a `[detect]` table.
//!
//! The file is turned into `run`'s own arguments, ahead of the ones on the
//! command line, and clap reads them all: so every flag has exactly one
//! meaning and one check whether it comes from the file or the command
//! line, and a flag given on the command line overrides the file's value
//! (a repeatable one, like --service, replaces the file's list).

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};
use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use super::run::RunArgs;

/// `run`'s arguments alone (to read and print them).
#[derive(Parser, Debug)]
#[command(name = "fireplot run", args_override_self = true)]
pub struct RunCli {
    #[command(flatten)]
    pub run: RunArgs,
}

/// `fireplot config ...`.
#[derive(Args, Debug)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub what: ConfigCmd,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Check a configuration file and print the configuration in effect
    /// (every key, with the defaults filled in).
    Check {
        /// The file (e.g. /etc/fireplot/fireplot.toml).
        file: PathBuf,
    },
    /// Print a commented configuration file with every key and its default.
    Example,
}

/// Keys of the file that are not options.
const NOT_KEYS: [&str; 4] = ["config", "help", "version", "set"];

fn key_of(long: &str) -> String {
    long.replace('-', "_")
}

/// The file as `run` arguments.
pub fn file_args(path: &Path) -> Result<Vec<OsString>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config `{}`", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("config `{}` is not valid TOML", path.display()))?;
    let cmd = RunCli::command();
    let mut out: Vec<OsString> = Vec::new();
    let at = |k: &str| format!("config `{}`, key `{k}`", path.display());
    for (key, value) in &table {
        if key == "detect" {
            let toml::Value::Table(t) = value else {
                bail!("{}: [detect] must be a table of detector settings", at(key));
            };
            for (k, v) in t {
                let v = match v {
                    toml::Value::String(s) => format!("{s:?}"),
                    other => other.to_string(),
                };
                out.push("--set".into());
                out.push(format!("{k}={v}").into());
            }
            continue;
        }
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long().is_some_and(|l| key_of(l) == *key))
            .filter(|_| !NOT_KEYS.contains(&key.as_str()));
        let Some(arg) = arg else {
            // A detector file given to `run --config` (its old meaning).
            let detector_keys = toml::Value::try_from(crate::detect::DetectConfig::default())
                .ok()
                .and_then(|v| v.as_table().map(|t| t.keys().cloned().collect::<Vec<_>>()))
                .unwrap_or_default();
            if detector_keys.contains(key) {
                bail!(
                    "config `{}`: `{key}` is a detector setting: put it under [detect], or give a \
                     detector-only file with --detect-config",
                    path.display()
                );
            }
            let mut known: Vec<String> = cmd
                .get_arguments()
                .filter_map(|a| a.get_long())
                .map(key_of)
                .filter(|k| !NOT_KEYS.contains(&k.as_str()))
                .collect();
            known.push("[detect]".into());
            bail!(
                "config `{}`: unknown key `{key}` (known: {})",
                path.display(),
                known.join(", ")
            );
        };
        let flag = format!("--{}", arg.get_long().expect("found by its long name"));
        let scalar = |v: &toml::Value| -> Result<String> {
            Ok(match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                other => bail!("{}: `{other}` is not a value for {flag}", at(key)),
            })
        };
        match (arg.get_action(), value) {
            (ArgAction::SetTrue, toml::Value::Boolean(b)) => {
                if *b {
                    out.push(flag.clone().into());
                }
            }
            (ArgAction::SetTrue, v) => bail!(
                "{}: {flag} is on or off: write true or false, not {v}",
                at(key)
            ),
            (ArgAction::Append, toml::Value::Array(items)) => {
                for v in items {
                    out.push(flag.clone().into());
                    out.push(scalar(v)?.into());
                }
            }
            (_, toml::Value::Array(_)) => bail!("{}: {flag} takes one value, not a list", at(key)),
            (_, v) => {
                out.push(flag.clone().into());
                out.push(scalar(v)?.into());
            }
        }
    }
    Ok(out)
}

/// The long names given on a command line (`--x v`, `--x=v`).
fn given(args: &[OsString]) -> Vec<String> {
    args.iter()
        .filter_map(|a| a.to_str())
        .filter_map(|a| a.strip_prefix("--"))
        .map(|a| a.split('=').next().unwrap_or(a).to_string())
        .collect()
}

/// `fireplot run --config FILE ...` becomes `fireplot run <the file's
/// arguments> ...`. Anything else is left alone.
pub fn expand(argv: Vec<OsString>) -> Result<Vec<OsString>> {
    if argv.get(1).and_then(|a| a.to_str()) != Some("run") {
        return Ok(argv);
    }
    let mut rest: Vec<OsString> = Vec::new();
    let mut file: Option<PathBuf> = None;
    let mut it = argv[2..].iter();
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--config") => match it.next() {
                Some(p) => file = Some(PathBuf::from(p)),
                None => bail!("--config needs a FILE"),
            },
            Some(s) if s.starts_with("--config=") => file = Some(PathBuf::from(&s[9..])),
            _ => rest.push(a.clone()),
        }
    }
    let Some(file) = file else {
        return Ok(argv);
    };
    let from_file = file_args(&file)?;
    // A repeatable option on the command line replaces the file's list.
    let cmd = RunCli::command();
    let cli = given(&rest);
    let mut kept: Vec<OsString> = Vec::new();
    let mut i = 0;
    while i < from_file.len() {
        let name = from_file[i]
            .to_str()
            .and_then(|s| s.strip_prefix("--"))
            .unwrap_or("");
        let takes_value = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(name))
            .is_some_and(|a| a.get_action().takes_values());
        let n = if takes_value { 2 } else { 1 };
        let append = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(name))
            .is_some_and(|a| matches!(a.get_action(), ArgAction::Append));
        // --set keeps both: the command line's come later and win per key.
        if !(append && name != "set" && cli.iter().any(|c| c == name)) {
            kept.extend_from_slice(&from_file[i..(i + n).min(from_file.len())]);
        }
        i += n;
    }
    let mut out = vec![argv[0].clone(), argv[1].clone()];
    out.extend(kept);
    out.extend(rest);
    Ok(out)
}

/// The configuration in effect for `run` arguments, as a file: every key
/// with its value (defaults included), the detector's in [detect].
pub fn effective(args: &[OsString]) -> Result<String> {
    let mut all = vec![OsString::from("fireplot run")];
    all.extend_from_slice(args);
    let matches = RunCli::command().try_get_matches_from(&all)?;
    let cli = RunCli::from_arg_matches(&matches)?;
    cli.run.check()?;
    cli.run
        .classifier
        .limits()
        .validate(crate::sensor::online_cpus().unwrap_or(1))?;
    let detect = cli.run.detect.load()?;
    let mut out = String::new();
    for arg in RunCli::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let key = key_of(long);
        if NOT_KEYS.contains(&key.as_str()) {
            continue;
        }
        let id = arg.get_id().as_str();
        if key == "token" {
            if matches.get_raw(id).is_some() {
                out.push_str("# token = (set, not shown)\n");
            }
            continue;
        }
        match arg.get_action() {
            ArgAction::SetTrue => {
                out.push_str(&format!("{key} = {}\n", matches.get_flag(id)));
            }
            action => {
                let vals: Vec<String> = matches
                    .get_raw(id)
                    .map(|v| v.map(|x| x.to_string_lossy().into_owned()).collect())
                    .unwrap_or_default();
                let quoted: Vec<String> = vals.iter().map(|v| toml_str(v)).collect();
                match (action, quoted.len()) {
                    (ArgAction::Append, _) => {
                        out.push_str(&format!("{key} = [{}]\n", quoted.join(", ")))
                    }
                    (_, 0) => out.push_str(&format!("# {key} is not set\n")),
                    _ => out.push_str(&format!("{key} = {}\n", quoted[0])),
                }
            }
        }
    }
    out.push_str("\n[detect]\n");
    out.push_str(&toml::to_string(&detect).context("the detector settings")?);
    Ok(out)
}

/// A TOML string (numbers stay numbers).
fn toml_str(v: &str) -> String {
    if v.parse::<i64>().is_ok() {
        v.to_string()
    } else {
        toml::Value::String(v.to_string()).to_string()
    }
}

/// A commented file with every key, its help and its default.
pub fn example() -> String {
    let mut out = String::from(
        "# fireplot daemon configuration: `fireplot run --config /etc/fireplot/fireplot.toml`.\n\
         # Every key is an option of `fireplot run` (see `fireplot run --help`); flags given\n\
         # on the command line override this file. Uncomment what you change.\n\n",
    );
    for arg in RunCli::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let key = key_of(long);
        if NOT_KEYS.contains(&key.as_str()) || key == "token" {
            continue;
        }
        if let Some(help) = arg.get_long_help().or(arg.get_help()) {
            for line in help.to_string().lines() {
                out.push_str(&format!("# {}\n", line).replace("# \n", "#\n"));
            }
        }
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| toml_str(&v.to_string_lossy()))
            .collect();
        let line = match arg.get_action() {
            _ if key == "iface" => "iface = [\"wan0\"]".to_string(),
            ArgAction::SetTrue => format!("{key} = false"),
            ArgAction::Append => format!("{key} = []"),
            _ if defaults.is_empty() => format!("{key} = \"\""),
            _ => format!("{key} = {}", defaults[0]),
        };
        // The interface has no default: it is the one key a file must set.
        if key == "iface" {
            out.push_str(&format!("{line}\n\n"));
        } else {
            out.push_str(&format!("# {line}\n\n"));
        }
    }
    out.push_str(
        "# Detector thresholds (`fireplot detect --print-config` documents each).\n[detect]\n",
    );
    for line in crate::detect::DetectConfig::default()
        .to_documented_toml()
        .lines()
    {
        if line.starts_with('#') || line.is_empty() {
            out.push_str(&format!("{line}\n"));
        } else {
            out.push_str(&format!("# {line}\n"));
        }
    }
    out
}

pub fn config(args: &ConfigArgs) -> Result<()> {
    match &args.what {
        ConfigCmd::Example => {
            print!("{}", example());
            Ok(())
        }
        ConfigCmd::Check { file } => {
            let a = file_args(file)?;
            let text = effective(&a).with_context(|| format!("config `{}`", file.display()))?;
            println!(
                "# {} is valid. The configuration in effect (flags given to `run` would override it):\n",
                file.display()
            );
            print!("{text}");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
