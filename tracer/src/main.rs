//! `tt-tracer`: the command line. Thin: each subcommand is a file in cli/.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
