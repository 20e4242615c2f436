//! The [`Store`](taskmill_core::Store) implementation: every call is one
//! [`Call`](taskmill_core::raw::Call) for the writer thread (see `conn.rs`), reads too, so
//! a read never sees half of a move. The impl itself is
//! [`store_via_calls!`](taskmill_core::store_via_calls), shared with every store that runs
//! its calls on a thread of its own.

use crate::conn::Command;
use crate::SledStore;
use taskmill_core::raw::{Call, CallThread, LocalBus};
use taskmill_core::store::Capabilities;
use taskmill_core::{async_trait, Result};

#[async_trait]
impl CallThread for SledStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::DURABLE
    }

    fn bus(&self) -> &LocalBus {
        &self.shared.bus
    }

    async fn send(&self, call: Call) -> Result<()> {
        self.shared.conn.send(Command::Store(call)).await
    }
}

taskmill_core::store_via_calls!(SledStore);
