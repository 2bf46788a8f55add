//! `tt-tracer watch`: every tt-metal process on the host, whatever its library, until stopped.

use clap::Args;
use tokio::signal::unix::{signal as unix_signal, SignalKind};
use tt_tracer::sinks::Sink as _;

use super::{trace, TraceOptions};

#[derive(Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    opts: TraceOptions,
}

/// Why the reader stopped for a moment.
enum Wake {
    Stop,
    Rotate,
}

pub fn watch(a: WatchArgs) -> anyhow::Result<u8> {
    let catalog = trace::catalog(&a.opts)?;
    tt_tracer::kernel::check_privileges()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut out = trace::outputs(&a.opts).await?;
        let mut term = unix_signal(SignalKind::terminate())?;
        let mut hangup = unix_signal(SignalKind::hangup())?;
        let name = catalog.library.clone();
        let mut session = trace::start(trace::Scope::Host, catalog, &a.opts)?;
        out.watch_health(&mut session);
        eprintln!(
            "tt-tracer: watching every process that loads a {name} ({} armed now); Ctrl-C to stop",
            session.libraries.traced().len()
        );
        loop {
            let mut print = out.sinks.as_callback();
            let wake = session
                .run_until(
                    async {
                        tokio::select! {
                            _ = tokio::signal::ctrl_c() => Wake::Stop,
                            _ = term.recv() => Wake::Stop,
                            _ = hangup.recv() => Wake::Rotate,
                        }
                    },
                    &mut print,
                )
                .await;
            drop(print);
            match wake {
                Wake::Stop => break,
                Wake::Rotate => out.sinks.rotate(),
            }
        }
        trace::finish(&mut session, &a.opts, &mut out.sinks)?;
        session.detach_in_background();
        Ok(0)
    })
}
