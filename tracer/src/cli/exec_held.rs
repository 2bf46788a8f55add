//! `__exec-held`: the first stage of a `run` child (internal). See `process::exec_held`.

use std::ffi::OsString;

use clap::Args;
use tt_tracer::process::{self, Credentials};

#[derive(Args, Debug)]
pub struct ExecHeldArgs {
    #[arg(long)]
    hold_fd: i32,
    #[arg(long)]
    uid: Option<u32>,
    #[arg(long)]
    gid: Option<u32>,
    #[arg(last = true, required = true)]
    command: Vec<OsString>,
}

pub fn exec_held(a: ExecHeldArgs) -> anyhow::Result<u8> {
    let creds = a.uid.zip(a.gid).map(|(uid, gid)| Credentials { uid, gid });
    match process::exec_held(a.hold_fd, creds, &a.command)? {}
}
