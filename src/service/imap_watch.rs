//! Watchers of IMAP-backed mailboxes (issue #7): what a mail client does — read, unread, flag,
//! move, delete, expunge — reaches the MWI lamps and event streams within about a second.
//!
//! Per IMAP context with `watch = true`, a supervisor keeps the set of watched mailboxes equal to
//! the context's mailboxes in SQL (re-read when the outbox shows a mailbox created or deleted, and
//! every [`RESCAN`] anyway). The first `max_idle_watchers` mailboxes get a dedicated connection
//! that IDLEs on INBOX (MWI counts are INBOX counts: new = unseen, old = seen); the others are
//! polled in turn every `poll_interval_secs` over the context's connection pool. Each look reads
//! Asterisk's counts and records them as an observation (`SqlStore::record_imap_counts`): an
//! outbox event `mailbox.changed` is written only when the counts differ from the last ones
//! recorded, so N nodes watching one mailbox still produce one event per change. A failing
//! server leaves the last known counts in place (never a guess) while the watcher reconnects with
//! exponential backoff (1 s … 60 s, jittered).
//!
//! In a cluster the nodes share the work (issue #6): each supervisor renews a claim in
//! `imap_watch_nodes` every third of `imap.watch_lease_secs`, and the nodes with a fresh claim
//! split the context's mailboxes by rendezvous hashing ([`owner`]: each mailbox goes to the node
//! with the highest hash of node and mailbox), so each mailbox has one IDLE connection in the
//! cluster, not one per node, and a node joining or leaving moves only its own share. A node that
//! stops withdraws its claim and the others take its mailboxes at their next renewal; one that
//! died is dropped when its claim goes stale. During such a hand-over a mailbox may be watched
//! twice for a moment (harmless: observations that change nothing write nothing) or by nobody
//! for up to the lease (a new watcher's first look records what it finds, so a change made in
//! that gap is late, never lost).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use rand::Rng as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use super::Voicemail;
use super::imap_store::ImapMessageStore;
use crate::config::ImapContextConfig;
use crate::domain::{EventFilter, Folder, MailboxId, MwiCounts, now_ms};
use crate::imap::ImapClient;
use crate::store::{ImapChange, MailboxRecord, MessageStore, Recorded, StoreError};

/// How often the supervisor re-reads the context's mailboxes without being told to.
const RESCAN: Duration = Duration::from_secs(60);
/// How long one IDLE lasts before it is renewed (RFC 2177: servers may drop an IDLE after 30 min).
const IDLE_RENEW: Duration = Duration::from_secs(20 * 60);
/// The longest pause between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How soon a watcher looks again after a look made while voxmail was changing the mailbox
/// (the change's own event pokes it sooner).
const DEFERRED_LOOK: Duration = Duration::from_secs(2);
/// Mailboxes of one context polled at the same time.
const POLL_CONCURRENCY: usize = 2;

impl Voicemail {
    /// Starts a watcher supervisor per IMAP context with `watch = true`; they stop with
    /// `shutdown`.
    pub fn start_imap_watchers(&self, shutdown: CancellationToken, tracker: &TaskTracker) {
        let Some(imap) = self.imap.clone() else {
            return;
        };
        for (context, cfg) in imap.contexts() {
            if !cfg.watch {
                tracing::info!(%context, "IMAP watchers off (watch = false)");
                continue;
            }
            let sup = Supervisor {
                vm: self.clone(),
                imap: imap.clone(),
                context: context.clone(),
                cfg: cfg.clone(),
                node_id: self.config.node_id(),
                lease: Duration::from_secs(self.config.imap.watch_lease_secs.max(3)),
                tracker: tracker.clone(),
                shutdown: shutdown.clone(),
            };
            let span = tracing::info_span!("imap_watch", context = %context);
            tracker.spawn(sup.run().instrument(span));
        }
    }
}

