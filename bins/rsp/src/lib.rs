//! The `rsp` command line, as a library so integration tests call the same code.
//!
//! `lib.rs` only parses the command line, sets up logging and dispatches. Each subcommand
//! lives in its own module with an `XxxArgs` struct (clap `Args`) and a
//! `run(&XxxArgs) -> anyhow::Result<ExitCode>`. Adding one: `pub mod xxx;`, a variant in
//! [`Command`] and its arm in [`run`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod args;
pub mod bench;
mod bench_flood;
pub mod calcapp;
pub mod call;
pub mod decode;
pub mod dump;
pub mod fetch;
pub mod gateway;
pub mod logging;
pub mod monitor;
pub mod packaging;
pub mod pingpong;
pub mod registrar;
pub mod resolve;
pub mod serve;
pub mod session_args;
pub mod soak;

/// Exit statuses shared by all subcommands (also in `rsp --help`).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The command ran but something failed (decode: a message did not decode).
    pub const FAILURE: u8 = 1;
    /// Usage or configuration error: bad flag, unreadable file, invalid value.
    pub const USAGE: u8 = 2;

    /// An error that is the user's to fix (a bad flag, file or value): exit [`USAGE`].
    /// Every other `Err` of a subcommand is a runtime failure: exit [`FAILURE`].
    #[derive(Debug)]
    pub struct Usage(pub anyhow::Error);

    impl std::fmt::Display for Usage {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{:#}", self.0)
        }
    }

    impl std::error::Error for Usage {}

    /// Mark `e` as a usage or configuration error (for `map_err`).
    pub fn usage(e: impl Into<anyhow::Error>) -> anyhow::Error {
        anyhow::Error::new(Usage(e.into()))
    }

    /// The exit status for a subcommand's `Err`: [`USAGE`] for errors marked with
    /// [`usage`] and for a transport the kernel lacks (SCTP asked for on a host without
    /// it: the configuration cannot work here), else [`FAILURE`].
    pub fn code_of(e: &anyhow::Error) -> u8 {
        let kernel_lacks_sctp = e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(rserpool::transport::sctp::is_sctp_unavailable)
        });
        if e.chain().any(|c| c.is::<Usage>()) || kernel_lacks_sctp {
            USAGE
        } else {
            FAILURE
        }
    }
}

const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  success
  1  the command ran but something failed (decode: at least one message did not decode;
     a port already in use, no registrar reachable, a refused registration)
  2  usage or configuration error (bad flag or value, unreadable input or config file,
     a transport the kernel lacks)";

/// rserpool command line: RSerPool (RFC 5351–5356, ASAP and ENRP) tools.
#[derive(Debug, Parser)]
#[command(name = "rsp", version, after_help = EXIT_STATUS_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub log: logging::LogArgs,
    #[command(subcommand)]
    pub cmd: Command,
}

/// One variant per subcommand; its help text lives on the module's `Args` struct.
// Parsed once per run: the registrar's many settings make its variant large, harmlessly.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    Decode(decode::DecodeArgs),
    /// Run a registrar: pool elements register, pool users resolve pool handles (ASAP over SCTP/TCP).
    Registrar(registrar::RegistrarArgs),
    /// Print a registrar's handlespace (pools, PEs, policies, load, lifetimes, addresses).
    Dump(dump::DumpArgs),
    /// Load-test a registrar (resolve or register) with 1, 16 and 256 clients.
    Bench(bench::BenchArgs),
    /// Soak a registrar: a million PEs, re-registrations, keep-alives, dying PEs and resolving PUs for a set time.
    Soak(soak::SoakArgs),
    /// Run a demo service (echo, discard, daytime, chargen, http, pingpong, files, calcapp) over TCP or SCTP as a pool element.
    Serve(serve::ServeArgs),
    /// Gateway for RSerPool-unaware clients: TCP (or HTTP) listeners in front of pools.
    Gateway(gateway::GatewayArgs),
    /// Terminal client: stdin lines to a pool element of POOL, replies to stdout, failover.
    Call(call::CallArgs),
    /// Download a file from a pool of `rsp serve files` PEs, resuming on another PE after a failure.
    Fetch(fetch::FetchArgs),
    /// Ping Pong client (RSPLIB's protocol, PPID 33) over the session layer.
    Pingpong(pingpong::PingPongArgs),
    /// CalcApp client (RSPLIB's protocol, PPID 34) over the session layer.
    Calcapp(calcapp::CalcAppArgs),
    /// Ask a registrar which PEs it selects for a pool (handle resolution, no cache).
    Resolve(resolve::ResolveArgs),
    /// Live terminal view of components' HTTP endpoints: pools, PEs with load bars, peers, rates (q quits).
    Monitor(monitor::MonitorArgs),
    Completions(packaging::CompletionsArgs),
    Man(packaging::ManArgs),
}

/// Parse the command line, set up logging, run the subcommand; never panics on bad input.
/// clap itself exits with 2 on a usage error and 0 for `--help` / `--version`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logging::init(&cli.log) {
        eprintln!("rsp: cannot set up logging: {e:#}");
        return ExitCode::from(exit::USAGE);
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rsp: error: {e:#}");
            ExitCode::from(exit::code_of(&e))
        }
    }
}

/// Dispatch to the subcommand. An `Err` exits 1 (runtime failure) or, when marked with
/// [`exit::usage`], 2 (usage or configuration error): [`exit::code_of`].
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let Cli { log, cmd } = cli;
    match cmd {
        // decode's errors are all about its input (bad hex, unreadable file).
        Command::Decode(args) => decode::run(&args).map_err(exit::usage),
        Command::Registrar(args) => registrar::run(&args, &log),
        Command::Dump(args) => dump::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Soak(args) => soak::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Gateway(args) => gateway::run(&args),
        Command::Monitor(args) => monitor::run(&args),
        Command::Call(args) => call::run(&args),
        Command::Fetch(args) => fetch::run(&args),
        Command::Pingpong(args) => pingpong::run(&args),
        Command::Calcapp(args) => calcapp::run(&args),
        Command::Resolve(args) => resolve::run(&args),
        Command::Completions(args) => packaging::completions(&args),
        Command::Man(args) => packaging::man(&args).map_err(exit::usage),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli = Cli::try_parse_from(["rsp", "decode", "-vv", "--log-json", "--hex", "00"])
            .expect("parses");
        assert_eq!(cli.log.verbose, 2);
        assert!(cli.log.log_json);
        let Command::Decode(args) = cli.cmd else {
            panic!("not decode")
        };
        assert_eq!(args.hex, vec!["00".to_string()]);
    }

    #[test]
    fn help_documents_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit status:"), "{help}");
        assert!(
            help.contains("1  the command ran but something failed"),
            "{help}"
        );
    }
}
