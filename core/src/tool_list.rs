//! A server's whole tool list with its cache hint (SEP-2549), and the
//! subscription that hears of changes to it in the 2026-07-28 era.

use std::{sync::Arc, time::Duration};

use rmcp::{
    RoleClient,
    model::{CacheScope, ListToolsResult, ServerNotification, SubscriptionFilter},
    service::{Peer, Subscription},
};
use tokio::time::Instant;

use crate::ToolDescriptor;

/// How long a list may be kept and who may share it, merged over every page
/// of one listing as the server said it (`ttlMs`, `cacheScope`), unclamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CacheHint {
    /// How long the list may be treated as fresh, counted from the end of
    /// the listing: the soonest expiry of its pages. `None` if a page
    /// carried no `ttlMs` (servers of the 2025-11-25 era never do).
    pub ttl: Option<Duration>,
    /// `Private` if any page was private, `Public` if every page said
    /// public, `None` if a page said nothing and none was private.
    pub scope: Option<CacheScope>,
}

impl CacheHint {
    /// A hint of `ttl` and `scope`.
    pub fn new(ttl: Option<Duration>, scope: Option<CacheScope>) -> Self {
        Self { ttl, scope }
    }

    /// Whether the list belongs to the session that listed it: `private`
    /// said on any page. A list whose pages said nothing is public, the
    /// schema's default for an absent `cacheScope` (and what a 2025-11-25
    /// server, which cannot say, has always meant: one list for every client).
    pub fn is_private(&self) -> bool {
        self.scope == Some(CacheScope::Private)
    }
}

/// Every tool a server lists, with the cache hint of the listing.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ToolList {
    /// The tools, in the server's order.
    pub tools: Vec<ToolDescriptor>,
    /// What the server said about caching them.
    pub cache: CacheHint,
}

/// Merges the pages' hints as they arrive: the soonest expiry wins, one
/// private page makes the list private.
pub(crate) struct HintMerger {
    expires_at: Option<Option<Instant>>,
    scope: Option<Option<CacheScope>>,
}

impl HintMerger {
    pub(crate) fn new() -> Self {
        Self {
            expires_at: None,
            scope: None,
        }
    }

    /// Adds one page's `ttlMs` and `cacheScope`, received now.
    pub(crate) fn page(&mut self, ttl_ms: Option<u64>, scope: Option<CacheScope>) {
        // A ttl too large for the clock is as good as none: it never expires
        // within the time this process can count.
        let expiry = ttl_ms.and_then(|ms| Instant::now().checked_add(Duration::from_millis(ms)));
        let expiry = match ttl_ms {
            Some(_) if expiry.is_none() => Some(far_future()),
            _ => expiry,
        };
        self.expires_at = Some(match self.expires_at {
            None => expiry,
            Some(merged) => merged.zip(expiry).map(|(a, b)| a.min(b)),
        });
        self.scope = Some(match (self.scope, scope) {
            (None, page) => page,
            (Some(Some(CacheScope::Private)), _) | (_, Some(CacheScope::Private)) => {
                Some(CacheScope::Private)
            }
            (Some(Some(CacheScope::Public)), Some(CacheScope::Public)) => Some(CacheScope::Public),
            _ => None,
        });
    }

    /// The merged hint, its ttl counted from now.
    pub(crate) fn finish(self) -> CacheHint {
        let ttl = self
            .expires_at
            .flatten()
            .map(|at| at.saturating_duration_since(Instant::now()));
        CacheHint {
            ttl,
            scope: self.scope.flatten(),
        }
    }
}

/// A `tools/list` page rmcp could not read because its `ttlMs` does not fit
/// an `i64` (rmcp reads it as one; a server may send `u64::MAX` or more):
/// read again with such a ttl as `i64::MAX`, which the caller clamps anyway.
/// Anything else that did not parse stays unreadable.
pub(crate) fn lenient_page(mut value: serde_json::Value) -> Option<ListToolsResult> {
    let ttl = value.get_mut("ttlMs")?;
    if !ttl.is_u64() || ttl.is_i64() {
        return None;
    }
    *ttl = serde_json::Value::from(i64::MAX);
    serde_json::from_value(value).ok()
}

/// About thirty years from now: later than any clamp applied to a ttl.
fn far_future() -> Instant {
    let now = Instant::now();
    now.checked_add(Duration::from_secs(30 * 365 * 24 * 3600))
        .unwrap_or(now)
}

/// Longest wait between attempts to re-open a `subscriptions/listen` that
/// ended while its connection still lives.
const MAX_RELISTEN_DELAY: Duration = Duration::from_secs(60);

