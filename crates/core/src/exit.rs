//! How every binary ends when it cannot do its job: one line on stderr, `error: …`, and an
//! exit status (2: a bad or missing setting, clap's usage errors included; 1: a failure
//! such as an unreachable or un-migrated database, or a port in use). No backtrace, no
//! `Caused by:` list, whatever `RUST_BACKTRACE` says: mains return an [`ExitCode`], never
//! an `anyhow::Result`.

use std::{fmt::Display, process::ExitCode};

use clap::{
    Command, CommandFactory, FromArgMatches,
    error::{ContextKind, ContextValue, ErrorKind},
};

/// Rules between settings, checked right after parsing (ranges of single settings are
/// clap's value parsers).
pub trait Validate {
    /// The first broken rule, as `SETTING (--flag): what is wrong`.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Parses the command line and environment into `T`, or exits 2 with one line naming the
/// setting (its environment variable and flag). `--help` and `--version` print as usual.
pub fn parse<T: CommandFactory + FromArgMatches + Validate>() -> T {
    let mut command = T::command();
    let parsed = command
        .try_get_matches_from_mut(std::env::args_os())
        .and_then(|mut m| T::from_arg_matches_mut(&mut m));
    let value = match parsed {
        Ok(v) => v,
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => usage_error(clap_error_line(&e, &command)),
        },
    };
    if let Err(line) = value.validate() {
        usage_error(line);
    }
    value
}

/// Prints `error: {line}` and exits 2.
pub fn usage_error(line: impl Display) -> ! {
    eprintln!("error: {line}");
    std::process::exit(2)
}

/// Prints the failure as one line and returns exit status 1.
pub fn report(e: &anyhow::Error) -> ExitCode {
    eprintln!("error: {}", one_line(e));
    ExitCode::from(1)
}

/// An error and its causes in one line, each part once: a database error is described by
/// [`crate::db::describe`] (sqlx's own chain below it is noise), and a cause whose text an
/// outer part already contains (`refused: refused`) is dropped.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = if let Some(db) = cause.downcast_ref::<sqlx::Error>() {
            crate::db::describe(db)
        } else if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            describe_io(io)
        } else {
            cause.to_string()
        };
        let text = text.replace('\n', " ");
        if !parts.iter().any(|p| p.contains(text.as_str())) {
            parts.push(text);
        }
        if cause.is::<sqlx::Error>() {
            break;
        }
    }
    parts.join(": ")
}

