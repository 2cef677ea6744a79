use clap::Parser;
use opencode_worker::cli::{Cli, Command};
use opencode_worker::config::Config;

fn main() {
    // The sandbox spawner is this binary re-executed by the worker; it must run before
    // anything else (no argument parsing, no logging, no threads).
    if std::env::args_os().nth(1).as_deref() == Some(opencode_worker::sandbox::SPAWNER_ARG.as_ref())
    {
        opencode_worker::sandbox::spawner_main();
    }
    let cli = Cli::parse();
    let mut overrides = cli.overrides.clone();
    let quiet_by_default = matches!(
        cli.command,
        Some(Command::Run(_)) | Some(Command::Schema(_))
    );
    if cli.log_level.is_none() && quiet_by_default && std::env::var_os("RUST_LOG").is_none() {
        overrides.push(("logging.level".into(), "warn".into()));
    }
    if let Some(level) = &cli.log_level {
        overrides.push(("logging.level".into(), level.clone().into()));
    }
    if let Some(format) = &cli.log_format {
        overrides.push(("logging.format".into(), format.clone().into()));
    }
    let config = match Config::load(cli.config.as_deref(), &overrides) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("opencode-worker: {error}");
            std::process::exit(2);
        }
    };
    opencode_worker::logging::init(&config.logging);
    let code = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => opencode_worker::serve::serve(config),
        Command::Mcp => opencode_worker::mcp::run(config),
        Command::Run(args) => opencode_worker::run_cmd::run(config, args),
        Command::Schema(args) => schema(args),
        Command::Doctor => doctor(&config),
        Command::Policy(opencode_worker::cli::PolicyCommand::Check { command }) => {
            opencode_worker::policy::run_check_cli(&config.policy, &command.join(" "))
        }
    };
    std::process::exit(code);
}

fn schema(args: opencode_worker::cli::SchemaArgs) -> i32 {
    if let Some(dir) = args.out {
        return match opencode_worker::schema_cmd::write(&dir) {
            Ok(count) => {
                eprintln!("wrote {count} schema files to {}", dir.display());
                0
            }
            Err(error) => {
                eprintln!("opencode-worker schema: {}: {error}", dir.display());
                1
            }
        };
    }
    let dir = args.check.unwrap_or_default();
    let problems = opencode_worker::schema_cmd::check(&dir);
    if problems.is_empty() {
        eprintln!("schema files in {} are up to date", dir.display());
        0
    } else {
        for problem in &problems {
            eprintln!("{}: {problem}", dir.display());
        }
        eprintln!(
            "run `opencode-worker schema --out {}` and commit the result",
            dir.display()
        );
        1
    }
}

fn doctor(config: &Config) -> i32 {
    let host = opencode_worker::sandbox::Host::probe(&config.sandbox());
    print!("{}", opencode_worker::sandbox::doctor_report(&host));
    print!(
        "{}",
        opencode_worker::workspace::probe::doctor_line(&config.workspace)
    );
    if host.strict_gaps().is_empty() { 0 } else { 1 }
}
