//! Signal subscriptions: signal-hook's async-signal-safe handler writes to
//! a pipe the loop polls, and the loop calls the subscribers on its thread.

use std::io;

use mio::{Interest, Registry, Token};
use signal_hook_mio::v1_0::Signals;

use super::ctx::Ctx;

type SignalHook = Box<dyn FnMut(&mut Ctx<'_>, i32)>;

/// The loop's signal source and who listens to which signal.
#[derive(Default)]
pub(crate) struct SignalHooks {
    source: Option<Signals>,
    hooks: Vec<(i32, SignalHook)>,
}

impl SignalHooks {
    /// Subscribes `hook` to `signal`, registering the source at `token`
    /// the first time.
    pub(crate) fn add(&mut self, registry: &Registry, token: Token, signal: i32, hook: SignalHook) -> io::Result<()> {
        if signal_hook::consts::FORBIDDEN.contains(&signal) {
            let why = format!("signal {signal} cannot be handled (SIGKILL, SIGSTOP and fault signals cannot)");
            return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        }
        match &mut self.source {
            Some(s) => s.add_signal(signal)?,
            None => {
                let mut s = Signals::new([signal])?;
                registry.register(&mut s, token, Interest::READABLE)?;
                self.source = Some(s);
            }
        }
        self.hooks.push((signal, hook));
        Ok(())
    }

    /// Calls the subscribers of every signal that arrived.
    pub(crate) fn dispatch(&mut self, cx: &mut Ctx<'_>) {
        let Some(source) = &mut self.source else { return };
        for signal in source.pending() {
            for (s, hook) in &mut self.hooks {
                if *s == signal {
                    hook(cx, signal);
                }
            }
        }
    }
}