/// Follows one connection's `subscriptions/listen` for tool-list changes:
/// each `notifications/tools/list_changed` bumps `changed`. A subscription
/// that ends while the connection lives (a proxy cut the stream, the
/// consumer lagged) is opened again after a delay that doubles up to
/// [`MAX_RELISTEN_DELAY`], and `changed` is bumped once it is back, since
/// changes may have been missed meanwhile. Ends when the connection ends
/// (`ended` closes), or when the server refuses to listen or stops
/// acknowledging tool-list changes.
pub(crate) async fn follow_subscription(
    peer: Peer<RoleClient>,
    mut subscription: Subscription,
    changed: Arc<tokio::sync::watch::Sender<u64>>,
    mut ended: tokio::sync::watch::Receiver<()>,
    timeout: Duration,
) {
    let mut delay = Duration::from_millis(500);
    loop {
        loop {
            let next = tokio::select! {
                next = subscription.next() => next,
                _ = closed(&mut ended) => return,
            };
            match next {
                Ok(Some(ServerNotification::ToolListChangedNotification(_))) => {
                    tracing::debug!("server says its tool list changed (subscription)");
                    changed.send_modify(|version| *version = version.wrapping_add(1));
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        tracing::debug!(end = ?subscription.end(), "tool-list subscription ended; listening again");
        loop {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = closed(&mut ended) => return,
            }
            delay = (delay * 2).min(MAX_RELISTEN_DELAY);
            let listen = tokio::time::timeout(timeout, peer.listen(tools_filter()));
            let outcome = tokio::select! {
                outcome = listen => outcome,
                _ = closed(&mut ended) => return,
            };
            match outcome {
                Ok(Ok(new)) if accepts_tools(&new) => {
                    subscription = new;
                    changed.send_modify(|version| *version = version.wrapping_add(1));
                    break;
                }
                Ok(Ok(_)) => return,
                Ok(Err(rmcp::ServiceError::McpError(error))) => {
                    tracing::debug!(
                        code = error.code.0,
                        "the server refuses subscriptions/listen"
                    );
                    return;
                }
                Ok(Err(_)) | Err(_) => {}
            }
        }
    }
}

/// Waits until the connection's transport is dropped (nothing is ever sent).
async fn closed(ended: &mut tokio::sync::watch::Receiver<()>) {
    while ended.changed().await.is_ok() {}
}

/// The filter of a tool-list subscription.
pub(crate) fn tools_filter() -> SubscriptionFilter {
    SubscriptionFilter::builder().tools_list_changed().build()
}

/// Whether the server acknowledged tool-list changes.
pub(crate) fn accepts_tools(subscription: &Subscription) -> bool {
    subscription.acknowledged().tools_list_changed == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_soonest_page_expiry_and_any_private_page_win() {
        let mut merger = HintMerger::new();
        merger.page(Some(60_000), Some(CacheScope::Public));
        tokio::time::advance(Duration::from_secs(10)).await;
        merger.page(Some(30_000), Some(CacheScope::Private));
        merger.page(Some(90_000), Some(CacheScope::Public));
        let hint = merger.finish();
        assert_eq!(hint.ttl, Some(Duration::from_secs(30)));
        assert!(hint.is_private());
    }

    #[tokio::test(start_paused = true)]
    async fn a_page_without_hints_leaves_the_list_without_them() {
        let mut merger = HintMerger::new();
        merger.page(Some(60_000), Some(CacheScope::Public));
        merger.page(None, None);
        let hint = merger.finish();
        assert_eq!(hint, CacheHint::new(None, None));
        assert!(!hint.is_private());
    }

    #[test]
    fn a_page_with_a_ttl_beyond_i64_is_read_with_the_largest_one() {
        let page = serde_json::json!({"tools": [], "ttlMs": u64::MAX, "cacheScope": "public"});
        let page = lenient_page(page).unwrap();
        assert_eq!(page.ttl_ms, Some(i64::MAX as u64));
        assert_eq!(page.cache_scope, Some(CacheScope::Public));
        assert!(lenient_page(serde_json::json!({"tools": 1, "ttlMs": 5})).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_ttl_beyond_the_clock_does_not_overflow() {
        let mut merger = HintMerger::new();
        merger.page(Some(u64::MAX), Some(CacheScope::Public));
        let hint = merger.finish();
        assert!(hint.ttl.is_some_and(|ttl| ttl > Duration::from_secs(3600)));
    }
}