/// Records what a look at a mailbox found. `false` when the look must be made again soon: it
/// was made while voxmail is changing the mailbox ([`Recorded::Deferred`]).
async fn observe(vm: &Voicemail, mailbox: &MailboxRecord, read_at_ms: i64, c: MwiCounts) -> bool {
    match vm
        .sql
        .record_imap_counts(mailbox, c, ImapChange::Observed { read_at_ms })
        .await
    {
        Ok(Recorded::Written(counts)) => {
            tracing::debug!(mailbox = %mailbox.address, mwi.new = counts.new, mwi.old = counts.old,
                "IMAP mailbox changed outside voxmail");
            vm.notify_changed();
            true
        }
        Ok(Recorded::Unchanged) => true,
        Ok(Recorded::Deferred) => false,
        // Deleted meanwhile: the supervisor stops this watcher on its next scan.
        Err(StoreError::NotFound) => true,
        Err(e) => {
            tracing::warn!(mailbox = %mailbox.address, error = %e,
                "cannot record IMAP counts; the next look tries again");
            true
        }
    }
}

fn counts_of(c: crate::imap::Counts) -> MwiCounts {
    MwiCounts {
        new: c.new,
        old: c.old,
        urgent_new: c.urgent_new,
        urgent_old: c.urgent_old,
        version: 0,
    }
}

/// Sleeps `d` unless `stop` comes first; `false` when stopped.
async fn pause(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = stop.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}

fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::thread_rng().gen_range(0.75..1.25))
}

/// The node that watches `mailbox` among the watching nodes `nodes` (rendezvous hashing: the
/// highest SHA-256 of node and mailbox wins, so every node computes the same owner, and a node
/// joining or leaving moves only the mailboxes it gains or had). `None` when `nodes` is empty.
pub fn owner(nodes: &[String], mailbox: MailboxId) -> Option<&str> {
    let id = mailbox.to_string();
    nodes
        .iter()
        .map(|n| {
            let mut h = Sha256::new();
            h.update(n.as_bytes());
            h.update([0]);
            h.update(id.as_bytes());
            (h.finalize(), n)
        })
        .max()
        .map(|(_, n)| n.as_str())
}

/// A mailbox with its own watcher.
struct Watched {
    stop: CancellationToken,
    /// Makes the watcher look again now.
    poke: Arc<Notify>,
}

