//! What a transport has learned about its server's protocol era, so that
//! only the first connection pays for finding out.
//!
//! Negotiating (`protocol_version = "auto"`) costs a `server/discover` probe,
//! and against a 2025-era server an `initialize` after it. A transport opens
//! one connection per session, so it keeps an [`EraMemory`] and later
//! connections go straight to what the first one found:
//!
//! | the server was | a new connection |
//! |---|---|
//! | not yet known | probes (`server/discover`), falls back to `initialize` |
//! | modern (2026-07-28), discovery still fresh | over stdio, no handshake at all: rmcp starts with the server description already known, and the first request is the session's first call; over streamable HTTP, `server/discover` alone (see [`EraMemory::without_reuse`]) |
//! | modern, discovery expired (`ttlMs`, or none given) | probes again |
//! | legacy (2025-11-25 and earlier) | `initialize` only, no probe |
//!
//! A legacy server that answers the probe in a way that spoils the
//! connection (an empty success, a closed stream, an HTTP error) may be
//! legacy: [`negotiate`] opens the connection once more with `initialize`,
//! and remembers the 2025 era only if that works.

use std::{
    future::Future,
    sync::Mutex,
    time::{Duration, Instant},
};

use rmcp::{model::ServerPeerInfo, service::ClientInitializeError};

use crate::{ClientOptions, Connection, Era, Error};

/// The longest a server's discovery result is reused, whatever its `ttlMs`
/// says.
pub const MAX_DISCOVERY_REUSE: Duration = Duration::from_secs(3600);

/// What a transport knows about its server's era (see the [module
/// docs](self)). Cheap to share: one per transport, behind an `Arc` or a
/// field.
#[derive(Debug, Default)]
pub struct EraMemory {
    known: Mutex<Known>,
    /// Never start a connection without a handshake (see
    /// [`EraMemory::without_reuse`]).
    no_reuse: bool,
}

#[derive(Debug, Default, Clone)]
enum Known {
    #[default]
    Nothing,
    Legacy,
    /// `reusable`: the discovery and until when it may be reused, while
    /// it may; `ask_ttl`: whether a new handshake should ask for the
    /// discovery's `ttlMs` again (not when the server said 0).
    Modern {
        reusable: Option<(std::sync::Arc<ServerPeerInfo>, Instant)>,
        ask_ttl: bool,
    },
}

/// How the next connection starts.
pub(crate) enum Plan {
    /// No handshake: the server's description is known.
    Direct(std::sync::Arc<ServerPeerInfo>),
    /// The handshake the options ask for.
    Handshake(rmcp::service::ClientLifecycleMode),
}

impl EraMemory {
    /// A memory that knows nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A memory that remembers the era but never lets a connection start
    /// without its handshake: for streamable HTTP, where rmcp 3.11's client
    /// treats a connection's first message as its start-up exchange (other
    /// requests wait for its answer and it cannot be cancelled), so the
    /// first message must be the quick `server/discover`, not a session's
    /// first call.
    pub fn without_reuse() -> Self {
        Self {
            no_reuse: true,
            ..Self::default()
        }
    }

    /// The era the server was found to speak, if known.
    pub fn era(&self) -> Option<Era> {
        match self.current() {
            Known::Nothing => None,
            Known::Legacy => Some(Era::Legacy),
            Known::Modern { .. } => Some(Era::Modern),
        }
    }

    /// Forgets what was learned: the next connection negotiates again.
    pub fn forget(&self) {
        if let Ok(mut known) = self.known.lock() {
            *known = Known::Nothing;
        }
    }

    fn current(&self) -> Known {
        let Ok(mut known) = self.known.lock() else {
            return Known::Nothing;
        };
        if let Known::Modern { reusable, .. } = &mut *known {
            if reusable
                .as_ref()
                .is_some_and(|(_, until)| Instant::now() >= *until)
            {
                *reusable = None;
            }
        }
        known.clone()
    }

