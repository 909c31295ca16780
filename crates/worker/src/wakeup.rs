//! When the worker looks for jobs: on every NOTIFY of a new job, and on a timer for what
//! nothing announces (retries, replays, rescued orphans).
//!
//! apalis's own stream strategy takes one notification per poll and then leaves the stream
//! without a waker while it fetches. If that fetch finds nothing new (the job it announced
//! was already taken by an earlier fetch), the notifications that arrive afterwards wake
//! nobody, and pickup falls back to the timer: measured at 500 events/s, lag p50 300 ms and
//! p99 800 ms with a 1 s timer. Taking every pending notification until the stream is
//! pending again keeps a waker registered, so each new job wakes the worker; and after
//! taking some, it polls once more, in case they came in while a fetch was in flight.

use std::{
    task::{Context, Poll},
    time::Duration,
};

use apalis_core::backend::ext::poll_strategy::{IntervalStrategy, PollSnapshot, PollStrategy};
use futures::{Stream, StreamExt as _};

pub struct Wakeups<S> {
    listen: Box<dyn Fn() -> S + Send + Sync>,
    /// None after the listener's connection ended, until the next timer tick listens again.
    notifications: Option<S>,
    /// Notifications were taken since the last poll: poll once more after this one, in
    /// case they arrived while a fetch was in flight whose snapshot predates their jobs.
    again: bool,
    timer: IntervalStrategy,
}

impl<S> Wakeups<S> {
    /// `listen` opens the notification stream, and again (at most once per tick of the
    /// timer) whenever it ends.
    pub fn new(listen: impl Fn() -> S + Send + Sync + 'static, every: Duration) -> Self {
        Self {
            notifications: Some(listen()),
            listen: Box::new(listen),
            again: false,
            timer: IntervalStrategy::new(every),
        }
    }
}

impl<S, T, E> PollStrategy for Wakeups<S>
where
    S: Stream<Item = Result<T, E>> + Unpin,
{
    fn poll_drive(&mut self, cx: &mut Context<'_>, snapshot: &PollSnapshot) -> Poll<Option<()>> {
        let mut woken = std::mem::take(&mut self.again);
        if woken {
            cx.waker().wake_by_ref();
        }
        if self.timer.poll_drive(cx, snapshot).is_ready() {
            woken = true;
            if self.notifications.is_none() {
                self.notifications = Some((self.listen)());
            }
        }
        while let Some(stream) = &mut self.notifications {
            match stream.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(_))) => {
                    woken = true;
                    self.again = true;
                }
                // Failing to listen; the stream ends next.
                Poll::Ready(Some(Err(_))) => {}
                // The listener's connection is gone (the database restarted, say): the
                // timer finds every job until it listens again.
                Poll::Ready(None) => self.notifications = None,
                Poll::Pending => break,
            }
        }
        if woken {
            Poll::Ready(Some(()))
        } else {
            Poll::Pending
        }
    }
}
