//! The hand-offs between the claimer, the workers and the flusher, under one lock.
//!
//! Every run touches three pieces of shared state when it ends: its outcome goes to the
//! flusher, its place goes back to the claimer, and its worker takes the next run. A worker
//! does all three in one critical section ([`Producer::end_job`]), so the end of a run
//! touches one contended cache line, not three; the claimer and the flusher take their side
//! in batches.
//!
//! A job is *in flight* from [`Exchange::push_jobs`] until a producer's
//! [`end_job`](Producer::end_job) hands over its outcome.

use super::sync::{Mutex, MutexGuard};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::Notify;

/// Jobs from one claimer to many workers, outcomes from the workers to one flusher, and
/// the count of jobs in flight between them.
#[derive(Debug)]
pub(crate) struct Exchange<J, O> {
    state: Mutex<State<J, O>>,
    /// Workers waiting for a job.
    jobs_ready: Notify,
    /// The claimer waiting for the in-flight count to fall to `low_water`.
    room: Notify,
    /// The flusher waiting for outcomes (or for the last producer to go).
    outcomes_ready: Notify,
    low_water: usize,
}

#[derive(Debug)]
struct State<J, O> {
    jobs: VecDeque<J>,
    outcomes: Vec<O>,
    /// Jobs pushed and not yet ended: queued or running.
    in_flight: usize,
    /// No more jobs will be pushed: workers end once the queue is empty.
    jobs_closed: bool,
    /// Live [`Producer`]s; with none left and no outcomes queued, the flusher ends.
    producers: usize,
}

impl<J, O> Exchange<J, O> {
    /// An exchange whose claimer waits while more than `low_water` jobs are in flight.
    pub fn new(low_water: usize) -> Self {
        Exchange {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                outcomes: Vec::new(),
                in_flight: 0,
                jobs_closed: false,
                producers: 0,
            }),
            jobs_ready: Notify::new(),
            room: Notify::new(),
            outcomes_ready: Notify::new(),
            low_water,
        }
    }

    fn state(&self) -> MutexGuard<'_, State<J, O>> {
        // Every change under the lock is a push, pop or counter step that cannot panic
        // midway, so a poisoned lock still guards consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A handle that may hand over outcomes; the outcome side closes when the last one
    /// is dropped (however its owner ends: returning, panicking or aborted).
    pub fn producer(self: &Arc<Self>) -> Producer<J, O> {
        self.state().producers += 1;
        Producer(self.clone())
    }

    /// Jobs pushed and not yet ended.
    pub fn in_flight(&self) -> usize {
        self.state().in_flight
    }

    /// Waits until at most `low_water` jobs are in flight.
    pub async fn room(&self) {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            // Registered before looking, so an `end_job` in between is not missed.
            room.as_mut().enable();
            if self.in_flight() <= self.low_water {
                return;
            }
            room.await;
        }
    }

    /// Queues jobs for the workers; each is in flight until it is ended.
    pub fn push_jobs(&self, jobs: Vec<J>) {
        let added = jobs.len();
        {
            let mut state = self.state();
            state.in_flight += added;
            state.jobs.extend(jobs);
        }
        // Each notify wakes one idle worker; busy ones take the rest when they come back.
        for _ in 0..added {
            self.jobs_ready.notify_one();
        }
    }

    /// No more jobs: workers end once the queue is empty.
    pub fn close_jobs(&self) {
        self.state().jobs_closed = true;
        self.jobs_ready.notify_waiters();
    }

    /// The next job, waiting for one, or `None` once jobs are closed and none is queued.
    pub async fn next_job(&self) -> Option<J> {
        loop {
            let ready = self.jobs_ready.notified();
            tokio::pin!(ready);
            // Registered before looking, so a push in between is not missed.
            ready.as_mut().enable();
            {
                let mut state = self.state();
                if let Some(job) = state.jobs.pop_front() {
                    return Some(job);
                }
                if state.jobs_closed {
                    return None;
                }
            }
            ready.await;
        }
    }

    /// Takes up to `max` outcomes into `into` (which must be empty), waiting for at least
    /// one; false once every producer is gone and nothing is left.
    pub async fn take_outcomes(&self, into: &mut Vec<O>, max: usize) -> bool {
        loop {
            let ready = self.outcomes_ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            {
                let mut state = self.state();
                if state.outcomes.len() > max {
                    into.extend(state.outcomes.drain(..max));
                    return true;
                }
                if !state.outcomes.is_empty() {
                    // The whole queue, by swapping buffers: both keep their capacity.
                    std::mem::swap(&mut state.outcomes, into);
                    return true;
                }
                if state.producers == 0 {
                    return false;
                }
            }
            ready.await;
        }
    }
}

/// The right to hand over outcomes; see [`Exchange::producer`].
#[derive(Debug)]
pub(crate) struct Producer<J, O>(Arc<Exchange<J, O>>);

impl<J, O> Producer<J, O> {
    /// The exchange this producer hands over to.
    pub fn exchange(&self) -> &Arc<Exchange<J, O>> {
        &self.0
    }