struct Supervisor {
    vm: Voicemail,
    imap: Arc<ImapMessageStore>,
    context: String,
    cfg: ImapContextConfig,
    /// This node's name, as in `imap_watch_nodes`.
    node_id: String,
    /// How long a claim stays fresh without renewal.
    lease: Duration,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Supervisor {
    async fn run(self) {
        let mut idle: HashMap<MailboxId, Watched> = HashMap::new();
        let polled: Arc<tokio::sync::Mutex<Vec<MailboxRecord>>> = Arc::default();
        self.tracker.spawn(
            poll_loop(
                self.vm.clone(),
                self.imap.clone(),
                polled.clone(),
                Duration::from_secs(self.cfg.poll_interval_secs.max(1)),
                self.shutdown.clone(),
            )
            .in_current_span(),
        );
        let mut changed = self.vm.changed.subscribe();
        let filter = EventFilter {
            context: Some(self.context.clone()),
            mailbox: None,
        };
        let mut cursor = self.vm.sql.last_event_seq().await.unwrap_or(0);
        // Until the first renewal answers, this node watches everything (twice is harmless).
        let mut nodes = vec![self.node_id.clone()];
        self.renew(&mut nodes).await;
        let mut renewal = tokio::time::interval(self.lease / 3);
        renewal.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        renewal.reset();
        let mut rescan = true;
        let mut last_scan = tokio::time::Instant::now();
        loop {
            if rescan {
                match self.mailboxes().await {
                    Ok(all) => {
                        self.reconcile(all, &nodes, &mut idle, &polled).await;
                        last_scan = tokio::time::Instant::now();
                    }
                    Err(e) => tracing::warn!(context = %self.context, error = %e,
                        "cannot list the mailboxes to watch; retrying"),
                }
                rescan = false;
            }
            self.imap.reap_idle();
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                r = changed.changed() => if r.is_err() { break },
                () = tokio::time::sleep_until(last_scan + RESCAN) => rescan = true,
                _ = renewal.tick() => {
                    if self.renew(&mut nodes).await {
                        rescan = true;
                    }
                }
            }
            // A mailbox created or deleted in this context means a new scan.
            loop {
                match self.vm.sql.events_after(cursor, 500, &filter).await {
                    Ok(events) if !events.is_empty() => {
                        cursor = events.last().map_or(cursor, |e| e.seq);
                        for e in &events {
                            match e.event_type.as_str() {
                                "mailbox.created" | "mailbox.deleted" => rescan = true,
                                // The watchers' own observations.
                                "mailbox.changed" => {}
                                // A change made through voxmail (any node): the recorded counts
                                // moved without this watcher's connection being told; it looks
                                // again, so a mail client's change right after it is not lost.
                                _ => {
                                    if let Some(w) = idle.get(&e.mailbox_id) {
                                        w.poke.notify_one();
                                    }
                                }
                            }
                        }
                    }
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the outbox; rescanning");
                        rescan = true;
                        break;
                    }
                }
            }
        }
        for w in idle.values() {
            w.stop.cancel();
        }
        // Hand this node's mailboxes to the others now rather than when the claim goes stale.
        if let Err(e) = self
            .vm
            .sql
            .leave_imap_watch(&self.context, &self.node_id)
            .await
        {
            tracing::warn!(context = %self.context, error = %e,
                "cannot withdraw the IMAP watch claim; the other nodes take over when it expires");
        }
    }

    /// Renews this node's claim and reads which nodes watch the context; `true` when that set
    /// changed (the mailboxes are then shared anew). On a database error the set stays as it
    /// was: this node keeps watching its share (its claim may lapse meanwhile, and the others
    /// then watch those mailboxes too, which is harmless).
    async fn renew(&self, nodes: &mut Vec<String>) -> bool {
        let now = now_ms();
        let lease_ms = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        match self
            .vm
            .sql
            .renew_imap_watch(&self.context, &self.node_id, now, now - lease_ms)
            .await
        {
            Ok(mut fresh) => {
                if !fresh.contains(&self.node_id) {
                    fresh.push(self.node_id.clone());
                    fresh.sort();
                }
                if fresh == *nodes {
                    return false;
                }
                tracing::info!(context = %self.context, nodes = ?fresh,
                    "the nodes watching IMAP mailboxes changed");
                *nodes = fresh;
                true
            }
            Err(e) => {
                tracing::warn!(context = %self.context, error = %e,
                    "cannot renew the IMAP watch claim; watching the same mailboxes");
                false
            }
        }
    }

    async fn mailboxes(&self) -> Result<Vec<MailboxRecord>, StoreError> {
        let mut all = Vec::new();
        let mut after: Option<(String, String)> = None;
        loop {
            let page = self
                .vm
                .sql
                .list_mailboxes(
                    Some(&self.context),
                    None,
                    after.as_ref().map(|(c, m)| (c.as_str(), m.as_str())),
                    1000,
                )
                .await?;
            after = page
                .items
                .last()
                .map(|m| (m.address.context.clone(), m.address.mailbox.clone()));
            all.extend(page.items);
            if !page.has_more {
                return Ok(all);
            }
        }
    }

    async fn reconcile(
        &self,
        all: Vec<MailboxRecord>,
        nodes: &[String],
        idle: &mut HashMap<MailboxId, Watched>,
        polled: &tokio::sync::Mutex<Vec<MailboxRecord>>,
    ) {
        // This node's share: the mailboxes kept in IMAP (a mailbox may override its context's
        // `store`) whose owner among the watching nodes is this one.
        let all: Vec<MailboxRecord> = all
            .into_iter()
            .filter(|m| {
                self.imap.handles(m)
                    && owner(nodes, m.id).is_none_or(|n| n == self.node_id.as_str())
            })
            .collect();
        let present: std::collections::HashSet<MailboxId> = all.iter().map(|m| m.id).collect();
        idle.retain(|id, w| {
            let keep = present.contains(id);
            if !keep {
                w.stop.cancel();
            }
            keep
        });
        let budget = if self.cfg.use_idle {
            self.cfg.max_idle_watchers as usize
        } else {
            0
        };
        let mut poll = Vec::new();
        for m in all {
            if idle.contains_key(&m.id) {
                continue;
            }
            if idle.len() < budget {
                let w = Watched {
                    stop: self.shutdown.child_token(),
                    poke: Arc::default(),
                };
                let span = tracing::info_span!("idle", mailbox = %m.address);
                self.tracker.spawn(
                    idle_watch(
                        self.vm.clone(),
                        self.imap.clone(),
                        m.clone(),
                        w.stop.clone(),
                        w.poke.clone(),
                    )
                    .instrument(span),
                );
                idle.insert(m.id, w);
            } else {
                poll.push(m);
            }
        }
        tracing::info!(
            context = %self.context,
            idle = idle.len(),
            polled = poll.len(),
            nodes = nodes.len(),
            "watching IMAP mailboxes"
        );
        *polled.lock().await = poll;
    }
}

