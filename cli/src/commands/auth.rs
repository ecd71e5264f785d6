//! `login`, `logout`, `whoami`.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{anyhow, bail, Context, Result};
use haven_api as w;

use crate::client::{self, Api, Login};

/// `hctl login`: checks the token against `url` and saves both.
pub fn login(api_flag: Option<&str>, token: Option<&str>) -> Result<()> {
    let url = api_flag
        .map(str::to_string)
        .or_else(|| std::env::var("HAVEN_API").ok())
        .ok_or_else(|| anyhow!("pass --api http://NODE:7400 (the API of any node)"))?;
    let token = match token {
        Some(t) => t.to_string(),
        None => read_token_interactively()?,
    };
    let client = Api::new(&url, &token)?;
    let account: w::Account = client.get("/account")?.value;
    let path = Login {
        api: Some(client.url.clone()),
        token: Some(token),
    }
    .save()?;
    println!(
        "Logged in as {} at {} (saved in {})",
        account.email,
        client.url,
        path.display()
    );
    Ok(())
}

fn read_token_interactively() -> Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("API token: ");
        std::io::stderr().flush()?;
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let t = line.trim().to_string();
    if t.is_empty() {
        bail!("no token given; pass --token or type the token printed by havend init");
    }
    Ok(t)
}

/// `hctl logout`: removes the saved login.
pub fn logout() -> Result<()> {
    let path = client::config_path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => println!("Logged out (removed {})", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => println!("Not logged in"),
        Err(e) => return Err(e).context(format!("remove {}", path.display())),
    }
    Ok(())
}

/// `hctl whoami`.
pub fn whoami(api: &Api) -> Result<()> {
    let account: w::Account = api.get("/account")?.value;
    println!("{}", account.email);
    Ok(())
}
