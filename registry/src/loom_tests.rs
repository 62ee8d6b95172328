//! Exhaustive-schedule checks of the session table's invariants, run with
//! `cargo xtask loom` (`RUSTFLAGS="--cfg mcp_group_loom"`, registry crate only).

use loom::{sync::Arc, thread};
use mcp_group_core::{SessionId, SessionKey};

use crate::table::{Lookup, Room, Table};

const IDLE: u64 = 1_000;

fn room(limit: usize) -> Room {
    Room {
        limit,
        idle_ms: IDLE,
        lru: false,
        wait: false,
    }
}

/// A model checker exploring the schedules with at most `preemptions`
/// preemptions (the bugs this crate had needed one or two).
fn bounded(preemptions: usize) -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(preemptions);
    builder
}

fn sid(s: &str) -> SessionKey {
    SessionKey::new(SessionId::new(s))
}

#[test]
fn cleanup_never_removes_an_entry_with_a_reference() {
    loom::model(|| {
        let table = Arc::new(Table::new());
        let key = sid("s");
        let (entry, _) = table.insert(&key, 0, room(10), || 1).result.unwrap();
        entry.release(0);

        let user = {
            let table = table.clone();
            let key = key.clone();
            thread::spawn(move || {
                // A lookup at time 0 never finds the entry expired.
                if let Lookup::Found(held) = table.lookup(&key, 0, IDLE) {
                    // While we hold it, no cleanup may take it.
                    assert!(held.refs() >= 1);
                    let still_there = table.peek(&key).is_some_and(|e| Arc::ptr_eq(&e, &held));
                    assert!(still_there, "a referenced entry was removed");
                    held.release(0);
                }
            })
        };
        // Cleanup "much later": everything unreferenced is idle.
        let removed = table.take_idle(10 * IDLE, 0);
        user.join().unwrap();
        for (_, entry) in &removed {
            assert_eq!(entry.refs(), 0, "removed entries have no reference");
        }
        assert!(removed.len() + table.len() == 1);
    });
}

/// What one caller of [`resolve_later`] saw.
struct Resolved {
    created: bool,
    expired_old: bool,
}

/// The registry's resolve path at [`LATER`]: look `s` up (expiring it if
/// idle), insert it if absent, check that the entry held is the one in the
/// map, release it.
fn resolve_later(table: &Table<i32>, old: &Arc<crate::slot::Entry<i32>>) -> Resolved {
    let key = sid("s");
    let mut expired_old = false;
    let found = match table.lookup(&key, LATER, IDLE) {
        Lookup::Found(entry) => Some(entry),
        Lookup::Expired(entry) => {
            expired_old = Arc::ptr_eq(&entry, old);
            entry.release(LATER);
            None
        }
        _ => None,
    };
    let (held, created) = match found {
        Some(entry) => (entry, false),
        None => table.insert(&key, LATER, room(10), || 2).result.unwrap(),
    };
    let current = table.peek(&key).is_some_and(|e| Arc::ptr_eq(&e, &held));
    assert!(current, "an entry held is the one in the map");
    held.release(LATER);
    Resolved {
        created,
        expired_old,
    }
}

/// Two first uses of an expired session race the lookup's expiry swap (done
/// outside the insert's write guard) against each other's insert: at most
/// one creates a new entry, the old one is disposed of exactly once if it
/// left the map, and one open, unreferenced entry remains.
#[test]
fn concurrent_first_uses_of_an_expired_session_replace_it_once() {
    // Two whole resolve paths: unbounded, the schedules run for hours.
    bounded(4).check(|| {
        let table = Arc::new(Table::new());
        let (old, _) = table.insert(&sid("s"), 0, room(10), || 1).result.unwrap();
        old.release(0);
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let table = table.clone();
                let old = old.clone();
                thread::spawn(move || resolve_later(&table, &old))
            })
            .collect();
        let resolved: Vec<Resolved> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let created = resolved.iter().filter(|r| r.created).count();
        let disposed = resolved.iter().filter(|r| r.expired_old).count();
        let current = table.peek(&sid("s")).unwrap();
        assert!(created <= 1, "one creation at most");
        if Arc::ptr_eq(&current, &old) {
            assert_eq!((created, disposed), (0, 0), "the old entry was served");
        } else {
            assert_eq!((created, disposed), (1, 1), "replaced once, disposed once");
        }
        assert_eq!(table.len(), 1);
        assert!(current.is_unused(), "open, no reference left");
    });
}

