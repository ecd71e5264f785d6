//! `config`, `config:get`, `config:set`, `config:unset`.

use anyhow::{bail, Result};
use haven_api as w;
use reqwest::Method;

use super::app_path;
use super::releases::current_version;
use crate::client::{print_json, Api};
use crate::output::{header, key_values};

/// Splits `KEY=value` (the value may hold `=`).
pub fn parse_pair(arg: &str) -> Result<(String, String)> {
    match arg.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("{arg:?} is not KEY=value; write config:set KEY=value"),
    }
}

/// Aligned `KEY: value` lines; nothing for no vars.
pub fn print_config(config: &w::ConfigVars) {
    let rows: Vec<(&str, String)> = config
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    if !rows.is_empty() {
        println!("{}", key_values(&rows));
    }
}

fn config_path(app: &str) -> String {
    format!("{}/config-vars", app_path(app))
}

/// `hctl config [--shell]`.
pub fn show(api: &Api, app: &str, json: bool, shell: bool) -> Result<()> {
    let config = api.get::<w::ConfigVars>(&config_path(app))?;
    if json {
        return print_json(&config);
    }
    if shell {
        for (k, v) in &config.value {
            println!("{k}={v}");
        }
        return Ok(());
    }
    println!("{}", header(&format!("{app} Config Vars")));
    print_config(&config.value);
    Ok(())
}

/// `hctl config:get KEY`.
pub fn get(api: &Api, app: &str, key: &str) -> Result<()> {
    let config: w::ConfigVars = api.get(&config_path(app))?.value;
    // Like the Heroku CLI: an unset var prints an empty line.
    println!("{}", config.get(key).cloned().unwrap_or_default());
    Ok(())
}

/// `hctl config:set KEY=value ...`.
pub fn set(api: &Api, app: &str, pairs: &[String], json: bool) -> Result<()> {
    let pairs = pairs
        .iter()
        .map(|p| parse_pair(p))
        .collect::<Result<Vec<_>>>()?;
    let body: w::ConfigVarsPatch = pairs
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    let config = api.call_with::<w::ConfigVars, _>(Method::PATCH, &config_path(app), &body)?;
    if json {
        return print_json(&config);
    }
    let keys: Vec<String> = pairs.iter().map(|(k, _)| k.clone()).collect();
    let v = current_version(api, app)?;
    println!(
        "Setting {} and restarting ⬢ {app}... done, v{v}",
        keys.join(", "),
    );
    let set: w::ConfigVars = pairs.into_iter().collect();
    print_config(&set);
    Ok(())
}

/// `hctl config:unset KEY ...`.
pub fn unset(api: &Api, app: &str, keys: &[String], json: bool) -> Result<()> {
    let body: w::ConfigVarsPatch = keys.iter().map(|k| (k.clone(), None)).collect();
    let config = api.call_with::<w::ConfigVars, _>(Method::PATCH, &config_path(app), &body)?;
    if json {
        return print_json(&config);
    }
    let v = current_version(api, app)?;
    println!(
        "Unsetting {} and restarting ⬢ {app}... done, v{v}",
        keys.join(", "),
    );
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pairs() {
        assert_eq!(parse_pair("A=1").unwrap(), ("A".into(), "1".into()));
        assert_eq!(
            parse_pair("URL=postgres://u:p@h/db?x=y").unwrap().1,
            "postgres://u:p@h/db?x=y"
        );
        assert_eq!(parse_pair("EMPTY=").unwrap().1, "");
        assert!(parse_pair("NOEQUALS").is_err());
        assert!(parse_pair("=v").is_err());
    }
}
