//! Test hooks: named points in the registry's code where a unit test runs
//! code of its own, to force an interleaving that would otherwise need a
//! second thread and luck (for example: a whole shutdown between a caller's
//! shutdown check and its insert). Outside unit tests reaching a point does
//! nothing and compiles to nothing.

/// A point in the registry's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Point {
    /// `resolve`, after the shutdown check and the lookup, before the insert.
    BeforeInsert,
    /// `Table::lookup`, once it holds a reference, before the expiry check.
    LookupAcquired,
    /// `SessionHandle::acquire`, once it holds a reference, before the
    /// expiry check.
    HandleAcquired,
}

/// A test's code, run at every point reached.
#[cfg(all(test, not(mcp_group_loom)))]
type Hook = Box<dyn FnMut(Point)>;

#[cfg(all(test, not(mcp_group_loom)))]
std::thread_local! {
    static HOOK: std::cell::RefCell<Option<Hook>> = const { std::cell::RefCell::new(None) };
}

/// Runs the current thread's hook, if a test set one. The hook is taken out
/// while it runs, so code it calls reaches points without recursing.
#[inline(always)]
pub(crate) fn reach(point: Point) {
    #[cfg(all(test, not(mcp_group_loom)))]
    {
        let hook = HOOK.with(|h| h.borrow_mut().take());
        if let Some(mut hook) = hook {
            hook(point);
            HOOK.with(|h| {
                let mut slot = h.borrow_mut();
                if slot.is_none() {
                    *slot = Some(hook);
                }
            });
        }
    }
    #[cfg(not(all(test, not(mcp_group_loom))))]
    let _ = point;
}

/// Sets the current thread's hook until the returned guard is dropped.
#[cfg(all(test, not(mcp_group_loom)))]
pub(crate) fn set(hook: impl FnMut(Point) + 'static) -> Unset {
    HOOK.with(|h| *h.borrow_mut() = Some(Box::new(hook)));
    Unset
}

/// Removes the current thread's hook when dropped.
#[cfg(all(test, not(mcp_group_loom)))]
pub(crate) struct Unset;

#[cfg(all(test, not(mcp_group_loom)))]
impl Drop for Unset {
    fn drop(&mut self) {
        HOOK.with(|h| h.borrow_mut().take());
    }
}