/// Watches one mailbox with its own connection: a look, then IDLE on INBOX until something
/// changes (or polling every `poll_interval_secs` where the server has no IDLE), and again.
async fn idle_watch(
    vm: Voicemail,
    imap: Arc<ImapMessageStore>,
    mailbox: MailboxRecord,
    stop: CancellationToken,
    poke: Arc<Notify>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = tokio::time::Instant::now();
        let outcome = tokio::select! {
            () = stop.cancelled() => return,
            r = watch_session(&vm, &imap, &mailbox, &poke) => r,
        };
        if let Err(e) = outcome {
            tracing::info!(mailbox = %mailbox.address, error = %e,
                retry_in_ms = backoff.as_millis() as u64, "IMAP watcher lost its connection");
        }
        if started.elapsed() > MAX_BACKOFF {
            backoff = Duration::from_secs(1);
        }
        if !pause(jittered(backoff), &stop).await {
            return;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: returns only on an error.
async fn watch_session(
    vm: &Voicemail,
    imap: &ImapMessageStore,
    mailbox: &MailboxRecord,
    poke: &Notify,
) -> Result<(), String> {
    let (account, owner) = imap.watch_login(mailbox).map_err(|e| e.to_string())?;
    let mut c = ImapClient::connect(account, owner)
        .await
        .map_err(|e| e.to_string())?;
    let result = async {
        loop {
            c.clear_changed();
            c.resync_next();
            let read_at_ms = now_ms();
            let counts = c.counts().await.map_err(|e| e.to_string())?;
            let settled = observe(vm, mailbox, read_at_ms, counts_of(counts)).await;
            let wait = if settled { IDLE_RENEW } else { DEFERRED_LOOK };
            c.wait_for_change_or(&Folder::Inbox, wait, Some(poke))
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    .await;
    if !c.is_broken() {
        c.logout().await;
    }
    result
}

/// Looks at the polled mailboxes in turn, each about every `every`.
async fn poll_loop(
    vm: Voicemail,
    imap: Arc<ImapMessageStore>,
    polled: Arc<tokio::sync::Mutex<Vec<MailboxRecord>>>,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        let round = tokio::time::Instant::now() + every;
        let list = polled.lock().await.clone();
        let failed = futures_util::stream::iter(list)
            .map(|m| {
                let (vm, imap) = (&vm, &imap);
                async move {
                    let read_at_ms = now_ms();
                    match MessageStore::counts(&**imap, &m).await {
                        Ok(c) => {
                            observe(vm, &m, read_at_ms, c).await;
                            0usize
                        }
                        Err(_) => 1,
                    }
                }
            })
            .buffer_unordered(POLL_CONCURRENCY)
            .fold(0usize, |n, f| async move { n + f })
            .await;
        if failed > 0 {
            tracing::info!(
                failed,
                "IMAP poll: some mailboxes could not be read; last counts kept"
            );
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(round) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn every_mailbox_has_one_owner_and_a_leaving_node_moves_only_its_own() {
        let three = nodes(&["vm-a", "vm-b", "vm-c"]);
        let two = nodes(&["vm-a", "vm-c"]);
        let boxes: Vec<MailboxId> = (0..3000).map(|_| MailboxId::new()).collect();
        let mut share: HashMap<&str, usize> = HashMap::new();
        for &m in &boxes {
            let o = owner(&three, m).expect("an owner");
            // Same answer whatever the order the nodes are listed in.
            let reversed: Vec<String> = three.iter().rev().cloned().collect();
            assert_eq!(owner(&reversed, m), Some(o));
            *share.entry(o).or_default() += 1;
            // vm-b leaves: its mailboxes go to the others, nobody else's move.
            let after = owner(&two, m).expect("an owner");
            if o != "vm-b" {
                assert_eq!(after, o, "{m} moved from {o} to {after}");
            }
        }
        // Roughly a third each (expected 1,000; the bound is > 10 standard deviations).
        for n in ["vm-a", "vm-b", "vm-c"] {
            let got = share.get(n).copied().unwrap_or(0);
            assert!((700..1300).contains(&got), "{n}: {got} of 3000");
        }
        assert_eq!(owner(&[], boxes[0]), None);
        assert_eq!(owner(&nodes(&["solo"]), boxes[0]), Some("solo"));
    }
}
