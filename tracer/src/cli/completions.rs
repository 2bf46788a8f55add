//! `tt-tracer completions SHELL` and `tt-tracer manpage`: generated from the same clap
//! definitions as the parser, so they never drift from it.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::Cli;

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to write completions for (to stdout).
    ///
    /// Example: tt-tracer completions bash > /etc/bash_completion.d/tt-tracer
    shell: Shell,
}

pub fn completions(a: CompletionsArgs) -> anyhow::Result<u8> {
    clap_complete::generate(
        a.shell,
        &mut Cli::command(),
        "tt-tracer",
        &mut std::io::stdout(),
    );
    Ok(0)
}

/// Writes the roff man page to stdout (e.g. `tt-tracer manpage > tt-tracer.1`).
pub fn manpage() -> anyhow::Result<u8> {
    clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
    Ok(0)
}
