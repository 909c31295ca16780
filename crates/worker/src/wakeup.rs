//! When the worker looks for jobs: on every NOTIFY of a new job, and on a timer for what
//! nothing announces (retries, replays, rescued orphans).
//!
//! apalis's own stream strategy takes one notification per poll and then leaves the stream
//! without a waker while it fetches. If that fetch finds nothing new (the job it announced
//! was already taken by an earlier fetch), the notifications that arrive afterwards wake
//! nobody, and pickup falls back to the timer: measured at 500 events/s, lag p50 300 ms and
//! p99 800 ms with a 1 s timer. Taking every pending notification until the stream is
//! pending again keeps a waker registered, so each new job wakes the worker.

use std::{
    task::{Context, Poll},
    time::Duration,
};

use apalis_core::backend::ext::poll_strategy::{IntervalStrategy, PollSnapshot, PollStrategy};
use futures::{Stream, StreamExt as _};

pub struct Wakeups<S> {
    notifications: Option<S>,
    timer: IntervalStrategy,
}

impl<S> Wakeups<S> {
    pub fn new(notifications: S, every: Duration) -> Self {
        Self {
            notifications: Some(notifications),
            timer: IntervalStrategy::new(every),
        }
    }
}

impl<S: Stream + Unpin> PollStrategy for Wakeups<S> {
    fn poll_drive(&mut self, cx: &mut Context<'_>, snapshot: &PollSnapshot) -> Poll<Option<()>> {
        let mut woken = false;
        if let Some(stream) = &mut self.notifications {
            loop {
                match stream.poll_next_unpin(cx) {
                    Poll::Ready(Some(_)) => woken = true,
                    // The listener is gone (apalis reconnects by rebuilding the worker);
                    // the timer still finds every job meanwhile.
                    Poll::Ready(None) => {
                        self.notifications = None;
                        break;
                    }
                    Poll::Pending => break,
                }
            }
        }
        if self.timer.poll_drive(cx, snapshot).is_ready() {
            woken = true;
        }
        if woken {
            Poll::Ready(Some(()))
        } else {
            Poll::Pending
        }
    }
}