    /// Hands over an outcome that ends no job in flight.
    pub fn push_outcome(&self, outcome: O) {
        let was_empty = {
            let mut state = self.0.state();
            state.outcomes.push(outcome);
            state.outcomes.len() == 1
        };
        if was_empty {
            self.0.outcomes_ready.notify_one();
        }
    }

    /// Ends a job in flight with its outcome and takes the next queued job, if any: one
    /// lock for the three.
    pub fn end_job(&self, outcome: O) -> Option<J> {
        let exchange = &*self.0;
        let (was_empty, room, next) = {
            let mut state = exchange.state();
            state.outcomes.push(outcome);
            state.in_flight -= 1;
            (
                state.outcomes.len() == 1,
                state.in_flight == exchange.low_water,
                state.jobs.pop_front(),
            )
        };
        // The flusher drains the whole queue when it wakes, so it needs waking only when
        // the queue was empty; the claimer, only when the count reaches its mark.
        if was_empty {
            exchange.outcomes_ready.notify_one();
        }
        if room {
            exchange.room.notify_one();
        }
        next
    }
}

impl<J, O> Drop for Producer<J, O> {
    fn drop(&mut self) {
        let last = {
            let mut state = self.0.state();
            state.producers -= 1;
            state.producers == 0
        };
        if last {
            self.0.outcomes_ready.notify_one();
        }
    }
}

#[cfg(all(test, not(taskmill_loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    const DEADLINE: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn an_end_job_hands_over_the_outcome_and_the_next_job() {
        let exchange = Arc::new(Exchange::<u32, &str>::new(1));
        let producer = exchange.producer();
        exchange.push_jobs(vec![1, 2, 3]);
        assert_eq!(exchange.in_flight(), 3);
        assert_eq!(exchange.next_job().await, Some(1));
        assert_eq!(producer.end_job("one"), Some(2));
        assert_eq!(producer.end_job("two"), Some(3));
        assert_eq!(producer.end_job("three"), None);
        assert_eq!(exchange.in_flight(), 0);
        let mut taken = Vec::new();
        assert!(exchange.take_outcomes(&mut taken, 10).await);
        assert_eq!(taken, ["one", "two", "three"]);
    }

    #[tokio::test]
    async fn outcomes_come_in_batches_of_at_most_max() {
        let exchange = Arc::new(Exchange::<u32, u32>::new(0));
        let producer = exchange.producer();
        for i in 0..5 {
            producer.push_outcome(i);
        }
        let mut taken = Vec::new();
        assert!(exchange.take_outcomes(&mut taken, 2).await);
        assert_eq!(taken, [0, 1]);
        taken.clear();
        assert!(exchange.take_outcomes(&mut taken, 10).await);
        assert_eq!(taken, [2, 3, 4]);
    }

    #[tokio::test]
    async fn the_flusher_drains_then_ends_when_the_last_producer_goes() {
        let exchange = Arc::new(Exchange::<u32, u32>::new(0));
        let (a, b) = (exchange.producer(), exchange.producer());
        let flusher = tokio::spawn({
            let exchange = exchange.clone();
            async move {
                let (mut all, mut batch) = (Vec::new(), Vec::new());
                while exchange.take_outcomes(&mut batch, 10).await {
                    all.append(&mut batch);
                }
                all
            }
        });
        a.push_outcome(1);
        drop(a);
        b.push_outcome(2);
        drop(b);
        let all = tokio::time::timeout(DEADLINE, flusher)
            .await
            .expect("the flusher ends")
            .unwrap();
        assert_eq!(all, [1, 2]);
    }

    #[tokio::test]
    async fn an_aborted_producer_still_lets_the_flusher_end() {
        let exchange = Arc::new(Exchange::<u32, u32>::new(0));
        let producer = exchange.producer();
        let worker = tokio::spawn(async move {
            producer.push_outcome(1);
            std::future::pending::<()>().await;
            drop(producer);
        });
        let mut taken = Vec::new();
        assert!(exchange.take_outcomes(&mut taken, 10).await);
        assert_eq!(taken, [1]);
        worker.abort();
        let ended = tokio::time::timeout(DEADLINE, exchange.take_outcomes(&mut Vec::new(), 10))
            .await
            .expect("the flusher ends once its last producer is gone");
        assert!(!ended);
    }

    #[tokio::test]
    async fn an_outcome_outside_a_job_leaves_the_count_alone() {
        let exchange = Arc::new(Exchange::<u32, &str>::new(0));
        let producer = exchange.producer();
        exchange.push_jobs(vec![1]);
        producer.push_outcome("corrupt");
        assert_eq!(exchange.in_flight(), 1);
        assert_eq!(exchange.next_job().await, Some(1));
        assert_eq!(producer.end_job("one"), None);
        assert_eq!(exchange.in_flight(), 0);
        let mut taken = Vec::new();
        assert!(exchange.take_outcomes(&mut taken, 10).await);
        assert_eq!(taken, ["corrupt", "one"]);
    }

    #[tokio::test]
    async fn workers_end_once_jobs_are_closed_and_drained() {
        let exchange = Arc::new(Exchange::<u32, ()>::new(0));
        let worker = tokio::spawn({
            let exchange = exchange.clone();
            async move {
                let mut seen = Vec::new();
                while let Some(job) = exchange.next_job().await {
                    seen.push(job);
                }
                seen
            }
        });
        exchange.push_jobs(vec![7, 8]);
        exchange.close_jobs();
        let seen = tokio::time::timeout(DEADLINE, worker)
            .await
            .expect("the worker ends")
            .unwrap();
        assert_eq!(seen, [7, 8]);
    }

    #[tokio::test]
    async fn a_batch_wakes_as_many_idle_workers_as_it_has_jobs() {
        let exchange = Arc::new(Exchange::<u32, ()>::new(0));
        // Each worker takes one job and keeps it: only a wake-up brings it a job.
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let exchange = exchange.clone();
                tokio::spawn(async move { exchange.next_job().await })
            })
            .collect();
        tokio::task::yield_now().await;
        exchange.push_jobs(vec![1, 2, 3]);
        let mut taken = Vec::new();
        for worker in workers {
            let job = tokio::time::timeout(DEADLINE, worker)
                .await
                .expect("every idle worker gets a job")
                .unwrap();
            taken.push(job.unwrap());
        }
        taken.sort_unstable();
        assert_eq!(taken, [1, 2, 3]);
    }

    #[tokio::test]
    async fn the_claimer_waits_for_room_until_an_end_job_reaches_the_mark() {
        let exchange = Arc::new(Exchange::<u32, ()>::new(1));
        let producer = exchange.producer();
        exchange.push_jobs(vec![1, 2, 3]);
        assert_eq!(exchange.next_job().await, Some(1));
        let claimer = tokio::spawn({
            let exchange = exchange.clone();
            async move { exchange.room().await }
        });
        assert_eq!(producer.end_job(()), Some(2));
        tokio::task::yield_now().await;
        assert!(
            !claimer.is_finished(),
            "two jobs are still in flight, above the mark"
        );
        assert_eq!(producer.end_job(()), Some(3));
        tokio::time::timeout(DEADLINE, claimer)
            .await
            .expect("room once one job is in flight")
            .unwrap();
    }
}