/// LRU eviction at the limit against creations of other sessions: the limit
/// holds, only unreferenced entries are evicted (a creator's entry is never
/// evicted while it holds it), and each admission evicts exactly one.
#[test]
fn the_limit_holds_while_lru_eviction_races_creations() {
    loom::model(|| {
        let table = Arc::new(Table::new());
        let (idle, _) = table.insert(&sid("a"), 0, lru(1), || 1).result.unwrap();
        idle.release(0);
        let threads: Vec<_> = ["b", "c"]
            .into_iter()
            .map(|key| {
                let table = table.clone();
                thread::spawn(move || {
                    let insert = table.insert(&sid(key), 1, lru(1), || 2);
                    for (_, evicted) in &insert.evicted {
                        assert_eq!(evicted.refs(), 0, "only unreferenced entries are evicted");
                    }
                    let evicted = insert.evicted.len();
                    let Ok((held, _)) = insert.result else {
                        return (false, evicted);
                    };
                    assert!(table.len() <= 1, "the limit holds");
                    let current = table
                        .peek(&sid(key))
                        .is_some_and(|e| Arc::ptr_eq(&e, &held));
                    assert!(current, "a held entry is not evicted");
                    held.release(1);
                    (true, evicted)
                })
            })
            .collect();
        let outcomes: Vec<(bool, usize)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let admitted = outcomes.iter().filter(|(ok, _)| *ok).count();
        let evicted: usize = outcomes.iter().map(|(_, n)| n).sum();
        assert!(admitted >= 1, "the idle entry made room for one");
        assert_eq!(evicted, admitted, "one eviction per admission");
        assert_eq!(table.len(), 1);
    });
}

#[test]
fn the_ref_count_never_underflows_and_returns_to_zero() {
    loom::model(|| {
        let table = Arc::new(Table::new());
        let key = sid("s");
        let (entry, _) = table.insert(&key, 0, room(10), || 1).result.unwrap();
        entry.release(0);
        let users: Vec<_> = (0..2)
            .map(|_| {
                let entry = entry.clone();
                thread::spawn(move || {
                    if entry.try_acquire() {
                        entry.release(1);
                    }
                })
            })
            .collect();
        let closed_idle = entry.try_close_unused();
        for user in users {
            user.join().unwrap();
        }
        assert_eq!(entry.refs(), 0);
        if !closed_idle {
            // Nobody held it at the end: it can be closed now.
            assert!(entry.try_close_unused());
        }
    });
}

/// A time at which every entry stamped at 0 is expired.
const LATER: u64 = 10 * IDLE;

fn lru(limit: usize) -> Room {
    Room {
        limit,
        idle_ms: IDLE,
        lru: true,
        wait: false,
    }
}

/// Defect: LRU eviction picked an entry the lookup's expiry swap had closed
/// but not yet removed, failed to close it again, and spun forever holding
/// the write lock (the swapping thread waited for that lock to remove it).
/// With `a` leased and `x` expired, a lookup of `x` races an insert of `y`
/// with `lru: true` at the limit: the insert returns, and `x` is disposed of
/// exactly once (by the lookup, as expired, or by the insert, as evicted).
#[test]
fn lru_eviction_against_an_expiry_swap_never_livelocks() {
    loom::model(|| {
        let table = Arc::new(Table::new());
        let (held, _) = table.insert(&sid("a"), 0, lru(2), || 0).result.unwrap();
        let (x, _) = table.insert(&sid("x"), 0, lru(2), || 1).result.unwrap();
        x.release(0);
        let expirer = {
            let table = table.clone();
            thread::spawn(move || match table.lookup(&sid("x"), LATER, IDLE) {
                Lookup::Expired(entry) => {
                    // Disposed of here; then the lookup's reference is released.
                    entry.release(LATER);
                    Some(entry)
                }
                Lookup::Found(entry) => {
                    entry.release(LATER);
                    None
                }
                _ => None,
            })
        };
        let insert = table.insert(&sid("y"), LATER, lru(2), || 2);
        let expired = expirer.join().unwrap();
        if let Ok((y, _)) = &insert.result {
            y.release(LATER);
        }
        let evicted_x = insert
            .evicted
            .iter()
            .filter(|(_, e)| Arc::ptr_eq(e, &x))
            .count();
        let expired_x = usize::from(expired.is_some_and(|e| Arc::ptr_eq(&e, &x)));
        assert_eq!(evicted_x + expired_x, 1, "x is disposed of exactly once");
        assert!(table.peek(&sid("x")).is_none());
        assert!(table.len() <= 2);
        held.release(LATER);
    });
}

