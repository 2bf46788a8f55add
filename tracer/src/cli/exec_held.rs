//! `__exec-held`: the first stage of a `run` child (internal). See `process::exec_held`.

use std::ffi::OsString;

use clap::Args;
use tt_tracer::{
    process::{self, Credentials},
    Error,
};

#[derive(Args, Debug)]
pub struct ExecHeldArgs {
    #[arg(long)]
    hold_fd: i32,
    #[arg(long)]
    status_fd: i32,
    #[arg(long)]
    uid: Option<u32>,
    #[arg(long)]
    gid: Option<u32>,
    #[arg(last = true, required = true)]
    command: Vec<OsString>,
}

pub fn exec_held(a: ExecHeldArgs) -> anyhow::Result<u8> {
    let creds = a.uid.zip(a.gid).map(|(uid, gid)| Credentials { uid, gid });
    match process::exec_held(a.hold_fd, a.status_fd, creds, &a.command) {
        Ok(never) => match never {},
        // The tracer read the errno from the status pipe and says it, once: exit quietly with
        // the shells' code.
        Err(e @ Error::CannotRun { .. }) => Ok(super::code_for(&e.into())),
        Err(e) => Err(e.into()),
    }
}
