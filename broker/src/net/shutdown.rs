//! Shutdown signalling: a broadcast says stop; every task holding a
//! [`Shutdown`] sees it at its next await point.

use tokio::sync::broadcast;

/// Listens for the server-wide stop signal.
#[derive(Debug)]
pub struct Shutdown {
    stopped: bool,
    notify: broadcast::Receiver<()>,
}

impl Shutdown {
    /// Wraps a receiver of the stop broadcast.
    pub fn new(notify: broadcast::Receiver<()>) -> Shutdown {
        Shutdown { stopped: false, notify }
    }

    /// Whether the stop signal has been seen.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Waits for the stop signal.
    pub async fn recv(&mut self) {
        if self.stopped {
            return;
        }
        // A lagged or closed channel means the sender is gone: stop too.
        let _ = self.notify.recv().await;
        self.stopped = true;
    }
}
