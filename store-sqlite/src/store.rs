//! The [`Store`](taskmill_core::Store) implementation: each call is one
//! [`Call`](taskmill_core::raw::Call) for the connection thread (see `conn.rs`), and each
//! call that writes is one transaction (see `ops.rs`). The impl itself is
//! [`store_via_calls!`](taskmill_core::store_via_calls), shared with every store that runs
//! its calls on a thread of its own.

use crate::SqliteStore;
use taskmill_core::raw::{Call, CallThread, LocalBus};
use taskmill_core::store::Capabilities;
use taskmill_core::{async_trait, Result};

#[async_trait]
impl CallThread for SqliteStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::DURABLE
    }

    fn bus(&self) -> &LocalBus {
        &self.shared.bus
    }

    async fn send(&self, call: Call) -> Result<()> {
        self.shared.conn.send(call).await
    }
}

taskmill_core::store_via_calls!(SqliteStore);