/// The exchange's hand-offs under loom: every interleaving of its lock steps (see
/// [`super::sync`]); a lost wake-up leaves a thread blocked for good, which loom reports.
#[cfg(all(test, taskmill_loom))]
mod loom_model {
    use super::*;
    use loom::future::block_on;
    use loom::thread;

    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        // Three threads of a few lock steps each: a bound of 3 explores every schedule
        // with up to three forced switches, which covers each pair of racing steps.
        builder.preemption_bound = Some(3);
        builder.check(f);
    }

    #[test]
    fn every_job_reaches_one_worker_and_every_worker_ends() {
        model(|| {
            let exchange = Arc::new(Exchange::<u32, ()>::new(0));
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    let exchange = exchange.clone();
                    thread::spawn(move || {
                        block_on(async {
                            let mut seen = Vec::new();
                            while let Some(job) = exchange.next_job().await {
                                seen.push(job);
                            }
                            seen
                        })
                    })
                })
                .collect();
            exchange.push_jobs(vec![1, 2]);
            exchange.close_jobs();
            let mut seen: Vec<u32> = workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect();
            seen.sort_unstable();
            assert_eq!(seen, [1, 2]);
        });
    }

    #[test]
    fn the_flusher_gets_every_outcome_before_it_ends() {
        model(|| {
            let exchange = Arc::new(Exchange::<u32, u32>::new(0));
            let (worker, claimer) = (exchange.producer(), exchange.producer());
            exchange.push_jobs(vec![1]);
            let worker = thread::spawn({
                let exchange = exchange.clone();
                move || {
                    let job = block_on(exchange.next_job()).unwrap();
                    assert_eq!(worker.end_job(job * 10), None);
                }
            });
            let claimer = thread::spawn(move || {
                claimer.push_outcome(20);
            });
            let mut all = block_on(async {
                let (mut all, mut batch) = (Vec::new(), Vec::new());
                while exchange.take_outcomes(&mut batch, 10).await {
                    all.append(&mut batch);
                }
                all
            });
            worker.join().unwrap();
            claimer.join().unwrap();
            all.sort_unstable();
            assert_eq!(all, [10, 20]);
            assert_eq!(exchange.in_flight(), 0);
        });
    }

    #[test]
    fn the_claimer_gets_room_once_the_count_falls_to_the_mark() {
        model(|| {
            let exchange = Arc::new(Exchange::<u32, ()>::new(1));
            let producer = exchange.producer();
            exchange.push_jobs(vec![1, 2, 3]);
            let worker = thread::spawn({
                let exchange = exchange.clone();
                move || {
                    assert_eq!(block_on(exchange.next_job()), Some(1));
                    assert_eq!(producer.end_job(()), Some(2));
                    // Job 3 goes on running: one job in flight, the mark.
                    assert_eq!(producer.end_job(()), Some(3));
                }
            });
            block_on(exchange.room());
            assert!(exchange.in_flight() <= 1);
            assert_eq!(exchange.in_flight(), 1, "room came before the mark");
            worker.join().unwrap();
        });
    }
}