/// Defect: `insert` replaced an entry of the same key that was CLOSED but
/// not yet removed by its closer; the closer's removal then failed, and the
/// entry was never disposed of (no graceful close, no count, no wake-up).
/// An expiry on lookup races an insert of the same key: an entry that left
/// the map was handed out for disposal exactly once; one still in the map
/// is open.
#[test]
fn an_entry_leaving_the_map_is_disposed_of_exactly_once_when_its_key_is_inserted_again() {
    loom::model(|| {
        let table = Arc::new(Table::new());
        let (old, _) = table.insert(&sid("x"), 0, room(10), || 1).result.unwrap();
        old.release(0);
        let expirer = {
            let table = table.clone();
            thread::spawn(move || match table.lookup(&sid("x"), LATER, IDLE) {
                Lookup::Expired(entry) => {
                    // Disposed of here; then the lookup's reference is released.
                    entry.release(LATER);
                    Some(entry)
                }
                Lookup::Found(entry) => {
                    entry.release(LATER);
                    None
                }
                _ => None,
            })
        };
        let insert = table.insert(&sid("x"), LATER, room(10), || 2);
        let expired = expirer.join().unwrap();
        let (current, _) = insert.result.unwrap();
        current.release(LATER);
        let disposals = usize::from(expired.is_some_and(|e| Arc::ptr_eq(&e, &old)))
            + insert
                .evicted
                .iter()
                .filter(|(_, e)| Arc::ptr_eq(e, &old))
                .count();
        if Arc::ptr_eq(&current, &old) {
            assert_eq!(disposals, 0);
            assert!(old.try_acquire(), "an entry in the map is open");
        } else {
            assert_eq!(disposals, 1, "the replaced entry is disposed of once");
        }
    });
}

/// `release_creation`: the creator of a session whose connection was never
/// opened releases its reference and removes the entry, while another caller
/// looks the session up (and inserts it if absent). The entry leaves the map
/// only unreferenced and only through its closer; the other caller always
/// ends up holding an open entry in the map.
#[test]
fn release_creation_never_strands_a_caller_or_an_entry() {
    loom::model(|| {
        let table = Arc::new(Table::new());
        let (created, _) = table.insert(&sid("s"), 0, room(10), || 1).result.unwrap();
        let creator = {
            let table = table.clone();
            let created = created.clone();
            thread::spawn(move || {
                created.release(0);
                table.close_and_remove(&sid("s"), &created, |e| e.try_close_unused())
            })
        };
        let held = match table.lookup(&sid("s"), 0, IDLE) {
            Lookup::Found(entry) => entry,
            _ => table.insert(&sid("s"), 0, room(10), || 2).result.unwrap().0,
        };
        let removed = creator.join().unwrap();
        assert!(held.refs() >= 1);
        let current = table.peek(&sid("s")).unwrap();
        assert!(
            Arc::ptr_eq(&current, &held),
            "the caller's entry is in the map"
        );
        assert_eq!(removed, !Arc::ptr_eq(&held, &created));
        if removed {
            assert_eq!(created.refs(), 0, "removed only unreferenced");
        }
        held.release(0);
    });
}

/// One session id used at once under two principals: two entries, one
/// creation each, and neither principal's lookup ever finds the other's.
#[test]
fn one_id_under_two_principals_is_two_entries_one_creation_each() {
    loom::model(|| {
        let table = Arc::new(Table::new());
        let threads: Vec<_> = [("alice", 1), ("bob", 2)]
            .into_iter()
            .map(|(principal, value)| {
                let table = table.clone();
                thread::spawn(move || {
                    let key = SessionKey::with_principal(Some(principal), SessionId::new("s"));
                    let (entry, created) =
                        table.insert(&key, 0, room(10), || value).result.unwrap();
                    assert!(created, "{principal}'s first use creates its own entry");
                    assert_eq!(entry.value, value);
                    entry.release(0);
                    match table.lookup(&key, 0, IDLE) {
                        Lookup::Found(found) => {
                            assert_eq!(found.value, value, "never the other principal's");
                            found.release(0);
                        }
                        _ => panic!("{principal}'s entry is there"),
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(table.len(), 2);
        assert!(
            table.peek(&sid("s")).is_none(),
            "no principal is a key of its own"
        );
    });
}
