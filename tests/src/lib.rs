//! The Store conformance suite, and helpers for crash and multi-process tests.
//!
//! Each check in [`checks`] is a plain `async fn` taking a fresh store. A backend runs the
//! whole suite by implementing [`Harness`] and invoking [`conformance_suite!`] inside a
//! module named after it, so every check becomes a named test
//! (`sqlite::stale_outcome_is_rejected`):
//!
//! ```text
//! mod memory {
//!     taskmill_tests::conformance_suite!(crate::MemoryHarness);
//! }
//! ```

#![warn(missing_docs)]

pub mod checks;
pub mod process;
pub mod support;

use std::sync::Arc;
use taskmill_core::Store;

/// Gives each test an isolated store (a temp dir, a fresh namespace, …).
#[async_trait::async_trait]
pub trait Harness: Sized + Send + Sync + 'static {
    /// Opens a fresh, empty store. Whatever keeps it alive (temp dir, server) lives in `Self`.
    async fn setup() -> Self;
    /// The store under test.
    fn store(&self) -> Arc<dyn Store>;
}

/// Expands to one `#[tokio::test]` per check, each on a fresh store from the harness.
#[macro_export]
macro_rules! conformance_suite {
    ($harness:ty) => {
        $crate::conformance_suite!(@checks $harness;
            enqueue_assigns_increasing_ids,
            enqueued_task_is_in_input,
            claim_moves_task_to_work_under_lease,
            fencing_tokens_are_unique,
            complete_removes_task,
            retry_returns_task_to_input_at_time,
            dead_outcome_moves_task_to_dead,
            release_returns_task_without_using_an_attempt,
            apply_reports_each_outcome_in_order,
            get_reports_each_state,
            payload_round_trips,
            priority_orders_claims,
            equal_priorities_are_fifo,
            run_at_is_not_claimed_early,
            due_tasks_order_by_priority_not_due_time,
            claim_respects_limit,
            claim_takes_only_requested_topics_in_order,
            paused_topic_is_not_claimed_until_resumed,
            pausing_does_not_affect_running_tasks,
            max_running_caps_claims,
            concurrent_claims_never_share_a_task,
            stale_outcome_is_rejected,
            outcome_with_wrong_token_is_stale,
            outcome_for_unclaimed_task_is_stale,
            renew_extends_lease,
            renew_of_lost_lease_is_stale,
            reaper_recovers_expired_leases,
            reaper_sends_exhausted_task_to_dead,
            reaper_respects_limit,
            second_outcome_for_a_claim_in_one_batch_is_stale,
            unique_key_rejects_duplicate_while_pending,
            unique_key_rejects_duplicate_while_running_or_dead,
            unique_key_is_free_after_completion_or_delete,
            unique_key_applies_within_a_batch,
            unique_keys_are_per_topic,
            requeue_moves_dead_tasks_to_input,
            requeue_all_dead_moves_every_dead_task,
            delete_removes_tasks_from_every_queue,
            list_pages_through_a_queue,
            list_filters_by_queue_and_topic,
            stats_count_every_transition_exactly,
            sizes_per_topic_follow_the_queues,
            published_events_reach_subscribers,
            enqueue_publishes_task_enqueue_events,
            changes_that_add_due_work_wake_managers,
            has_subscribers_while_someone_listens,
            manager_runs_every_task,
            failing_task_is_retried_until_it_succeeds,
            exhausted_retries_move_task_to_dead,
            panicking_processor_fails_only_its_task,
            undecodable_payload_goes_to_dead_without_retries,
            permanent_error_skips_retries,
            hung_processor_times_out,
            close_releases_running_tasks_without_using_attempts,
            close_with_timeout_lets_running_tasks_finish,
            events_arrive_in_order_for_one_task,
            two_managers_never_run_a_task_at_once,
            crashed_managers_tasks_are_recovered,
            lost_lease_cancels_the_run,
            registration_errors_are_misuse,
            manager_publishes_stats_periodically,
            long_run_keeps_its_lease,
            completion_reports_the_runs_own_duration,
            topic_weights_share_the_workers,
        );
    };
    (@checks $harness:ty; $($check:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let harness = <$harness as $crate::Harness>::setup().await;
                $crate::checks::$check($crate::Harness::store(&harness)).await;
            }
        )*
    };
}