/// `address already in use`, not `Address already in use (os error 98)`.
fn describe_io(io: &std::io::Error) -> String {
    let text = io.to_string();
    let text = match text.find(" (os error ") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `ENV (--flag)` for an argument with an environment variable, else clap's name for it.
fn setting(command: &Command, shown: &str) -> String {
    let long = shown
        .strip_prefix("--")
        .map(|s| s.split([' ', '=']).next().unwrap_or(s));
    let Some(long) = long else {
        return shown.to_owned();
    };
    match find_env(command, long) {
        Some(env) => format!("{env} (--{long})"),
        None => format!("--{long}"),
    }
}

fn find_env(command: &Command, long: &str) -> Option<String> {
    command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .or_else(|| {
            command
                .get_subcommands()
                .find_map(|sub| find_env(sub, long))
        })
}

fn clap_error_line(e: &clap::Error, command: &Command) -> String {
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    match (e.kind(), arg) {
        (ErrorKind::ValueValidation, Some(arg)) => {
            // The source is our parser's or clap's range message; the value itself is left
            // out, since it may be a secret.
            let why = std::error::Error::source(e)
                .map(|s| s.to_string())
                .unwrap_or_else(|| "invalid value".into());
            format!("{}: {why}", setting(command, &arg))
        }
        (ErrorKind::InvalidValue, Some(arg)) => {
            let value = match e.get(ContextKind::InvalidValue) {
                Some(ContextValue::String(v)) if !v.is_empty() => v.clone(),
                _ => return format!("{}: a value is required", setting(command, &arg)),
            };
            match e.get(ContextKind::ValidValue) {
                Some(ContextValue::Strings(valid)) if !valid.is_empty() => format!(
                    "{}: '{value}' is not one of {}",
                    setting(command, &arg),
                    valid.join(", ")
                ),
                _ => format!("{}: '{value}' is not valid", setting(command, &arg)),
            }
        }
        (ErrorKind::MissingRequiredArgument, _) => match e.get(ContextKind::InvalidArg) {
            Some(ContextValue::Strings(args)) => {
                // Settings (with an environment variable) are "not set"; arguments of the
                // command line alone are "missing".
                let (settings, arguments): (Vec<String>, Vec<String>) = args
                    .iter()
                    .map(|a| setting(command, a))
                    .partition(|name| name.contains(" (--"));
                let mut parts = Vec::new();
                if !arguments.is_empty() {
                    parts.push(format!("missing {}", arguments.join(", ")));
                }
                match settings.as_slice() {
                    [] => {}
                    [one] => parts.push(format!("{one} is not set")),
                    many => parts.push(format!("{} are not set", many.join(", "))),
                }
                parts.join("; ")
            }
            _ => first_line(e),
        },
        _ => first_line(e),
    }
}

/// clap's own message, without its usage and help lines.
fn first_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let line = rendered.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Demo {
        #[arg(long, env = "DEMO_ATTEMPTS", value_parser = clap::value_parser!(u32).range(1..=1000))]
        attempts: u32,
        #[arg(long, env = "DEMO_URL", value_parser = crate::config::database_url)]
        url: secrecy::SecretString,
    }

    fn line(args: &[&str]) -> String {
        let mut command = Demo::command();
        let e = command.try_get_matches_from_mut(args).unwrap_err();
        clap_error_line(&e, &command)
    }

    #[test]
    fn clap_errors_name_the_variable_and_the_flag_and_never_the_secret() {
        assert_eq!(
            line(&["demo", "--attempts", "0", "--url", "postgres://u@h/d"]),
            "DEMO_ATTEMPTS (--attempts): 0 is not in 1..=1000"
        );
        assert_eq!(
            line(&["demo", "--attempts", "3", "--url", "mysql://u:hunter2@h/d"]),
            "DEMO_URL (--url): mysql:// is not PostgreSQL (expected postgres:// or postgresql://)"
        );
        assert_eq!(
            line(&["demo"]),
            "DEMO_ATTEMPTS (--attempts), DEMO_URL (--url) are not set"
        );
        #[derive(Debug, Parser)]
        struct Positional {
            #[arg(value_name = "TYPE")]
            event_type: String,
            #[arg(long, env = "DEMO_SECRET")]
            secret: String,
        }
        let mut command = Positional::command();
        let e = command.try_get_matches_from_mut(["demo"]).unwrap_err();
        assert_eq!(
            clap_error_line(&e, &command),
            "missing <TYPE>; DEMO_SECRET (--secret) is not set"
        );
        assert_eq!(
            line(&["demo", "--url", "postgres://u@h/d", "--attempts"]),
            "DEMO_ATTEMPTS (--attempts): a value is required"
        );
        assert_eq!(
            line(&["demo", "--nope"]),
            "unexpected argument '--nope' found"
        );
    }

    #[test]
    fn one_line_keeps_each_part_once() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = anyhow::Error::new(sqlx::Error::Io(io)).context("reading the queue");
        assert_eq!(one_line(&e), "reading the queue: connection refused");
        let e = anyhow::anyhow!("address in use").context("LISTEN_ADDR: address in use");
        assert_eq!(one_line(&e), "LISTEN_ADDR: address in use");
        let io = std::io::Error::from_raw_os_error(98);
        let e = anyhow::Error::new(io).context("METRICS_ADDR: cannot listen on 127.0.0.1:9");
        assert_eq!(
            one_line(&e),
            "METRICS_ADDR: cannot listen on 127.0.0.1:9: address already in use"
        );
    }
}
