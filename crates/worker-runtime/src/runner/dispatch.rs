//! Keyed dispatch: at most `concurrency` messages are processed at once, and one booking is
//! never processed twice at once in-process. A booking with messages in hand has a task of
//! its own that takes them in order; tasks take a processing slot each in turn (FIFO), so a
//! free slot goes to the booking that has waited longest, whatever its key.
//!
//! This replaced lanes fixed by a hash of the booking (2026-12-06). With a vendor answering in
//! 100 ms, hashed lanes left slots idle while others had several messages queued behind one
//! booking, most of all in a backlog's tail: the workers drained 44–54 % of what their lanes
//! allow. An idle worker also no longer keeps a task per lane in memory.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
};

use async_nats::jetstream::{self, AckKind};
use tokio::{
    sync::{Semaphore, mpsc},
    task::JoinSet,
    time::{Instant, MissedTickBehavior},
};

use super::{Shared, process::process};
use crate::handler::Handler;

type Sender = mpsc::UnboundedSender<jetstream::Message>;
type Receiver = mpsc::UnboundedReceiver<jetstream::Message>;

/// The bookings that have a task, with the way to hand it their next message. A task leaves
/// it under the same lock as messages are handed in, so no message reaches a finished task.
type Bookings = Mutex<HashMap<String, Sender>>;

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Shared by both feeds' pull loops. Dropping it (a crash) aborts every booking's task.
pub(super) struct Dispatcher<H: Handler> {
    s: Arc<Shared<H>>,
    bookings: Arc<Bookings>,
    slots: Arc<Semaphore>,
    tasks: Mutex<JoinSet<()>>,
}

impl<H: Handler> Dispatcher<H> {
    pub(super) fn new(s: Arc<Shared<H>>) -> Self {
        let slots = Arc::new(Semaphore::new(s.cfg.concurrency.max(1)));
        Dispatcher {
            s,
            bookings: Arc::default(),
            slots,
            tasks: Mutex::new(JoinSet::new()),
        }
    }

    /// Hands `msg` to its booking's task, starting one when the booking has none. Never waits:
    /// what is in hand is bounded by the consumers' `max_ack_pending`.
    pub(super) fn dispatch(&self, msg: jetstream::Message) {
        let key = booking_key(msg.message.subject.as_str()).to_owned();
        let mut bookings = locked(&self.bookings);
        let msg = match bookings.get(&key) {
            Some(tx) => match tx.send(msg) {
                Ok(()) => return,
                // Its task ended abnormally (a panic): a new one takes over.
                Err(mpsc::error::SendError(msg)) => msg,
            },
            None => msg,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        bookings.insert(key.clone(), tx);
        drop(bookings);
        let task = booking_task(
            self.s.clone(),
            self.bookings.clone(),
            self.slots.clone(),
            key,
            msg,
            rx,
        );
        let mut tasks = locked(&self.tasks);
        // Finished tasks are reaped here, so the set holds only live ones.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    /// After both feeds stopped and `stopping` is set: every task finishes the message it is
    /// processing, hands back what waits (NAK, for redelivery to another replica) and ends.
    pub(super) async fn drain(&self) {
        let mut tasks = std::mem::take(&mut *locked(&self.tasks));
        while tasks.join_next().await.is_some() {}
    }
}

/// What makes two messages "the same booking": `<tenant>.<key>`, the last two tokens of both
/// `bookings.<kind>.<tenant>.<key>` and `sync.<vendor>.<tenant>.<key>`, so an event and a
/// repair command of one booking never run at once.
fn booking_key(subject: &str) -> &str {
    let mut dots = subject.rmatch_indices('.').map(|(i, _)| i);
    let _key_dot = dots.next();
    match dots.next() {
        Some(i) => &subject[i + 1..],
        None => subject,
    }
}

/// One booking's messages, in the order they were pulled, one at a time, each in a slot.
/// Messages waiting (for the slot, or behind the one being processed) get progress acks, so
/// a slow booking ahead of them does not let their `ack_wait` pass (a redelivery to another
/// replica meanwhile).
async fn booking_task<H: Handler>(
    s: Arc<Shared<H>>,
    bookings: Arc<Bookings>,
    slots: Arc<Semaphore>,
    key: String,
    first: jetstream::Message,
    mut rx: Receiver,
) {
    let mut waiting = VecDeque::from([first]);
    // Our sender stays in `bookings` until we leave, so this stays true; the guard only keeps
    // a closed channel from spinning the loop.
    let mut open = true;
    let every = s.cfg.progress_interval;
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        if waiting.is_empty() {
            // Leaving and being handed a message are under one lock: nothing is lost between.
            let mut map = locked(&bookings);
            match rx.try_recv() {
                Ok(m) => waiting.push_back(m),
                Err(_) => {
                    map.remove(&key);
                    return;
                }
            }
        }
        if s.stopping.is_cancelled() {
            hand_back(&mut waiting).await;
            continue;
        }
        // Wait for a slot, keeping every waiting message alive. One acquire for the whole
        // wait: dropping it (to take in a message, or to send progress acks) would give up
        // this booking's place in the queue.
        let slot = {
            let acquire = slots.clone().acquire_owned();
            tokio::pin!(acquire);
            loop {
                tokio::select! {
                    slot = &mut acquire => break slot.ok(),
                    m = rx.recv(), if open => match m {
                        Some(m) => waiting.push_back(m),
                        None => open = false,
                    },
                    _ = tick.tick() => progress(&waiting).await,
                    _ = s.stopping.cancelled() => break None,
                }
            }
        };
        let Some(slot) = slot else {
            hand_back(&mut waiting).await;
            if s.stopping.is_cancelled() {
                continue;
            }
            // The semaphore closed (it never is): leave; `dispatch` replaces a task whose
            // receiver is gone.
            return;
        };
        let Some(msg) = waiting.pop_front() else {
            continue;
        };
        s.metrics.in_flight(1);
        // Boxed: a task waiting for a slot stays small.
        let mut work = Box::pin(process(&s, msg));
        loop {
            tokio::select! {
                _ = &mut work => break,
                m = rx.recv(), if open => match m {
                    Some(m) => waiting.push_back(m),
                    None => open = false,
                },
                _ = tick.tick() => progress(&waiting).await,
            }
        }
        s.metrics.in_flight(-1);
        drop(slot);
    }
}

/// Not started: given back now (NAK, for redelivery to another replica) rather than after
/// `ack_wait`.
async fn hand_back(waiting: &mut VecDeque<jetstream::Message>) {
    for m in waiting.drain(..) {
        let _ = m.ack_with(AckKind::Nak(None)).await;
    }
}

async fn progress(waiting: &VecDeque<jetstream::Message>) {
    for m in waiting {
        if let Err(e) = m.ack_with(AckKind::Progress).await {
            tracing::debug!(error = %e, "progress ack of a waiting message");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::booking_key;

    #[test]
    fn an_event_and_a_repair_command_of_one_booking_share_a_key() {
        assert_eq!(booking_key("ns1.bookings.reservation.t1.r-9"), "t1.r-9");
        assert_eq!(booking_key("sync.tapkey.t1.r-9"), "t1.r-9");
        assert_ne!(
            booking_key("bookings.reservation.t1.r-9"),
            booking_key("bookings.reservation.t2.r-9")
        );
        assert_eq!(booking_key("odd"), "odd");
    }
}