    fn set(&self, value: Known) {
        if let Ok(mut known) = self.known.lock() {
            *known = value;
        }
    }

    pub(crate) fn plan(&self, options: &ClientOptions) -> Plan {
        let negotiating = options.negotiates();
        match self.current() {
            Known::Modern {
                reusable: Some((info, _)),
                ..
            } if !self.no_reuse && (negotiating || options.pins_modern()) => Plan::Direct(info),
            Known::Legacy if negotiating => {
                Plan::Handshake(rmcp::service::ClientLifecycleMode::Initialize)
            }
            _ => Plan::Handshake(options.lifecycle()),
        }
    }

    /// Records a modern server's discovery, reusable for `ttl_ms` (at most
    /// [`MAX_DISCOVERY_REUSE`]).
    /// A `ttl_ms` of 0 (or no discovery result) records only the era.
    pub(crate) fn remember_modern(&self, info: std::sync::Arc<ServerPeerInfo>, ttl_ms: u64) {
        let reuse = Duration::from_millis(ttl_ms).min(MAX_DISCOVERY_REUSE);
        let until = Instant::now()
            .checked_add(reuse)
            .filter(|_| !reuse.is_zero());
        self.set(Known::Modern {
            reusable: until.map(|until| (info, until)),
            ask_ttl: ttl_ms > 0,
        });
    }

    /// Whether a modern handshake should be followed by a discovery for
    /// its `ttlMs`: not when the server said its discovery is not to be
    /// reused (0), which would cost every new session a second request.
    pub(crate) fn wants_ttl(&self) -> bool {
        !self.no_reuse && !matches!(self.current(), Known::Modern { ask_ttl: false, .. })
    }

    pub(crate) fn remember_legacy(&self) {
        self.set(Known::Legacy);
    }

    /// After a failed negotiation: whether the failure says the server is
    /// of the 2025 era after all (it answered the probe with something other
    /// than a discovery result or a JSON-RPC error, or dropped the
    /// connection on it). If so, it is remembered as legacy.
    pub(crate) fn learn_from_failure(
        &self,
        options: &ClientOptions,
        error: &ClientInitializeError,
    ) -> bool {
        if !options.negotiates() || !matches!(self.current(), Known::Nothing) {
            return false;
        }
        let legacy = match error {
            ClientInitializeError::ExpectedInitResult(_)
            | ClientInitializeError::ExpectedInitResponse(_)
            | ClientInitializeError::UncorrelatedErrorResponse { .. }
            | ClientInitializeError::ConnectionClosed(_)
            | ClientInitializeError::NoCompatibleProtocolVersion { .. } => true,
            ClientInitializeError::TransportError { context, error } => {
                context.contains("discover") && !error.to_string().contains("Auth required")
            }
            _ => false,
        };
        if legacy {
            self.remember_legacy();
        }
        legacy
    }
}

/// Opens a connection with `open`, and opens it once more when the first
/// attempt taught `memory` that the server is of the 2025 era (see the
/// [module docs](self)).
///
/// # Cancel safety
/// Cancel safe if `open`'s futures are.
pub async fn negotiate<F, Fut>(memory: &EraMemory, mut open: F) -> Result<Connection, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Connection, Error>>,
{
    let before = memory.era();
    match open().await {
        Err(error) if before.is_none() && memory.era() == Some(Era::Legacy) => {
            // Only a failed handshake says anything about the era: an
            // authorization the user has still to give, say, does not.
            if !matches!(error, Error::Handshake { .. }) {
                memory.forget();
                return Err(error);
            }
            tracing::debug!(%error, "the server may be of the 2025 era; connecting again with initialize");
            let retried = open().await;
            // Legacy is learned only if `initialize` then works: a server
            // that was down, or refuses both, stays unknown.
            if retried.is_err() {
                memory.forget();
            }
            retried
        }
        result => result,
    }
}
