//! Leases, fencing tokens and the reaper.

use std::sync::Arc;
use std::time::Duration;
use taskmill_core::store::{Applied, ApplyOptions, LeaseRef, Outcome, OutcomeKind, RenewOptions};
use taskmill_core::{Queue, Store, LEASE_EXPIRED_ERROR};
use taskmill_testkit::*;

checks!(
    mod leases;

    /// An outcome from a claim whose lease expired and was recovered is rejected and changes
    /// nothing: not the task, not the counters.
    pub async fn stale_outcome_is_rejected(store: Arc<dyn Store>) {
        let id = enqueue_n(&*store, "t", 1).await[0];
        let old = claim(&*store, &["t"], 1).await.remove(0);
        let expired = T0 + LEASE + Duration::from_millis(1);
        assert_eq!(recover(&*store, expired, 100).await.len(), 1);
        let new = claim_as(&*store, "owner-b", &["t"], 1, expired)
            .await
            .remove(0);
        let before = store.stats(&taskmill_testkit::all_due()).await.unwrap();
        for kind in [
            OutcomeKind::complete(),
            OutcomeKind::retry(expired, "x"),
            OutcomeKind::dead("x"),
            OutcomeKind::release(),
        ] {
            assert_eq!(
                apply_outcome_at(&*store, &old, kind, expired).await,
                Applied::Stale
            );
        }
        assert_eq!(
            store.stats(&taskmill_testkit::all_due()).await.unwrap(),
            before,
            "a stale outcome moved a counter"
        );
        let stored = get(&*store, id).await;
        assert_eq!(
            (stored.queue, stored.lease),
            (Queue::Work, new.lease.clone())
        );
        assert_eq!(
            apply_outcome_at(&*store, &new, OutcomeKind::complete(), expired).await,
            Applied::Done
        );
    }

    /// An outcome with a token the store never issued is stale.
    pub async fn outcome_with_wrong_token_is_stale(store: Arc<dyn Store>) {
        enqueue_n(&*store, "t", 1).await;
        let r = claim(&*store, &["t"], 1).await.remove(0);
        let mut forged = LeaseRef::of(&r);
        forged.token = forged.token.wrapping_add(1_000_003);
        let outcome = Outcome::new(forged, OutcomeKind::complete());
        assert_eq!(
            store
                .apply(&[outcome], &ApplyOptions::new(T0))
                .await
                .unwrap(),
            vec![Applied::Stale]
        );
        assert_eq!(get(&*store, r.id).await.queue, Queue::Work);
    }

    /// An outcome for a task that is not in WORK (never claimed, or already finished) is stale.
    pub async fn outcome_for_unclaimed_task_is_stale(store: Arc<dyn Store>) {
        enqueue_n(&*store, "t", 1).await;
        let r = claim(&*store, &["t"], 1).await.remove(0);
        assert_eq!(
            apply_outcome(&*store, &r, OutcomeKind::release()).await,
            Applied::Done
        );
        assert_eq!(
            apply_outcome(&*store, &r, OutcomeKind::complete()).await,
            Applied::Stale
        );
        assert_eq!(get(&*store, r.id).await.queue, Queue::Input);
    }

    /// Renewing a live lease moves its deadline, so the reaper leaves it alone.
    pub async fn renew_extends_lease(store: Arc<dyn Store>) {
        enqueue_n(&*store, "t", 1).await;
        let r = claim(&*store, &["t"], 1).await.remove(0);
        let new_deadline = at(90_000);
        assert_eq!(
            store
                .renew(&[LeaseRef::of(&r)], &RenewOptions::new(new_deadline))
                .await
                .unwrap(),
            vec![Applied::Done]
        );
        assert_eq!(
            get(&*store, r.id).await.lease.unwrap().deadline,
            new_deadline
        );
        assert!(
            recover(&*store, at(60_000), 100).await.is_empty(),
            "recovered a renewed lease"
        );
        assert_eq!(
            apply_outcome(&*store, &r, OutcomeKind::complete()).await,
            Applied::Done
        );
    }

    /// Renewing a lease that was lost is stale and does not revive it.
    pub async fn renew_of_lost_lease_is_stale(store: Arc<dyn Store>) {
        enqueue_n(&*store, "t", 2).await;
        let claimed = claim(&*store, &["t"], 2).await;
        let expired = T0 + LEASE + Duration::from_millis(1);
        recover(&*store, expired, 100).await;
        let live = claim_as(&*store, "owner-b", &["t"], 1, expired)
            .await
            .remove(0);
        let leases: Vec<LeaseRef> = claimed.iter().chain([&live]).map(LeaseRef::of).collect();
        let applied = store
            .renew(&leases, &RenewOptions::new(at(1_000_000)))
            .await
            .unwrap();
        let stale = applied.iter().filter(|a| **a == Applied::Stale).count();
        assert_eq!(stale, 2, "{applied:?}");
        assert_eq!(applied[2], Applied::Done);
        assert_eq!(
            get(&*store, live.id).await.lease,
            Some(taskmill_core::Lease {
                deadline: at(1_000_000),
                ..live.lease.unwrap()
            })
        );
    }

    /// The reaper returns tasks whose lease expired to INPUT, due now, and only those.
    pub async fn reaper_recovers_expired_leases(store: Arc<dyn Store>) {
        enqueue_n(&*store, "t", 2).await;
        let early = claim_at(&*store, &["t"], 1, T0).await.remove(0);
        let late = claim_at(&*store, &["t"], 1, at(10_000)).await.remove(0);
        assert!(
            recover(&*store, T0 + LEASE, 100).await.is_empty(),
            "a lease expired at its deadline, not after"
        );
        let now = T0 + LEASE + Duration::from_millis(1);
        let recovered = recover(&*store, now, 100).await;
        assert_eq!(recovered.len(), 1);
        assert_eq!(
            (recovered[0].id, recovered[0].queue, &*recovered[0].topic),
            (early.id, Queue::Input, "t")
        );
        let stored = get(&*store, early.id).await;
        assert_eq!(
            (stored.queue, stored.run_at, stored.attempt),
            (Queue::Input, now, 1)
        );
        assert!(stored.lease.is_none());
        assert_eq!(get(&*store, late.id).await.queue, Queue::Work);
        let again = claim_at(&*store, &["t"], 1, now).await;
        assert_eq!((again[0].id, again[0].attempt), (early.id, 2));
    }

    /// A task whose lease expires with no retries left goes to DEAD with a lease error.
    pub async fn reaper_sends_exhausted_task_to_dead(store: Arc<dyn Store>) {
        let id = enqueue(&*store, vec![task("t", 1).max_retries(0)]).await[0];
        claim(&*store, &["t"], 1).await;
        let now = T0 + LEASE + Duration::from_secs(1);
        let recovered = recover(&*store, now, 100).await;
        assert_eq!(recovered.len(), 1);
        assert_eq!(recovered[0].queue, Queue::Dead);
        let stored = get(&*store, id).await;
        assert_eq!((stored.queue, stored.finished_at), (Queue::Dead, Some(now)));
        assert_eq!(stored.last_error(), Some(LEASE_EXPIRED_ERROR));
        assert_eq!(
            (
                stored.errors.len(),
                stored.errors[0].attempt,
                stored.errors[0].at
            ),
            (1, 1, now)
        );
        let counters = store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total
            .counters;
        assert_eq!((counters.recovered, counters.failed), (1, 1));
    }

    /// The reaper takes at most its limit per call.
    pub async fn reaper_respects_limit(store: Arc<dyn Store>) {
        enqueue_n(&*store, "a", 3).await;
        enqueue_n(&*store, "b", 3).await;
        claim(&*store, &["a", "b"], 6).await;
        let now = T0 + LEASE + Duration::from_secs(1);
        assert_eq!(recover(&*store, now, 4).await.len(), 4);
        assert_eq!(recover(&*store, now, 4).await.len(), 2);
        assert!(recover(&*store, now, 4).await.is_empty());
        assert_eq!(
            store
                .stats(&taskmill_testkit::all_due())
                .await
                .unwrap()
                .total
                .sizes
                .input,
            6
        );
    }

    /// Two outcomes for the same claim in one batch: the first applies, the second is stale.
    pub async fn second_outcome_for_a_claim_in_one_batch_is_stale(store: Arc<dyn Store>) {
        enqueue_n(&*store, "t", 2).await;
        let claimed = claim(&*store, &["t"], 2).await;
        let outcome = |r: &taskmill_core::TaskRecord, kind| Outcome::new(LeaseRef::of(r), kind);
        let batch = [
            outcome(&claimed[0], OutcomeKind::complete()),
            outcome(&claimed[0], OutcomeKind::dead("x")),
            outcome(&claimed[1], OutcomeKind::retry(T0, "e")),
            outcome(&claimed[1], OutcomeKind::release()),
        ];
        let applied = store.apply(&batch, &ApplyOptions::new(T0)).await.unwrap();
        assert_eq!(
            applied,
            vec![Applied::Done, Applied::Stale, Applied::Done, Applied::Stale]
        );
        let c = store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total
            .counters;
        assert_eq!((c.completed, c.failed, c.retried, c.released), (1, 0, 1, 0));
        assert_eq!(get(&*store, claimed[0].id).await.queue, Queue::Completed);
        let retried = get(&*store, claimed[1].id).await;
        assert_eq!(
            (retried.queue, retried.last_error()),
            (Queue::Input, Some("e"))
        );
    }
);
