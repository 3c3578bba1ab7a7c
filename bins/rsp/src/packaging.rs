//! `rsp completions SHELL` and `rsp man DIR`: shell completion scripts and man pages,
//! generated from the command-line definition itself (so they never drift from it). The
//! Debian package ships both (`packaging/`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

/// Print a shell completion script for rsp (bash, zsh, fish, elvish, powershell).
///
/// bash: `rsp completions bash > /etc/bash_completion.d/rsp` (or source it from ~/.bashrc).
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Write the man pages (rsp.1 and one rsp-SUBCOMMAND.1 per subcommand) into DIR.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

pub fn completions(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = crate::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "rsp", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

pub fn man(args: &ManArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let cmd = crate::Cli::command();
    let mut written = Vec::new();
    let mut page = |c: &clap::Command, name: String| -> anyhow::Result<()> {
        let path = args.dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(c.clone().name(name.clone()))
            .render(&mut out)
            .with_context(|| format!("cannot render the page of {name}"))?;
        std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
        Ok(())
    };
    page(&cmd, "rsp".into())?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        page(sub, format!("rsp-{}", sub.get_name()))?;
    }
    for p in written {
        println!("{}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}
